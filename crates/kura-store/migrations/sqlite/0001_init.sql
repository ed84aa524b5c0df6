-- Kura schema v1 (SQLite). Keep in step with ../postgres/0001_init.sql.
CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    is_platform INTEGER NOT NULL DEFAULT 0,
    suspended INTEGER NOT NULL DEFAULT 0,
    quota_bytes INTEGER NOT NULL,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    wrapped_key BLOB NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    email TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    org_admin INTEGER NOT NULL DEFAULT 0,
    platform_admin INTEGER NOT NULL DEFAULT 0,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    password_changed_at INTEGER
);
CREATE INDEX users_org ON users(org_id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    csrf_digest TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    created_at INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    absolute_expires_at INTEGER NOT NULL,
    ip TEXT NOT NULL,
    user_agent TEXT NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX sessions_user ON sessions(user_id);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_digest TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at INTEGER
);
CREATE INDEX api_tokens_user ON api_tokens(user_id);

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    name TEXT NOT NULL,
    root_node_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL
);
CREATE INDEX projects_org ON projects(org_id);

CREATE TABLE project_members (
    project_id TEXT NOT NULL REFERENCES projects(id),
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL,
    role TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    added_by TEXT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members(user_id);

CREATE TABLE blobs (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    size INTEGER NOT NULL,
    chunk_size INTEGER NOT NULL,
    wrapped_key BLOB NOT NULL,
    nonce_prefix BLOB NOT NULL,
    sha256 TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects(id),
    org_id TEXT NOT NULL,
    parent_id TEXT REFERENCES nodes(id),
    is_file INTEGER NOT NULL,
    name TEXT NOT NULL,
    size INTEGER NOT NULL DEFAULT 0,
    current_version_id TEXT,
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    modified_at INTEGER NOT NULL,
    modified_by TEXT NOT NULL,
    trashed_at INTEGER,
    trashed_by TEXT,
    trash_batch TEXT,
    trash_root INTEGER NOT NULL DEFAULT 0
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
    number INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob_id TEXT NOT NULL REFERENCES blobs(id),
    created_at INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (node_id, number)
);
CREATE INDEX file_versions_blob ON file_versions(blob_id);

-- Append-only. chain_seq/chain_hash are reserved for the per-organization
-- hash chain (tamper evidence) added by a later migration.
CREATE TABLE audit_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX audit_org ON audit_events(org_id, id);
CREATE INDEX audit_actor ON audit_events(actor_user_id, id);
CREATE INDEX audit_project ON audit_events(project_id, id);
CREATE INDEX audit_ts ON audit_events(ts);

-- The application never updates or deletes audit events; the database refuses too.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
