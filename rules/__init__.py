"""Alert rules, one module each (threshold, night_flow, peer, projection), and their registry.

A rule module holds the rule's typed parameters (checked when the settings load), its pure evaluation,
the SQL that feeds it, the message texts it needs and a one-line description. The sink feeds the rules
and stores their alerts in the same transaction as the usage, so a replayed batch cannot raise an alert
twice; the notifier, the report and the dashboards ask the registry instead of naming rules.
"""

from __future__ import annotations

from apt_energy.rules.base import Alert, Batch, Invalid, MonthChange, Outcome, Query, Rule, Severity
from apt_energy.rules.night_flow import (
    Interval,
    NightDecisions,
    NightFlowRule,
    NightKey,
    NightVerdict,
    OpenLeak,
    judge_night,
    night_flow_alert,
    night_flow_decisions,
    night_of,
    night_window,
)
from apt_energy.rules.peer import PeerRule, peer_outliers, robust_z
from apt_energy.rules.projection import (
    BillEstimate,
    MonthSoFar,
    Projection,
    ProjectionOptions,
    ProjectionRule,
    days_in,
    forecast_share,
    project,
    projection_alerts,
)
from apt_energy.rules.registry import Registry, Rules, current, discover
from apt_energy.rules.threshold import Threshold, UsageChange, threshold_crossings

__all__ = [
    "Alert", "Batch", "BillEstimate", "Interval", "Invalid", "MonthChange", "MonthSoFar", "NightDecisions",
    "NightFlowRule", "NightKey", "NightVerdict", "OpenLeak", "Outcome", "PeerRule", "Projection",
    "ProjectionOptions", "ProjectionRule", "Query", "Registry", "Rule", "Rules", "Severity", "Threshold",
    "UsageChange", "current", "days_in", "discover", "forecast_share", "judge_night", "night_flow_alert",
    "night_flow_decisions", "night_of", "night_window", "peer_outliers", "project", "projection_alerts",
    "robust_z", "threshold_crossings",
]
