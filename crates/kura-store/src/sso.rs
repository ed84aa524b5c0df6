//! Single sign-on configuration per organization, identities linked to an
//! identity provider's subject, and the authorization-code flows in
//! progress (state, PKCE verifier, nonce: single use, ten minutes).

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::keyring::Keyring;
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::{OrgAction, OrgGrant, OrgId, UserId};
use serde::Serialize;

const FLOW_TTL_SECS: i64 = 600;

/// https, or plain http only to a loopback host named exactly (tests and
/// a provider on the same machine); no user info, no fragments.
pub fn issuer_allowed(issuer: &str) -> bool {
    let Some((scheme, rest)) = issuer.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty()
        || authority.contains('@')
        || issuer.contains('#')
        || issuer.chars().any(char::is_whitespace)
    {
        return false;
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    match scheme {
        "https" => !host.is_empty(),
        "http" => matches!(host, "127.0.0.1" | "localhost" | "::1"),
        _ => false,
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SsoConfig {
    pub issuer: String,
    pub client_id: String,
    #[serde(skip)]
    pub client_secret: String,
    /// The provider's MFA assertion (amr) satisfies the MFA policy.
    pub idp_mfa_satisfies: bool,
    /// Accounts are created at the first sign-in, for allowed email domains only.
    pub provision_users: bool,
}

fn context(org: OrgId) -> Vec<u8> {
    format!("kura-sso-secret:{org}").into_bytes()
}

pub async fn get(db: &Db, keys: &Keyring, org: OrgId) -> Result<Option<SsoConfig>> {
    let row = sqlx::query("SELECT issuer, client_id, sealed_secret, idp_mfa_satisfies, provision_users FROM org_sso WHERE org_id = $1")
        .bind(org.to_string())
        .fetch_optional(&db.read)
        .await?;
    let Some(r) = row else { return Ok(None) };
    let secret = keys
        .org_key(db, org)
        .await?
        .open_secret(&r.bytes("sealed_secret")?, &context(org))?;
    Ok(Some(SsoConfig {
        issuer: r.str("issuer")?,
        client_id: r.str("client_id")?,
        client_secret: String::from_utf8(secret.to_vec())
            .map_err(|_| StoreError::Internal("sso secret".into()))?,
        idp_mfa_satisfies: r.flag("idp_mfa_satisfies")?,
        provision_users: r.flag("provision_users")?,
    }))
}

/// Set (or with `None`, remove) the organization's single sign-on.
pub async fn set(
    db: &Db,
    keys: &Keyring,
    g: &OrgGrant,
    ctx: &AuditCtx,
    cfg: Option<&SsoConfig>,
) -> Result<()> {
    if g.action() != OrgAction::ManageUsers {
        return Err(StoreError::Denied(kura_core::Denied::Forbidden));
    }
    let org = g.org_id();
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM org_sso WHERE org_id = $1")
        .bind(org.to_string())
        .execute(&mut *tx)
        .await?;
    if let Some(c) = cfg {
        let ok_url = issuer_allowed(&c.issuer);
        if !ok_url || c.issuer.len() > 500 {
            return Err(StoreError::Invalid(
                "issuer must be an https:// URL (http only on loopback)".into(),
            ));
        }
        if c.client_id.is_empty() || c.client_id.len() > 200 || c.client_secret.len() > 500 {
            return Err(StoreError::Invalid(
                "client_id (1-200) and client_secret (at most 500) are required".into(),
            ));
        }
        let sealed = keys
            .org_key(db, org)
            .await?
            .seal_secret(c.client_secret.as_bytes(), &context(org));
        sqlx::query("INSERT INTO org_sso (org_id, issuer, client_id, sealed_secret, idp_mfa_satisfies, provision_users, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)")
            .bind(org.to_string())
            .bind(&c.issuer)
            .bind(&c.client_id)
            .bind(sealed)
            .bind(i64::from(c.idp_mfa_satisfies))
            .bind(i64::from(c.provision_users))
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
    }
    let ev = AuditEvent::new("org.sso_update", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"config": cfg}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

/// A flow just started; the state goes to the provider and into a cookie.
pub async fn begin_flow(
    db: &Db,
    org: OrgId,
    state: &str,
    verifier: &str,
    nonce: &str,
    next: &str,
) -> Result<()> {
    let now = now_micros();
    sqlx::query("DELETE FROM sso_flows WHERE expires_at < $1")
        .bind(now)
        .execute(&db.write)
        .await?;
    sqlx::query("INSERT INTO sso_flows (id, state_digest, org_id, pkce_verifier, nonce, next, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(kura_crypto::token_digest(state))
        .bind(org.to_string())
        .bind(verifier)
        .bind(nonce)
        .bind(next)
        .bind(now)
        .bind(now + FLOW_TTL_SECS * MICROS_PER_SEC)
        .execute(&db.write)
        .await?;
    Ok(())
}

pub struct Flow {
    pub org_id: OrgId,
    pub verifier: String,
    pub nonce: String,
    pub next: String,
}

/// Spend a live flow (a replayed or expired state finds nothing).
pub async fn take_flow(db: &Db, state: &str) -> Result<Option<Flow>> {
    if state.len() > 200 {
        return Ok(None);
    }
    let now = now_micros();
    let row = sqlx::query("UPDATE sso_flows SET used_at = $1 WHERE state_digest = $2 AND used_at IS NULL AND expires_at > $1 RETURNING org_id, pkce_verifier, nonce, next")
        .bind(now)
        .bind(kura_crypto::token_digest(state))
        .fetch_optional(&db.write)
        .await?;
    row.map(|r| {
        Ok(Flow {
            org_id: r.id("org_id")?,
            verifier: r.str("pkce_verifier")?,
            nonce: r.str("nonce")?,
            next: r.str("next")?,
        })
    })
    .transpose()
}

/// The account linked to (issuer, subject).
pub async fn linked(db: &Db, issuer: &str, subject: &str) -> Result<Option<(UserId, OrgId)>> {
    let row = sqlx::query(
        "SELECT user_id, org_id FROM sso_identities WHERE issuer = $1 AND subject = $2",
    )
    .bind(issuer)
    .bind(subject)
    .fetch_optional(&db.read)
    .await?;
    row.map(|r| Ok((r.id("user_id")?, r.id("org_id")?)))
        .transpose()
}

pub async fn link(
    db: &Db,
    ctx: &AuditCtx,
    issuer: &str,
    subject: &str,
    user: UserId,
    org: OrgId,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO sso_identities (issuer, subject, user_id, org_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(issuer)
        .bind(subject)
        .bind(user.to_string())
        .bind(org.to_string())
        .bind(now_micros())
        .execute(&mut *tx)
        .await
        .map_err(|e| StoreError::from(e).conflict_on_unique("this identity is already linked"))?;
    let ev = AuditEvent::new("auth.sso_link", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"user_id": user, "issuer": issuer, "subject": subject}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::issuer_allowed;

    #[test]
    fn issuers() {
        assert!(issuer_allowed("https://login.example.go.jp/realms/a"));
        assert!(issuer_allowed("http://127.0.0.1:4000"));
        assert!(issuer_allowed("http://localhost:4000/"));
        assert!(!issuer_allowed("http://127.0.0.1.evil.example"));
        assert!(!issuer_allowed("http://localhost@evil.example"));
        assert!(!issuer_allowed("http://idp.example.org"));
        assert!(!issuer_allowed("ftp://idp.example.org"));
        assert!(!issuer_allowed("https://"));
    }
}
