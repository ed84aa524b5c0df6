-- SQLite only (an unindexed tail for appends, see the SQLite migration).
-- PostgreSQL appends straight into audit_events: its writers run in
-- parallel and its indexes do not serialize on one file.
SELECT 1;
