"""What a failed post means (posted? in doubt?), and where alerts go for a given configuration."""

from __future__ import annotations

import dataclasses
import http.client
import socket
import urllib.error
from datetime import date

import pytest
from apt_energy.alerts import MessageStyle, Notice, destination, render, render_digest
from apt_energy.alerts.slack import _failure
from apt_energy.config import Secret, Settings
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web import SlackResponse

from apt_energy import config

pytestmark = pytest.mark.unit


def api_error(status: int, headers: dict[str, str] | None = None) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="https://slack.com/api/chat.postMessage",
                             req_args={}, data={"ok": False, "error": "x"}, headers=headers or {},
                             status_code=status)
    return SlackApiError("failed", response)


@pytest.mark.parametrize("exc", [api_error(500), api_error(503), TimeoutError("timed out"),
                                 urllib.error.URLError(TimeoutError("timed out")), ConnectionResetError(),
                                 http.client.RemoteDisconnected("closed"), http.client.IncompleteRead(b"")])
def test_a_lost_answer_leaves_the_post_in_doubt(exc: BaseException) -> None:
    assert _failure("chat.postMessage", exc).in_doubt


@pytest.mark.parametrize("exc", [api_error(400), api_error(404), urllib.error.URLError(ConnectionRefusedError()),
                                 urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
                                 SlackRequestError("Invalid URL detected")])
def test_a_refused_or_unsent_post_is_certainly_not_posted(exc: BaseException) -> None:
    assert not _failure("chat.postMessage", exc).in_doubt


def test_a_429_is_not_posted_and_says_when_to_retry() -> None:
    failed = _failure("chat.postMessage", api_error(429, {"Retry-After": "7"}))
    assert not failed.in_doubt and failed.retry_after_s == 7.0


@pytest.fixture(scope="module")
def settings() -> Settings:
    s = config.load(environ={})
    return dataclasses.replace(s, secrets=dataclasses.replace(
        s.secrets, slack_bot_token=Secret(""), slack_webhook_url=Secret(""), slack_base_url=""))


def with_secrets(settings: Settings, **secrets: object) -> Settings:
    return dataclasses.replace(settings, secrets=dataclasses.replace(settings.secrets, **secrets))


def test_destination_names_the_channel_when_a_bot_token_is_set(settings: Settings) -> None:
    where = destination(with_secrets(settings, slack_bot_token=Secret("xoxb-1")))
    assert settings.slack.channel in where and "xoxb" not in where and "set SLACK" not in where


def test_destination_names_the_webhook_when_only_a_webhook_is_set(settings: Settings) -> None:
    where = destination(with_secrets(settings, slack_webhook_url=Secret("https://hooks.slack.com/services/T/B/X")))
    assert "webhook" in where and "hooks.slack.com" not in where


def test_destination_says_how_to_reach_slack_when_nothing_is_set(settings: Settings) -> None:
    assert "SLACK_BOT_TOKEN" in destination(settings) and "printed" in destination(settings)


NOTICE = Notice(id=1, kind="raised", alert_id=1, rule="threshold", severity="warning", energy_type="electricity",
                period=date(2024, 8, 1), observed=510.0, reference=500.0, unit="kWh", building=1, floor=2,
                unit_no=2)


def test_a_notice_renders_in_the_configured_language(settings: Settings) -> None:
    message = render(NOTICE, MessageStyle.from_settings(settings))
    assert "1동" in message.text and "202호" in message.text and "510.0 kWh" in message.text
    english = dataclasses.replace(settings, slack=dataclasses.replace(settings.slack, language="en"))
    assert "building 1, unit 202" in render(NOTICE, MessageStyle.from_settings(english)).text


def test_a_digest_counts_its_notices_and_shows_at_most_fifteen(settings: Settings) -> None:
    notices = [dataclasses.replace(NOTICE, id=i) for i in range(20)]
    message = render_digest(notices, MessageStyle.from_settings(settings))
    assert "20건" in message.text and message.blocks[1]["text"]["text"].endswith("… +5")
