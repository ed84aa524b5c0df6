//! Password reset by email. The token goes to the account's address once;
//! only its digest is stored; it works once and for 30 minutes. A reset
//! changes the password only: the second factor is still required at the
//! next sign-in, so a stolen mailbox alone opens nothing either.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::UserId;
use kura_crypto::{random_token, token_digest};

pub const TTL_SECS: i64 = 30 * 60;

/// Issue a token for `user` (the caller checked the account is active).
/// Earlier unused tokens of the user stop working.
pub async fn issue(db: &Db, ctx: &AuditCtx, user: UserId, org: kura_core::OrgId) -> Result<String> {
    let token = random_token("kreset");
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    sqlx::query("UPDATE password_resets SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL")
        .bind(now)
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO password_resets (id, token_digest, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(token_digest(&token))
        .bind(user.to_string())
        .bind(now)
        .bind(now + TTL_SECS * MICROS_PER_SEC)
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("auth.password_reset_request", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"user_id": user}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(token)
}

/// The user a live token belongs to (not spent, not expired).
pub async fn check(db: &Db, token: &str) -> Result<Option<UserId>> {
    if token.len() > 200 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT user_id FROM password_resets WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2")
        .bind(token_digest(token))
        .bind(now_micros())
        .fetch_optional(&db.read)
        .await?;
    row.map(|r| r.id("user_id")).transpose()
}

/// Spend the token and set the new password hash in one transaction; every
/// session and API token of the user ends. Err(NotFound) for a token that
/// is unknown, expired or already used.
pub async fn complete(db: &Db, ctx: &AuditCtx, token: &str, hash: &str) -> Result<UserId> {
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    let row = sqlx::query("SELECT id, user_id FROM password_resets WHERE token_digest = $1 AND used_at IS NULL AND expires_at > $2")
        .bind(token_digest(token))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(StoreError::NotFound)?;
    let user: UserId = row.id("user_id")?;
    let n =
        sqlx::query("UPDATE password_resets SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now)
            .bind(row.str("id")?)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if n != 1 {
        return Err(StoreError::NotFound);
    }
    let org = sqlx::query("UPDATE users SET password_hash = $1, password_changed_at = $2, must_reset_password = 0 WHERE id = $3 RETURNING org_id")
        .bind(hash)
        .bind(now)
        .bind(user.to_string())
        .fetch_one(&mut *tx)
        .await?;
    let org: kura_core::OrgId = org.id("org_id")?;
    crate::sessions::revoke_all_credentials_tx(&mut tx, user).await?;
    let ev = AuditEvent::new("user.password_reset_by_email", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"user_id": user}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(user)
}
