-- Single sign-on with OpenID Connect, per organization. Keep in step with
-- ../sqlite/0006_sso.sql.
CREATE TABLE org_sso (
    org_id TEXT PRIMARY KEY REFERENCES orgs(id),
    issuer TEXT NOT NULL,
    client_id TEXT NOT NULL,
    -- The client secret sealed with the organization key.
    sealed_secret BYTEA NOT NULL,
    idp_mfa_satisfies BIGINT NOT NULL,
    provision_users BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
-- Accounts linked to an identity provider's subject (stable across email changes).
CREATE TABLE sso_identities (
    issuer TEXT NOT NULL,
    subject TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id),
    org_id TEXT NOT NULL REFERENCES orgs(id),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX sso_identities_user ON sso_identities(user_id);
-- One authorization-code flow in progress: state (digest), PKCE verifier and nonce.
CREATE TABLE sso_flows (
    id TEXT PRIMARY KEY,
    state_digest TEXT NOT NULL UNIQUE,
    org_id TEXT NOT NULL REFERENCES orgs(id),
    pkce_verifier TEXT NOT NULL,
    nonce TEXT NOT NULL,
    next TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
