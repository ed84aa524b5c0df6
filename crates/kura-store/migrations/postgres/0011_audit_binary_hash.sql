-- Audit events written from now on are hashed in the binary form (see
-- event_hash.rs); the events already written keep the JSON form they were
-- hashed with. Every id handed out so far (the sequence's last value once it
-- has been used) is at most this value; a new database records 0.
INSERT INTO settings (key, value)
SELECT 'audit_binary_hash_after_id', CAST(GREATEST(
    COALESCE((SELECT MAX(id) FROM audit_events), 0),
    (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM audit_events_id_seq)
) AS TEXT);
