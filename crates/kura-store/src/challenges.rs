//! The state between the password step and the second factor (and of a
//! WebAuthn ceremony): a short-lived, single-use challenge whose secret goes
//! to the client and whose digest stays here. A challenge opens nothing by
//! itself: it only lets its holder present a second factor for one user.

use crate::db::{Db, RowExt};
use crate::error::{Result, StoreError};
use crate::time::{now_micros, MICROS_PER_SEC};
use kura_core::UserId;
use kura_crypto::{random_token, token_digest};

/// Wrong codes allowed on one challenge before it is void.
pub const MAX_ATTEMPTS: i64 = 5;
const TTL_SECS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Password verified; a second factor completes the sign-in.
    SignIn,
    /// Password verified, no factor yet, enrolment window open: enrol one to sign in.
    Enrol,
    /// A signed-in user's WebAuthn ceremony (enrolment or step-up).
    Ceremony,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::SignIn => "signin",
            Self::Enrol => "enrol",
            Self::Ceremony => "ceremony",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Challenge {
    pub id: String,
    pub user_id: UserId,
    /// Ceremony state (a serialized WebAuthn registration or authentication).
    pub state: Option<String>,
}

/// Open a challenge for `user`; returns the secret for the client.
pub async fn create(db: &Db, user: UserId, purpose: Purpose) -> Result<String> {
    let token = random_token("kmfa");
    let now = now_micros();
    // Old, expired challenges of this user go; the table stays small.
    sqlx::query("DELETE FROM auth_challenges WHERE user_id = $1 AND expires_at < $2")
        .bind(user.to_string())
        .bind(now)
        .execute(&db.write)
        .await?;
    sqlx::query("INSERT INTO auth_challenges (id, token_digest, user_id, purpose, attempts, created_at, expires_at) VALUES ($1, $2, $3, $4, 0, $5, $6)")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(token_digest(&token))
        .bind(user.to_string())
        .bind(purpose.as_str())
        .bind(now)
        .bind(now + TTL_SECS * MICROS_PER_SEC)
        .execute(&db.write)
        .await?;
    Ok(token)
}

/// A live challenge for `purpose`, or None (unknown, expired, used, or too
/// many wrong attempts: all look the same to the client).
pub async fn find(db: &Db, token: &str, purpose: Purpose) -> Result<Option<Challenge>> {
    if token.len() > 200 {
        return Ok(None);
    }
    let row = sqlx::query("SELECT id, user_id, state FROM auth_challenges WHERE token_digest = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3 AND attempts < $4")
        .bind(token_digest(token))
        .bind(purpose.as_str())
        .bind(now_micros())
        .bind(MAX_ATTEMPTS)
        .fetch_optional(&db.read)
        .await?;
    row.map(|r| {
        Ok(Challenge {
            id: r.str("id")?,
            user_id: r.id("user_id")?,
            state: r.opt_str("state")?,
        })
    })
    .transpose()
}

pub async fn set_state(db: &Db, id: &str, state: &str) -> Result<()> {
    if state.len() > 64 * 1024 {
        return Err(StoreError::Invalid("ceremony state too large".into()));
    }
    sqlx::query("UPDATE auth_challenges SET state = $1 WHERE id = $2")
        .bind(state)
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(())
}

/// Spend one of the challenge's attempts before checking an answer;
/// false when none is left (parallel guesses cannot overrun the limit).
pub async fn spend_attempt(db: &Db, id: &str) -> Result<bool> {
    let n = sqlx::query("UPDATE auth_challenges SET attempts = attempts + 1 WHERE id = $1 AND attempts < $2 AND used_at IS NULL")
        .bind(id)
        .bind(MAX_ATTEMPTS)
        .execute(&db.write)
        .await?
        .rows_affected();
    Ok(n == 1)
}

/// Count a wrong answer against the challenge.
pub async fn failed(db: &Db, id: &str) -> Result<()> {
    sqlx::query("UPDATE auth_challenges SET attempts = attempts + 1 WHERE id = $1")
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(())
}

/// Spend the challenge; false if it was already spent (a replay or a race).
pub async fn consume(db: &Db, id: &str) -> Result<bool> {
    let n =
        sqlx::query("UPDATE auth_challenges SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
            .bind(now_micros())
            .bind(id)
            .execute(&db.write)
            .await?
            .rows_affected();
    Ok(n == 1)
}
