-- The trail stores each event as its canonical form (`body`: the JSON array
-- of chain, position and every field, byte for byte what its chain hash
-- covers). Every field is a column that SQLite derives from the body: SQL
-- cannot write one ("cannot UPDATE generated column"), so a column cannot
-- say something the hashed body does not. `kura audit verify` then reads
-- four small values and the body per event instead of 19 columns (SQLite
-- hands out a column for about 30 ns here, more than hashing the event).
-- The fields the scope report, the indexes and verification read are
-- STORED; the four that only detail pages read are VIRTUAL (computed when
-- read), which keeps each row smaller. The tail's are all VIRTUAL and
-- without NOT NULL: an append then parses nothing (a NOT NULL generated
-- column is computed on insert to be checked), and only the followers,
-- which read the tail, compute them. `chain::verify_scan` checks that
-- these two definitions are the ones below before it relies on them.
-- SQLite only: PostgreSQL keeps plain columns and verifies them one by one.
ALTER TABLE audit_events RENAME TO audit_events_v9;
ALTER TABLE audit_tail RENAME TO audit_tail_v9;
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    body TEXT NOT NULL,
    chain_hash TEXT,
    chain_seq INTEGER GENERATED ALWAYS AS (json_extract(body, '$[1]')) STORED,
    ts INTEGER NOT NULL GENERATED ALWAYS AS (json_extract(body, '$[2]')) STORED,
    org_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[3]')) STORED,
    actor_user_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[4]')) STORED,
    actor_org_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[5]')) VIRTUAL,
    credential TEXT GENERATED ALWAYS AS (json_extract(body, '$[6]')) STORED,
    ip TEXT GENERATED ALWAYS AS (json_extract(body, '$[7]')) STORED,
    user_agent TEXT GENERATED ALWAYS AS (json_extract(body, '$[8]')) VIRTUAL,
    request_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[9]')) VIRTUAL,
    action TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$[10]')) STORED,
    outcome TEXT NOT NULL GENERATED ALWAYS AS (json_extract(body, '$[11]')) STORED,
    project_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[12]')) STORED,
    node_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[13]')) STORED,
    version_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[14]')) STORED,
    object_name TEXT GENERATED ALWAYS AS (json_extract(body, '$[15]')) STORED,
    bytes INTEGER GENERATED ALWAYS AS (json_extract(body, '$[16]')) STORED,
    detail TEXT GENERATED ALWAYS AS (json_extract(body, '$[17]')) VIRTUAL
);
CREATE TABLE audit_tail (
    id INTEGER PRIMARY KEY,
    body TEXT NOT NULL,
    chain_hash TEXT,
    chain_seq INTEGER GENERATED ALWAYS AS (json_extract(body, '$[1]')) VIRTUAL,
    ts INTEGER GENERATED ALWAYS AS (json_extract(body, '$[2]')) VIRTUAL,
    org_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[3]')) VIRTUAL,
    actor_user_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[4]')) VIRTUAL,
    actor_org_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[5]')) VIRTUAL,
    credential TEXT GENERATED ALWAYS AS (json_extract(body, '$[6]')) VIRTUAL,
    ip TEXT GENERATED ALWAYS AS (json_extract(body, '$[7]')) VIRTUAL,
    user_agent TEXT GENERATED ALWAYS AS (json_extract(body, '$[8]')) VIRTUAL,
    request_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[9]')) VIRTUAL,
    action TEXT GENERATED ALWAYS AS (json_extract(body, '$[10]')) VIRTUAL,
    outcome TEXT GENERATED ALWAYS AS (json_extract(body, '$[11]')) VIRTUAL,
    project_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[12]')) VIRTUAL,
    node_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[13]')) VIRTUAL,
    version_id TEXT GENERATED ALWAYS AS (json_extract(body, '$[14]')) VIRTUAL,
    object_name TEXT GENERATED ALWAYS AS (json_extract(body, '$[15]')) VIRTUAL,
    bytes INTEGER GENERATED ALWAYS AS (json_extract(body, '$[16]')) VIRTUAL,
    detail TEXT GENERATED ALWAYS AS (json_extract(body, '$[17]')) VIRTUAL
);
-- SQLite's json_array writes exactly the canonical form (compact, the same
-- escapes; a unit test holds the two together), so chained events keep
-- their hashes.
INSERT INTO audit_events (id, body, chain_hash)
SELECT id, json_array(COALESCE(org_id, 'platform'), chain_seq, ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail), chain_hash FROM audit_events_v9 ORDER BY id;
INSERT INTO audit_tail (id, body, chain_hash)
SELECT id, json_array(COALESCE(org_id, 'platform'), chain_seq, ts, org_id, actor_user_id, actor_org_id, credential, ip, user_agent, request_id, action, outcome, project_id, node_id, version_id, object_name, bytes, detail), chain_hash FROM audit_tail_v9 ORDER BY id;
-- Ids reserved for the tail come from this counter: it never goes back.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'audit_events', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'audit_events');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT s.seq FROM sqlite_sequence s WHERE s.name = 'audit_events_v9'), 0))
WHERE name = 'audit_events';
DROP TABLE audit_events_v9;
DROP TABLE audit_tail_v9;
CREATE INDEX audit_org ON audit_events(org_id, id);
CREATE INDEX audit_actor ON audit_events(actor_user_id, id);
CREATE INDEX audit_project ON audit_events(project_id, id);
CREATE INDEX audit_ts ON audit_events(ts);
CREATE INDEX audit_chain ON audit_events(org_id, chain_seq);
CREATE INDEX audit_credential ON audit_events(credential, id);
CREATE INDEX audit_ip ON audit_events(ip, id);
-- The application never updates or deletes audit events; the database refuses too.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
-- Rows leave the tail only by being moved; nothing edits them in place.
CREATE TRIGGER audit_tail_no_update BEFORE UPDATE ON audit_tail
BEGIN SELECT RAISE(ABORT, 'audit_tail is append-only'); END;
