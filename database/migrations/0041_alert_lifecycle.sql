-- An alert is a case, not only a message: raised → acknowledged (by whom, when, note) → resolved (by the
-- rule, or by a person with a note), with an assignee and escalation steps (1: reminded, 2: escalated).
-- Every transition is one row of alert_events (the audit trail) and one outbox row in
-- alert_notifications, written in the same transaction, so the notifier delivers each exactly once.
-- alerts.state stays active|resolved (the stream job's rules read and write it).
ALTER TABLE alerts
    ADD COLUMN acknowledged_at TIMESTAMPTZ,
    ADD COLUMN acknowledged_by VARCHAR(80),
    ADD COLUMN assignee        VARCHAR(80),
    ADD COLUMN resolved_by     VARCHAR(80),            -- NULL with state resolved: the rule resolved it
    ADD COLUMN escalation      SMALLINT NOT NULL DEFAULT 0 CHECK (escalation BETWEEN 0 AND 2),
    ADD COLUMN raised_severity VARCHAR(10);            -- the rule's severity before an escalation raised it

CREATE TABLE alert_events (
    id       BIGSERIAL PRIMARY KEY,
    alert_id BIGINT NOT NULL REFERENCES alerts (id),
    kind     VARCHAR(12) NOT NULL
             CHECK (kind IN ('raised', 'acknowledged', 'assigned', 'reminded', 'escalated', 'resolved')),
    actor    VARCHAR(80),       -- a person (Slack user id or CLI user); NULL: the rule or the escalation clock
    note     TEXT,
    at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX alert_events_alert ON alert_events (alert_id, id);

-- One outbox row per (alert, kind) as before (the stream job inserts ON CONFLICT (alert_id, kind)); a
-- re-assignment queues the alert's 'assigned' row again, pointing at its newest event.
ALTER TABLE alert_notifications
    ALTER COLUMN kind TYPE VARCHAR(12),
    DROP CONSTRAINT alert_notifications_kind_check,
    ADD CONSTRAINT alert_notifications_kind_check
        CHECK (kind IN ('raised', 'acknowledged', 'assigned', 'reminded', 'escalated', 'resolved')),
    ADD COLUMN event_id BIGINT REFERENCES alert_events (id);

-- The stream job writes its outbox rows without an event: give each its audit row (the rule's step).
CREATE FUNCTION alert_notification_event() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.event_id IS NULL THEN
        INSERT INTO alert_events (alert_id, kind) VALUES (NEW.alert_id, NEW.kind) RETURNING id INTO NEW.event_id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alert_notification_event BEFORE INSERT ON alert_notifications
    FOR EACH ROW EXECUTE FUNCTION alert_notification_event();

-- Alerts raised before this migration: their audit rows from what the tables already say.
WITH e AS (
    INSERT INTO alert_events (alert_id, kind, at)
    SELECT n.alert_id, n.kind, CASE n.kind WHEN 'resolved' THEN coalesce(a.resolved_at, n.created_at)
                                           ELSE a.raised_at END
    FROM alert_notifications n JOIN alerts a ON a.id = n.alert_id ORDER BY n.id
    RETURNING id, alert_id, kind)
UPDATE alert_notifications n SET event_id = e.id FROM e WHERE n.alert_id = e.alert_id AND n.kind = e.kind;
