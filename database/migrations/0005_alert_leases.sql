-- Claim leases on the alert outbox. A notifier owns the rows it moved to 'sending' until lease_until;
-- a 'sending' row whose lease expired (its notifier crashed, or Slack's answer was lost) is in doubt and
-- is settled against the channel's history before anything is posted again. claimed_at bounds that
-- history search.
ALTER TABLE alert_notifications
    ADD COLUMN lease_owner VARCHAR(80),
    ADD COLUMN lease_until TIMESTAMPTZ,
    ADD COLUMN claimed_at  TIMESTAMPTZ;
