//! Server-side sessions and API tokens. Secrets are 256-bit random values
//! handed to the client once; only their SHA-256 digests are stored. Every
//! request resolves its credential here, and resolution re-checks that the
//! session or token, the user and the organization are all still active, so
//! a revocation or suspension takes effect on the very next request.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::{Actor, Credential, OrgId, SessionId, TokenId, UserId};
use kura_crypto::{random_token, token_digest};
use serde::Serialize;
use sqlx::{Any, Transaction};

#[derive(Clone, Copy, Debug)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

pub struct NewSession {
    pub id: SessionId,
    pub token: String,
    pub csrf_token: String,
    pub absolute_expires_at: i64,
}

/// Create a session for `user` (the caller verified the password).
pub async fn create(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    policy: SessionPolicy,
) -> Result<NewSession> {
    let id = SessionId::new();
    let token = random_token("kses");
    let csrf = kura_crypto::secrets::csrf_for(&token);
    let now = now_micros();
    let abs = now + policy.absolute_secs * MICROS_PER_SEC;
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO sessions (id, token_digest, csrf_digest, user_id, org_id, created_at, last_seen_at, absolute_expires_at, ip, user_agent) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)")
        .bind(id.to_string())
        .bind(token_digest(&token))
        .bind(token_digest(&csrf))
        .bind(user.to_string())
        .bind(org.to_string())
        .bind(now)
        .bind(abs)
        .bind(ctx.ip.clone().unwrap_or_default())
        .bind(ctx.user_agent.clone().unwrap_or_default().chars().take(512).collect::<String>())
        .execute(&mut *tx)
        .await?;
    let mut ctx = ctx.clone();
    ctx.credential = Some(format!("session:{id}"));
    audit::append(
        &mut tx,
        &ctx,
        &AuditEvent::new("auth.login", Outcome::Success).org(org),
    )
    .await?;
    tx.commit().await?;
    Ok(NewSession {
        id,
        token,
        csrf_token: csrf,
        absolute_expires_at: abs,
    })
}

/// A resolved, currently valid credential.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub actor: Actor,
    /// Digest of the session's CSRF token (sessions only).
    pub csrf_digest: Option<String>,
}

/// Why a credential did not resolve; all answer 401 to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    Unknown,
    Expired,
    Revoked,
    AccountDisabled,
    OrgSuspended,
}

/// What sessions and tokens both re-check on every request: the account
/// is enabled and its organization not suspended. Returns the actor.
fn active_actor(r: &sqlx::any::AnyRow, credential: Credential) -> Result<Result<Actor, Rejected>> {
    if r.flag("disabled")? {
        return Ok(Err(Rejected::AccountDisabled));
    }
    if r.flag("suspended")? {
        return Ok(Err(Rejected::OrgSuspended));
    }
    Ok(Ok(Actor {
        user_id: r.id("user_id")?,
        org_id: r.id("org_id")?,
        org_admin: r.flag("org_admin")?,
        platform_admin: r.flag("platform_admin")?,
        credential,
    }))
}

pub async fn resolve_session(
    db: &Db,
    token: &str,
    policy: SessionPolicy,
) -> Result<Result<Resolved, Rejected>> {
    let row = sqlx::query(
        "SELECT s.id, s.user_id, s.csrf_digest, s.last_seen_at, s.absolute_expires_at, s.revoked_at, \
         u.org_id, u.disabled, u.org_admin, u.platform_admin, o.suspended \
         FROM sessions s JOIN users u ON u.id = s.user_id JOIN orgs o ON o.id = u.org_id \
         WHERE s.token_digest = $1",
    )
    .bind(token_digest(token))
    .fetch_optional(&db.read)
    .await?;
    let Some(r) = row else {
        return Ok(Err(Rejected::Unknown));
    };
    let now = now_micros();
    if r.opt_int("revoked_at")?.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    let last_seen = r.int("last_seen_at")?;
    if now >= r.int("absolute_expires_at")? || now - last_seen >= policy.idle_secs * MICROS_PER_SEC
    {
        return Ok(Err(Rejected::Expired));
    }
    let id: SessionId = r.id("id")?;
    let actor = match active_actor(&r, Credential::Session(id))? {
        Ok(a) => a,
        Err(rej) => return Ok(Err(rej)),
    };
    // Sliding idle window; written at most once a minute to spare the writer.
    if now - last_seen > 60 * MICROS_PER_SEC {
        sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&db.write)
            .await?;
    }
    Ok(Ok(Resolved {
        actor,
        csrf_digest: Some(r.str("csrf_digest")?),
    }))
}

