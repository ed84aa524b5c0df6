-- Appends land in this narrow table, which has no secondary index, and are
-- moved into audit_events in bulk (audit::drain_tail). Each commit then
-- writes one or two pages instead of a leaf page in every index of the
-- trail per event; the move updates each index once for thousands of
-- events. Ids are reserved from audit_events' own AUTOINCREMENT counter, so
-- the two tables never hand out the same id. Readers of the trail drain
-- first (audit::settle), so nobody reads around the tail.
CREATE TABLE audit_tail (
    id INTEGER PRIMARY KEY,
    ts INTEGER NOT NULL,
    org_id TEXT,
    actor_user_id TEXT,
    actor_org_id TEXT,
    credential TEXT,
    ip TEXT,
    user_agent TEXT,
    request_id TEXT,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    project_id TEXT,
    node_id TEXT,
    version_id TEXT,
    object_name TEXT,
    bytes INTEGER,
    detail TEXT,
    chain_seq INTEGER,
    chain_hash TEXT
);
-- Rows leave the tail only by being moved; nothing edits them in place.
CREATE TRIGGER audit_tail_no_update BEFORE UPDATE ON audit_tail
BEGIN SELECT RAISE(ABORT, 'audit_tail is append-only'); END;
-- The id counter must exist before the first reservation.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'audit_events', COALESCE((SELECT MAX(id) FROM audit_events), 0)
WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit_events');
