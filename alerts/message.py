"""Slack message text and Block Kit blocks for outbox notices, in the configured language."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from apt_energy.alerts.outbox import Notice
from apt_energy.config import Settings

logger = logging.getLogger(__name__)

__all__ = ["Message", "MessageStyle", "render", "render_digest"]


@dataclass(frozen=True)
class Message:
    """What a transport posts: the notification text (also Slack's fallback) and its blocks."""

    text: str
    blocks: list[dict[str, Any]]


@dataclass(frozen=True)
class MessageStyle:
    """The templates of one language (``config/messages.yaml``) and the energy types' labels in it."""

    language: str
    templates: Mapping[str, str]
    labels: Mapping[str, str]     # energy key → label

    @classmethod
    def from_settings(cls, settings: Settings) -> MessageStyle:
        lang = settings.slack.language
        return cls(language=lang, templates=settings.messages[lang],
                   labels={k: e.label_ko if lang == "ko" else e.label_en for k, e in settings.energy.items()})

    def label(self, ko: str, en: str) -> str:
        return ko if self.language == "ko" else en


def render(notice: Notice, style: MessageStyle) -> Message:
    """Text and Block Kit blocks for one notification."""
    t = style.templates
    label = style.labels.get(notice.energy_type, notice.energy_type)
    fields = {
        "building": notice.building, "unit": notice.door, "energy": label, "uom": notice.unit,
        "observed": _num(notice.observed), "reference": _num(notice.reference), "rule": notice.rule,
        "period": notice.period.strftime("%Y-%m") if notice.rule != "night_flow" else notice.period.isoformat(),
        "severity": t.get(f"severity_{notice.severity}", notice.severity), "count": 1,
    }
    if notice.rule == "projection":
        fields.update(_projection_fields(notice, t, fields))
    text = (t["resolved"] if notice.kind == "resolved" else t[notice.rule]).format(**fields)
    icon = ":white_check_mark:" if notice.kind == "resolved" else (
        ":rotating_light:" if notice.severity == "critical" else ":warning:")
    lbl = style.label
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{text}*"}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{lbl('동/호', 'Building/unit')}*\n{notice.building} / {notice.door}"},
            {"type": "mrkdwn", "text": f"*{lbl('에너지', 'Energy')}*\n{label} ({notice.unit})"},
            {"type": "mrkdwn", "text": f"*{lbl('사용량 / 기준', 'Value / reference')}*\n"
                                       f"{fields['observed']} / {fields['reference']} "
                                       f"{'h' if notice.rule == 'night_flow' else notice.unit}"},
            {"type": "mrkdwn", "text": f"*{lbl('기간', 'Period')}*\n{fields['period']}"},
            {"type": "mrkdwn", "text": f"*{lbl('등급', 'Severity')}*\n{fields['severity']}"},
            {"type": "mrkdwn", "text": f"*{lbl('규칙', 'Rule')}*\n{notice.rule}"},
        ]},
    ]
    return Message(text, blocks)


def render_digest(notices: list[Notice], style: MessageStyle, show: int = 15) -> Message:
    """One message for many notifications: a header with the count and the first ``show`` lines."""
    title = style.templates["digest"].format(count=len(notices))
    lines = [f"• {render(n, style).text}" for n in notices[:show]]
    if len(notices) > show:
        lines.append(f"… +{len(notices) - show}")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:2900]}}]
    return Message(title, blocks)


def _projection_fields(notice: Notice, t: Mapping[str, str], fields: Mapping[str, object]) -> dict[str, object]:
    """The projection's own words: which line it crosses (a tier, or the threshold) and the bill."""
    tier = notice.detail.get("tier")
    line = (t["projection_tier"].format(tier=tier) if tier else t["projection_threshold"].format(**fields))
    bill = notice.detail.get("projected_bill_krw")
    return {"projected": f"{notice.observed:,.0f}", "tier": tier or "", "line": line,
            "bill": t["projection_bill"].format(bill=f"{bill:,.0f}") if isinstance(bill, int | float) else ""}


def _num(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.3f}"
