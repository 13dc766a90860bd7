-- Notifications for one target (a check run, a chat) are delivered in order: a row
-- is only attempted when no older undelivered row shares its ordering key.
ALTER TABLE outbox ADD COLUMN ordering_key text;
ALTER TABLE outbox ADD COLUMN result jsonb;
CREATE INDEX outbox_ordering ON outbox (ordering_key, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