pub async fn revoke(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    id: SessionId,
) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = sqlx::query(
        "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
    )
    .bind(now_micros())
    .bind(id.to_string())
    .bind(user.to_string())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("auth.session_revoke", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"session_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn revoke_all_for_user_tx(tx: &mut Transaction<'_, Any>, user: UserId) -> Result<()> {
    let now = now_micros();
    sqlx::query("UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Changing a secret revokes what it protected: sessions and API tokens.
pub async fn revoke_all_credentials_tx(tx: &mut Transaction<'_, Any>, user: UserId) -> Result<()> {
    revoke_all_for_user_tx(tx, user).await?;
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
        .bind(now_micros())
        .bind(user.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub id: SessionId,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub last_seen_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub expires_at: i64,
    pub ip: String,
    pub user_agent: String,
}

pub async fn list_for_user(db: &Db, user: UserId, idle_secs: i64) -> Result<Vec<SessionInfo>> {
    let rows = sqlx::query("SELECT id, created_at, last_seen_at, absolute_expires_at, ip, user_agent FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND absolute_expires_at > $2 AND last_seen_at > $3 ORDER BY created_at DESC")
        .bind(user.to_string())
        .bind(now_micros())
        .bind(now_micros() - idle_secs * MICROS_PER_SEC)
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SessionInfo {
                id: r.id("id")?,
                created_at: r.int("created_at")?,
                last_seen_at: r.int("last_seen_at")?,
                expires_at: r.int("absolute_expires_at")?,
                ip: r.str("ip")?,
                user_agent: r.str("user_agent")?,
            })
        })
        .collect()
}

// ---- API tokens ----

#[derive(Debug, Serialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub read_only: bool,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::time::serialize_rfc3339")]
    pub expires_at: i64,
    #[serde(serialize_with = "crate::time::serialize_opt_rfc3339")]
    pub last_used_at: Option<i64>,
}

pub async fn create_token(
    db: &Db,
    ctx: &AuditCtx,
    actor: &Actor,
    name: &str,
    read_only: bool,
    ttl_days: i64,
) -> Result<(TokenInfo, String)> {
    let name = crate::orgs::validate_display("name", name, 100)?;
    if !(1..=366).contains(&ttl_days) {
        return Err(StoreError::Invalid(
            "expires_in_days must be between 1 and 366".into(),
        ));
    }
    let id = TokenId::new();
    let secret = random_token("kura");
    let now = now_micros();
    let exp = now + ttl_days * 86_400 * MICROS_PER_SEC;
    let mut tx = db.write.begin().await?;
    sqlx::query("INSERT INTO api_tokens (id, token_digest, user_id, org_id, name, read_only, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(id.to_string())
        .bind(token_digest(&secret))
        .bind(actor.user_id.to_string())
        .bind(actor.org_id.to_string())
        .bind(&name)
        .bind(i64::from(read_only))
        .bind(now)
        .bind(exp)
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("auth.token_create", Outcome::Success)
        .org(actor.org_id)
        .name(name.clone())
        .detail(serde_json::json!({"token_id": id, "read_only": read_only, "expires_at": exp}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok((
        TokenInfo {
            id,
            name,
            read_only,
            created_at: now,
            expires_at: exp,
            last_used_at: None,
        },
        secret,
    ))
}

pub async fn list_tokens(db: &Db, user: UserId) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query("SELECT id, name, read_only, created_at, expires_at, last_used_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY created_at DESC")
        .bind(user.to_string())
        .fetch_all(&db.read)
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                id: r.id("id")?,
                name: r.str("name")?,
                read_only: r.flag("read_only")?,
                created_at: r.int("created_at")?,
                expires_at: r.int("expires_at")?,
                last_used_at: r.opt_int("last_used_at")?,
            })
        })
        .collect()
}

pub async fn revoke_token(db: &Db, ctx: &AuditCtx, actor: &Actor, id: TokenId) -> Result<()> {
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL")
        .bind(now_micros())
        .bind(id.to_string())
        .bind(actor.user_id.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    let ev = AuditEvent::new("auth.token_revoke", Outcome::Success)
        .org(actor.org_id)
        .detail(serde_json::json!({"token_id": id}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn resolve_token(db: &Db, secret: &str) -> Result<Result<Resolved, Rejected>> {
    let row = sqlx::query(
        "SELECT t.id, t.user_id, t.read_only, t.expires_at, t.revoked_at, t.last_used_at, \
         u.org_id, u.disabled, u.org_admin, u.platform_admin, o.suspended \
         FROM api_tokens t JOIN users u ON u.id = t.user_id JOIN orgs o ON o.id = u.org_id \
         WHERE t.token_digest = $1",
    )
    .bind(token_digest(secret))
    .fetch_optional(&db.read)
    .await?;
    let Some(r) = row else {
        return Ok(Err(Rejected::Unknown));
    };
    let now = now_micros();
    if r.opt_int("revoked_at")?.is_some() {
        return Ok(Err(Rejected::Revoked));
    }
    if now >= r.int("expires_at")? {
        return Ok(Err(Rejected::Expired));
    }
    let id: TokenId = r.id("id")?;
    let actor = match active_actor(
        &r,
        Credential::Token {
            id,
            read_only: r.flag("read_only")?,
        },
    )? {
        Ok(a) => a,
        Err(rej) => return Ok(Err(rej)),
    };
    if r.opt_int("last_used_at")?
        .is_none_or(|t| now - t > 60 * MICROS_PER_SEC)
    {
        sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id.to_string())
            .execute(&db.write)
            .await?;
    }
    Ok(Ok(Resolved {
        actor,
        csrf_digest: None,
    }))
}
