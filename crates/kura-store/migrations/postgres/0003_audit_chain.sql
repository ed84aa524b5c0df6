-- Tamper evidence: every organization's events form a hash chain (platform
-- events, without an organization, form the chain 'platform').
CREATE TABLE audit_chain_heads (
    chain TEXT PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE audit_checkpoints (
    id BIGSERIAL PRIMARY KEY,
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    ts BIGINT NOT NULL,
    public_key TEXT NOT NULL,
    signature TEXT NOT NULL
);
CREATE INDEX audit_checkpoints_chain ON audit_checkpoints(chain, seq);
CREATE INDEX audit_chain ON audit_events(org_id, chain_seq);
-- Events written before chaining existed are listed by verify as unchained history.
INSERT INTO settings (key, value) SELECT 'audit_chain_from_id', CAST(COALESCE(MAX(id), 0) AS TEXT) FROM audit_events;
