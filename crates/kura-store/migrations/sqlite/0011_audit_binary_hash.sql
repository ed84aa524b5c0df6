-- Audit events written from now on are hashed in the binary form (see
-- event_hash.rs); the events already written keep the JSON form they were
-- hashed with. Every id handed out so far, in the trail, its tail or the id
-- counter, is at most this value; a new database records 0.
INSERT INTO settings (key, value)
SELECT 'audit_binary_hash_after_id', CAST(max(
    COALESCE((SELECT MAX(id) FROM audit_events), 0),
    COALESCE((SELECT MAX(id) FROM audit_tail), 0),
    COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'audit_events'), 0)
) AS TEXT);
