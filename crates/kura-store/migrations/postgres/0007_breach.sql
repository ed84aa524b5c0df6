-- Breach readiness: detection rules, alerts, canary files, kill switches and
-- fast scope reports. Keep in step with ../sqlite/0007_breach.sql.

-- Per-organization detection rules and alert delivery (JSON, see detection.rs);
-- the webhook's HMAC secret is sealed with the organization key.
CREATE TABLE org_detection (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id),
    config TEXT NOT NULL,
    webhook_secret BYTEA,
    updated_at BIGINT NOT NULL
);

-- Alerts raised by the detector; never deleted, only acknowledged or closed.
CREATE TABLE alerts (
    id TEXT PRIMARY KEY,
    org_id TEXT REFERENCES orgs(id),
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    status TEXT NOT NULL,
    actor_user_id TEXT,
    credential TEXT,
    ip TEXT,
    project_id TEXT,
    summary TEXT NOT NULL,
    detail TEXT NOT NULL,
    containment TEXT NOT NULL,
    first_event_id BIGINT NOT NULL,
    last_event_id BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT
);
CREATE INDEX alerts_org ON alerts(org_id, created_at);
CREATE INDEX alerts_status ON alerts(status, created_at);

-- Files an organization admin marked as bait: any read is a critical alert.
CREATE TABLE canaries (
    node_id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    project_id TEXT NOT NULL REFERENCES projects(id),
    marked_by TEXT NOT NULL,
    marked_at BIGINT NOT NULL
);
CREATE INDEX canaries_org ON canaries(org_id);

-- Containment "require step-up for the rest of the session".
ALTER TABLE sessions ADD COLUMN contained_at BIGINT;
-- Kill switch "force password reset": the old password opens nothing.
ALTER TABLE users ADD COLUMN must_reset_password BIGINT NOT NULL DEFAULT 0;

-- Scope reports by session/token and by address.
CREATE INDEX audit_credential ON audit_events(credential, id);
CREATE INDEX audit_ip ON audit_events(ip, id);

INSERT INTO settings (key, value) VALUES ('platform_mode', 'normal');
