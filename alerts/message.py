"""Slack message text and Block Kit blocks for outbox notices, in the configured language."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apt_energy.alerts.outbox import Notice
from apt_energy.config import Settings
from apt_energy.rules import registry as rule_registry

logger = logging.getLogger(__name__)

__all__ = ["ACTIONS", "MAX_BLOCKS", "MAX_SECTION_CHARS", "Message", "MessageStyle", "digests", "render",
           "render_case", "render_digest"]

# Slack's limits for one message: at most 50 blocks, at most 3,000 characters in a section's text.
MAX_BLOCKS = 50
MAX_SECTION_CHARS = 3000

# The buttons' action ids (Block Kit) → the lifecycle step a press asks for.
ACTIONS = {"apt_energy_ack": "acknowledged", "apt_energy_assign": "assigned", "apt_energy_resolve": "resolved"}


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
    """Text and Block Kit blocks for one notification posted as a new message; an open alert carries its
    case line and the buttons."""
    t = style.templates
    fields = _fields(notice, style)
    alert_text = t[notice.rule].format(**fields)
    if notice.kind == "resolved":
        text = t["resolved"].format(**fields)
        if notice.resolved_by:
            text = f"{text} — {_case_line(notice, style, plain=True)}"
    elif notice.kind in ("reminded", "escalated"):
        text = t[notice.kind].format(text=alert_text)
    elif notice.kind in ("acknowledged", "assigned"):
        text = f"{alert_text} — {_case_line(notice, style, plain=True)}"
    else:
        text = alert_text
    return Message(text, _blocks(notice, style, text, fields))


def render_case(notice: Notice, style: MessageStyle) -> Message:
    """The alert's first message as its case stands now (``chat.update`` replaces it with this): the alert,
    its case line, and the buttons while it is open."""
    fields = _fields(notice, style)
    text = style.templates[notice.rule].format(**fields)
    return Message(text, _blocks(notice, style, text, fields))


def _fields(notice: Notice, style: MessageStyle) -> dict[str, Any]:
    t = style.templates
    label = style.labels.get(notice.energy_type, notice.energy_type)
    # The rule that raised it says how its period is written and which fields of its own its texts use.
    rule = rule_registry.current().of_alert(notice.rule)
    fields: dict[str, Any] = {
        "building": notice.building, "unit": notice.door, "energy": label, "uom": notice.unit,
        "observed": _num(notice.observed), "reference": _num(notice.reference), "rule": notice.rule,
        "period": notice.period.strftime(rule.period_format if rule else "%Y-%m"),
        "severity": t.get(f"severity_{notice.severity}", notice.severity), "count": 1,
    }
    if rule is not None:
        fields.update(rule.fields(notice.detail, notice.observed, t, fields))
    return fields


def _blocks(notice: Notice, style: MessageStyle, text: str, fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    resolved = notice.state == "resolved" or notice.kind == "resolved"
    icon = ":white_check_mark:" if resolved else (
        ":rotating_light:" if notice.severity == "critical" else ":warning:")
    lbl = style.label
    label = fields["energy"]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{text}*"[:MAX_SECTION_CHARS]}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*{lbl('동/호', 'Building/unit')}*\n{notice.building} / {notice.door}"},
            {"type": "mrkdwn", "text": f"*{lbl('에너지', 'Energy')}*\n{label} ({notice.unit})"},
            {"type": "mrkdwn", "text": f"*{lbl('사용량 / 기준', 'Value / reference')}*\n"
                                       f"{fields['observed']} / {fields['reference']} "
                                       f"{rule_registry.current().unit_of(notice.rule, notice.unit)}"},
            {"type": "mrkdwn", "text": f"*{lbl('기간', 'Period')}*\n{fields['period']}"},
            {"type": "mrkdwn", "text": f"*{lbl('등급', 'Severity')}*\n{fields['severity']}"},
            {"type": "mrkdwn", "text": f"*{lbl('규칙', 'Rule')}*\n{notice.rule}"},
        ]},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": _case_line(notice, style)}]},
    ]
    if not resolved:
        t = style.templates
        value = str(notice.alert_id)
        blocks.append({"type": "actions", "block_id": f"apt_energy_alert_{notice.alert_id}", "elements": [
            {"type": "button", "action_id": "apt_energy_ack", "value": value, "style": "primary",
             "text": {"type": "plain_text", "text": t.get("button_ack", "Acknowledge")}},
            {"type": "button", "action_id": "apt_energy_assign", "value": value,
             "text": {"type": "plain_text", "text": t.get("button_assign", "Assign to me")}},
            {"type": "button", "action_id": "apt_energy_resolve", "value": value, "style": "danger",
             "text": {"type": "plain_text", "text": t.get("button_resolve", "Resolve")}},
        ]})
    return blocks


def _case_line(notice: Notice, style: MessageStyle, *, plain: bool = False) -> str:
    """Where the case stands: acknowledged by whom and when, the assignee, who resolved it."""
    t = style.templates

    def who(name: str | None) -> str:
        name = name or "?"
        return f"<@{name}>" if not plain and _SLACK_USER.fullmatch(name) else name

    def at(when: datetime | None) -> str:
        if when is None:
            return "-"
        fallback = f"{when:%Y-%m-%d %H:%M} UTC"
        return fallback if plain else f"<!date^{int(when.timestamp())}^{{date_short_pretty}} {{time}}|{fallback}>"

    parts: list[str] = []
    if notice.state == "resolved" or notice.kind == "resolved":
        resolved_at = notice.resolved_at
        if notice.resolved_by:
            parts.append(t.get("case_resolved", "resolved by {who} ({at})").format(
                who=who(notice.resolved_by), at=at(resolved_at)).replace(" (-)", ""))
        else:
            parts.append(t.get("case_resolved_rule", "resolved by the rule ({at})").format(
                at=at(resolved_at)).replace(" (-)", ""))
    if notice.acknowledged_by:
        parts.append(t.get("case_acknowledged", "acknowledged by {who} ({at})").format(
            who=who(notice.acknowledged_by), at=at(notice.acknowledged_at)))
    if notice.assignee:
        parts.append(t.get("case_assigned", "assigned to {who}").format(who=who(notice.assignee)))
    if not parts:
        parts.append(t.get("case_raised", "not acknowledged yet"))
    if notice.note and notice.kind in ("acknowledged", "assigned", "resolved"):
        parts.append(f"“{notice.note[:300]}”")
    return " · ".join(parts)


_SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")


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


def digests(notices: list[Notice], style: MessageStyle) -> list[tuple[list[Notice], Message]]:
    """Many notifications as few messages within Slack's limits: a header and every notification's line,
    packed into sections of at most :data:`MAX_SECTION_CHARS` characters, at most :data:`MAX_BLOCKS` blocks
    a message; a burst that does not fit in one message continues in the next."""
    out: list[tuple[list[Notice], Message]] = []
    group: list[Notice] = []
    sections: list[str] = []

    def flush() -> None:
        if group:
            title = style.templates["digest"].format(count=len(group))
            blocks: list[dict[str, Any]] = [{"type": "header", "text": {"type": "plain_text", "text": title[:150]}}]
            blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": text}} for text in sections]
            out.append((list(group), Message(title, blocks)))
        group.clear()
        sections.clear()

    for notice in notices:
        line = f"• {render(notice, style).text}"[:MAX_SECTION_CHARS]
        if sections and len(sections[-1]) + 1 + len(line) <= MAX_SECTION_CHARS:
            sections[-1] += "\n" + line
        else:
            if len(sections) + 1 >= MAX_BLOCKS:   # the header is one block too
                flush()
            sections.append(line)
        group.append(notice)
    flush()
    return out


def _num(x: float) -> str:
    return f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.3f}"
