-- Kura schema v1 (PostgreSQL). Keep in step with ../sqlite/0001_init.sql.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    is_platform BIGINT NOT NULL DEFAULT 0,
    suspended BIGINT NOT NULL DEFAULT 0,
    quota_bytes BIGINT NOT NULL,
    used_bytes BIGINT NOT NULL DEFAULT 0,
    wrapped_key BYTEA NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    org_admin BIGINT NOT NULL DEFAULT 0,
    platform_admin BIGINT NOT NULL DEFAULT 0,
    disabled BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    csrf_digest TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    absolute_expires_at BIGINT NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    revoked_at BIGINT
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    read_only BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    last_used_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    root_node_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX projects_org ON projects(org_id);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL,
    role TEXT NOT NULL,
    added_at BIGINT NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members(user_id);

CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    size BIGINT NOT NULL,
    chunk_size BIGINT NOT NULL,
    wrapped_key BYTEA NOT NULL,
    nonce_prefix BYTEA NOT NULL,
    sha256 TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    org_id TEXT NOT NULL,
    parent_id TEXT REFERENCES nodes(id),
    is_file BIGINT NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    size BIGINT NOT NULL DEFAULT 0,
    current_version_id TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    modified_at BIGINT NOT NULL,
    modified_by TEXT NOT NULL,
    trashed_at BIGINT,
    trashed_by TEXT,
    trash_batch TEXT,
    trash_root BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX nodes_live_name ON nodes(parent_id, name) WHERE trashed_at IS NULL;
CREATE INDEX nodes_parent_name ON nodes(parent_id, is_file, name, id);
CREATE INDEX nodes_parent_modified ON nodes(parent_id, is_file, modified_at, id);
CREATE INDEX nodes_parent_size ON nodes(parent_id, is_file, size, id);
CREATE INDEX nodes_trash ON nodes(project_id, trash_root, trashed_at);

CREATE TABLE file_versions (
    id TEXT PRIMARY KEY,
    node_id TEXT NOT NULL REFERENCES nodes(id),
    project_id TEXT NOT NULL,
    org_id TEXT NOT NULL,
    number BIGINT NOT NULL,
    size BIGINT NOT NULL,
    blob_id TEXT NOT NULL REFERENCES blobs(id),
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (node_id, number)
);
CREATE INDEX file_versions_blob ON file_versions(blob_id);

-- Append-only. chain_seq/chain_hash are reserved for the per-organization
-- hash chain (tamper evidence) added by a later migration.
CREATE TABLE audit_events (
    id BIGSERIAL PRIMARY KEY,
    ts BIGINT NOT NULL,
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
    bytes BIGINT,
    detail TEXT,
    chain_seq BIGINT,
    chain_hash TEXT
);
CREATE INDEX audit_org ON audit_events(org_id, id);
CREATE INDEX audit_actor ON audit_events(actor_user_id, id);
CREATE INDEX audit_project ON audit_events(project_id, id);
CREATE INDEX audit_ts ON audit_events(ts);

-- The application never updates or deletes audit events; the database refuses too.
CREATE FUNCTION kura_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$;
CREATE TRIGGER audit_events_no_update BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION kura_audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION kura_audit_append_only();
