//! Throttling and lockout of password sign-in (NIST SP 800-63B 5.2.2).
//! Failures are counted per email digest whether or not an account exists,
//! so the answers for unknown accounts and real ones stay the same. After a
//! few failures each further attempt must wait (doubling up to 5 minutes);
//! at the organization's threshold the account is locked until an admin
//! unlocks it.

use crate::audit::{self, AuditCtx, AuditEvent, Outcome};
use crate::db::{Db, RowExt};
use crate::error::Result;
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::{OrgId, UserId};

/// Failures allowed before waiting starts.
const FREE_FAILURES: i64 = 3;
const MAX_WAIT_SECS: i64 = 300;
/// Threshold used for emails without an account (the default policy's).
pub const DEFAULT_THRESHOLD: i64 = 10;

fn key(email: &str) -> String {
    kura_crypto::token_digest(&format!("signin:{}", email.trim().to_lowercase()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    Open,
    /// Try again after this many seconds.
    Wait(i64),
    /// Locked until an administrator unlocks (or, for unknown emails, the
    /// counter ages out after a day).
    Locked,
}

fn wait_secs(failures: i64) -> i64 {
    if failures < FREE_FAILURES {
        return 0;
    }
    let exp = u32::try_from((failures - FREE_FAILURES).min(16)).unwrap_or(16);
    (1i64 << exp).min(MAX_WAIT_SECS)
}

/// May a password be tried for `email` now? `threshold` is the lock
/// threshold of the account's organization (None: no account).
pub async fn gate(db: &Db, email: &str, locked: bool, threshold: Option<i64>) -> Result<Gate> {
    if locked {
        return Ok(Gate::Locked);
    }
    let row =
        sqlx::query("SELECT failures, last_failed_at FROM signin_failures WHERE email_digest = $1")
            .bind(key(email))
            .fetch_optional(&db.read)
            .await?;
    let Some(r) = row else {
        return Ok(Gate::Open);
    };
    let (failures, last) = (r.int("failures")?, r.int("last_failed_at")?);
    let now = now_micros();
    if threshold.is_none() && failures >= DEFAULT_THRESHOLD {
        // Unknown emails "lock" like real accounts; the record ages out.
        if now - last < 86_400 * MICROS_PER_SEC {
            return Ok(Gate::Locked);
        }
        return Ok(Gate::Open);
    }
    let ready_at = last + wait_secs(failures) * MICROS_PER_SEC;
    if now < ready_at {
        let secs = (ready_at - now + MICROS_PER_SEC - 1) / MICROS_PER_SEC;
        return Ok(Gate::Wait(secs.max(1)));
    }
    Ok(Gate::Open)
}

/// Count a failure; returns the consecutive count. With an account at or
/// past its threshold, the account is locked (audited) and true is returned.
pub async fn failed(
    db: &Db,
    ctx: &AuditCtx,
    email: &str,
    account: Option<(UserId, OrgId, i64)>,
) -> Result<(i64, bool)> {
    let k = key(email);
    let now = now_micros();
    let mut tx = db.write.begin().await?;
    let n = sqlx::query("UPDATE signin_failures SET failures = failures + 1, last_failed_at = $1 WHERE email_digest = $2")
        .bind(now)
        .bind(&k)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if n == 0 {
        sqlx::query("INSERT INTO signin_failures (email_digest, failures, last_failed_at) VALUES ($1, 1, $2)")
            .bind(&k)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let failures = sqlx::query("SELECT failures FROM signin_failures WHERE email_digest = $1")
        .bind(&k)
        .fetch_one(&mut *tx)
        .await?
        .int("failures")?;
    // Unknown emails answer "locked" from the same count as the default
    // policy, so a lock alone does not reveal which accounts exist.
    let mut locked_now = account.is_none() && failures >= DEFAULT_THRESHOLD;
    if let Some((user, org, threshold)) = account {
        if failures >= threshold {
            let n =
                sqlx::query("UPDATE users SET locked_at = $1, locked_by_failures = 1 WHERE id = $2 AND locked_at IS NULL")
                    .bind(now)
                    .bind(user.to_string())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            if n == 1 {
                // Sessions stay: anyone who knows the email can trigger this
                // lock; an admin's lock (or containment) ends them.
                locked_now = true;
                let ev = AuditEvent::new("auth.lock", Outcome::Success)
                    .org(org)
                    .detail(serde_json::json!({"user_id": user, "failures": failures, "reason": "failed_sign_ins"}));
                audit::append(&mut tx, ctx, &ev).await?;
            }
        }
    }
    tx.commit().await?;
    Ok((failures, locked_now))
}

/// A complete sign-in resets the count.
pub async fn succeeded(db: &Db, email: &str) -> Result<()> {
    sqlx::query("DELETE FROM signin_failures WHERE email_digest = $1")
        .bind(key(email))
        .execute(&db.write)
        .await?;
    Ok(())
}

/// Lock an account now (an admin's "lock pending review", or containment).
pub async fn lock(db: &Db, ctx: &AuditCtx, user: UserId, org: OrgId, reason: &str) -> Result<bool> {
    let mut tx = db.write.begin().await?;
    // An administrator's lock also overrides a failure lock: it ends sessions.
    let n = sqlx::query("UPDATE users SET locked_at = $1, locked_by_failures = 0 WHERE id = $2 AND (locked_at IS NULL OR locked_by_failures = 1)")
        .bind(now_micros())
        .bind(user.to_string())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    crate::sessions::revoke_all_credentials_tx(&mut tx, user).await?;
    let ev = AuditEvent::new("auth.lock", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"user_id": user, "reason": reason}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(n == 1)
}

/// Unlock an account and clear its failure count (audited).
pub async fn unlock(
    db: &Db,
    ctx: &AuditCtx,
    user: UserId,
    org: OrgId,
    email: &str,
) -> Result<bool> {
    let mut tx = db.write.begin().await?;
    let n =
        sqlx::query("UPDATE users SET locked_at = NULL, locked_by_failures = 0 WHERE id = $1 AND locked_at IS NOT NULL")
            .bind(user.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
    sqlx::query("DELETE FROM signin_failures WHERE email_digest = $1")
        .bind(key(email))
        .execute(&mut *tx)
        .await?;
    let ev = AuditEvent::new("auth.unlock", Outcome::Success)
        .org(org)
        .detail(serde_json::json!({"user_id": user, "was_locked": n == 1}));
    audit::append(&mut tx, ctx, &ev).await?;
    tx.commit().await?;
    Ok(n == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_and_cap() {
        assert_eq!(wait_secs(0), 0);
        assert_eq!(wait_secs(2), 0);
        assert_eq!(wait_secs(3), 1);
        assert_eq!(wait_secs(4), 2);
        assert_eq!(wait_secs(8), 32);
        assert_eq!(wait_secs(50), MAX_WAIT_SECS);
    }
}
