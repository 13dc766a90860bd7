-- The watchdog deletes webhook deliveries older than the retention (a week): this
-- index lets it find them without reading the whole table.
CREATE INDEX webhook_deliveries_received ON webhook_deliveries (received_at);
