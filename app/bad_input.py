"""What a faulty gateway might send, published so a run shows bad input set aside with a reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from apt_energy.app.reset import mqtt_session
from apt_energy.config import Household, Settings
from apt_energy.core.contract import Reading
from apt_energy.core.topics import reading_topic

__all__ = ["publish_bad_input"]


def publish_bad_input(settings: Settings, household: Household, until: datetime) -> int:
    """Publish what a faulty gateway might send, so the run shows bad input set aside with a reason:
    one message that is not JSON (the bridge dead-letters it to Kafka) and readings the stream job
    quarantines. Returns how many should reach the quarantine table."""
    prefix = settings.mqtt.topic_prefix
    topic = reading_topic(prefix, household, "electricity")
    unit = settings.energy["electricity"].unit
    seq = 2**40  # far above any seq the fleet uses: a quarantined reading must never shadow a good one
    bad = [Reading(household.device_id, "electricity", seq, until, 3600, -1.5, 0.0, unit),          # negative
           Reading(household.device_id, "electricity", seq + 1, until, 3600, 1.0, 1.0, "MWh"),      # wrong unit
           Reading(household.device_id, "electricity", seq + 2, datetime.now(UTC) + timedelta(days=30), 3600,
                   1.0, 1.0, unit)]                                                                # future
    # As the admin: bad input on purpose, without taking the running device's own session.
    with mqtt_session(settings, f"{household.device_id}-faulty", "admin") as client:
        infos = [client.publish(topic, b"{not json", qos=1)]
        infos += [client.publish(topic, r.to_json(), qos=1) for r in bad]
        for info in infos:
            info.wait_for_publish(10)
    print(f"bad input: published 1 non-JSON message (→ {settings.kafka.dead_letter_topic}) and {len(bad)} invalid "
          "readings (→ quarantine table)")
    return len(bad)
