-- Alert notices waiting to be delivered: one row per email recipient and
-- one per webhook. They are kept here, not in memory, so that a receiver
-- that is down, or a restart, delays a notice instead of losing it. A
-- node claims a due row by moving its next_at forward (compare-and-set),
-- so with several nodes each notice is sent by one of them.
CREATE TABLE alert_deliveries (
    id TEXT PRIMARY KEY,
    alert_id TEXT NOT NULL,
    org_id TEXT,
    channel TEXT NOT NULL,
    target TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_at BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX alert_deliveries_due ON alert_deliveries(state, next_at);
