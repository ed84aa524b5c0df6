//! Alert notices waiting to be delivered (email per recipient, webhook).
//!
//! The responder queues them here when it raises an alert; a delivery loop
//! on every node claims the due ones, sends each once, and either marks it
//! sent or schedules the next try with a doubling delay. A receiver that is
//! down, or a restart, therefore delays a notice instead of losing it, and
//! only a notice that failed every try is given up (and audited as failed).

use crate::db::{Db, RowExt};
use crate::error::Result;
use sqlx::any::AnyRow;

/// Tries per notice before it is given up.
pub const MAX_ATTEMPTS: i64 = 10;

/// Longest wait between two tries, in seconds.
const MAX_DELAY_SECS: i64 = 1800;

/// How long a claimed notice stays with the node that claimed it (longer
/// than one try can take: a webhook times out after 10 s, an SMTP
/// exchange after 30 s per command); if that node stops before it
/// finishes, another takes it over afterwards.
const CLAIM_MICROS: i64 = 300_000_000;

/// Delivered and given-up notices are kept this long, then deleted.
const KEEP_FINISHED_MICROS: i64 = 30 * 24 * 3600 * 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    Email,
    Webhook,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }
}

/// One notice to deliver.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub id: String,
    pub alert_id: String,
    pub org_id: Option<String>,
    pub channel: Channel,
    /// The email address or the webhook URL.
    pub target: String,
    /// Tries made before this one.
    pub attempts: i64,
    /// The claim this node holds (the `next_at` it wrote): the outcome is
    /// recorded only while the claim is still this node's.
    pub claim: i64,
}

fn from_row(r: &AnyRow) -> Result<Option<Delivery>> {
    let channel = match r.str("channel")?.as_str() {
        "email" => Channel::Email,
        "webhook" => Channel::Webhook,
        _ => return Ok(None),
    };
    Ok(Some(Delivery {
        id: r.str("id")?,
        alert_id: r.str("alert_id")?,
        org_id: r.opt_str("org_id")?,
        channel,
        target: r.str("target")?,
        attempts: r.int("attempts")?,
        claim: 0,
    }))
}

/// Queue one notice per target, due now, in one transaction.
pub async fn enqueue(
    db: &Db,
    alert_id: &str,
    org_id: Option<&str>,
    channel: Channel,
    targets: &[String],
) -> Result<()> {
    let now = crate::time::now_micros();
    let mut tx = db.write.begin().await?;
    for t in targets {
        sqlx::query(
            "INSERT INTO alert_deliveries (id, alert_id, org_id, channel, target, attempts, next_at, state, created_at) \
             VALUES ($1, $2, $3, $4, $5, 0, $6, 'pending', $6)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(alert_id)
        .bind(org_id)
        .bind(channel.as_str())
        .bind(t.as_str())
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Claim the oldest due notice on one of `channels`: it is moved out of
/// reach of other nodes for a while (compare-and-set on `next_at`), so that
/// one node sends it. One at a time, just before sending, so that a claim
/// never outlives the try it covers.
pub async fn claim_next(db: &Db, channels: &[Channel]) -> Result<Option<Delivery>> {
    if channels.is_empty() {
        return Ok(None);
    }
    let now = crate::time::now_micros();
    // A few candidates: another node may take the first meanwhile.
    let rows = if let [only] = channels {
        sqlx::query(
            "SELECT id, alert_id, org_id, channel, target, attempts, next_at FROM alert_deliveries \
             WHERE state = 'pending' AND next_at <= $1 AND channel = $2 ORDER BY next_at LIMIT 4",
        )
        .bind(now)
        .bind(only.as_str())
        .fetch_all(&db.read)
        .await?
    } else {
        sqlx::query(
            "SELECT id, alert_id, org_id, channel, target, attempts, next_at FROM alert_deliveries \
             WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT 4",
        )
        .bind(now)
        .fetch_all(&db.read)
        .await?
    };
    for r in &rows {
        let claim = now + CLAIM_MICROS;
        let claimed = sqlx::query(
            "UPDATE alert_deliveries SET next_at = $1 WHERE id = $2 AND next_at = $3 AND state = 'pending'",
        )
        .bind(claim)
        .bind(r.str("id")?)
        .bind(r.int("next_at")?)
        .execute(&db.write)
        .await?
        .rows_affected();
        if claimed != 1 {
            continue;
        }
        match from_row(r)? {
            Some(d) => return Ok(Some(Delivery { claim, ..d })),
            // A channel this version does not know: give it up visibly
            // rather than retrying it forever.
            None => {
                sqlx::query("UPDATE alert_deliveries SET state = 'failed' WHERE id = $1")
                    .bind(r.str("id")?)
                    .execute(&db.write)
                    .await?;
            }
        }
    }
    Ok(None)
}

/// The notice was delivered (`sent`) or is given up. False if the claim
/// was no longer this node's (another node took the notice over).
pub async fn finish(db: &Db, d: &Delivery, sent: bool) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE alert_deliveries SET state = $1, attempts = attempts + 1 \
         WHERE id = $2 AND next_at = $3 AND state = 'pending'",
    )
    .bind(if sent { "sent" } else { "failed" })
    .bind(&d.id)
    .bind(d.claim)
    .execute(&db.write)
    .await?
    .rows_affected();
    Ok(done == 1)
}

/// The try failed: count it and schedule the next one `base_secs`, then
/// twice that, and so on (at most 30 minutes apart). Returns false when
/// the notice had its last try and is given up instead.
pub async fn retry_later(db: &Db, d: &Delivery, base_secs: u64) -> Result<bool> {
    let tries = d.attempts + 1;
    if tries >= MAX_ATTEMPTS {
        finish(db, d, false).await?;
        return Ok(false);
    }
    let base = i64::try_from(base_secs.clamp(1, MAX_DELAY_SECS as u64)).unwrap_or(1);
    let delay = base
        .saturating_mul(1i64 << (tries - 1).min(20))
        .min(MAX_DELAY_SECS);
    sqlx::query(
        "UPDATE alert_deliveries SET attempts = $1, next_at = $2 \
         WHERE id = $3 AND next_at = $4 AND state = 'pending'",
    )
    .bind(tries)
    .bind(crate::time::now_micros() + delay * 1_000_000)
    .bind(&d.id)
    .bind(d.claim)
    .execute(&db.write)
    .await?;
    Ok(true)
}

/// Delete notices delivered or given up more than 30 days ago (the trail
/// keeps what happened to them).
pub async fn purge_finished(db: &Db) -> Result<u64> {
    Ok(
        sqlx::query("DELETE FROM alert_deliveries WHERE state <> 'pending' AND created_at < $1")
            .bind(crate::time::now_micros() - KEEP_FINISHED_MICROS)
            .execute(&db.write)
            .await?
            .rows_affected(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Notices per state.
    async fn counts(db: &Db) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n FROM alert_deliveries GROUP BY state ORDER BY state",
        )
        .fetch_all(&db.read)
        .await?;
        rows.iter()
            .map(|r| Ok((r.str("state")?, r.int("n")?)))
            .collect()
    }

    #[tokio::test]
    async fn each_notice_is_claimed_once_and_retried_then_given_up() {
        let (db, dir) = crate::db::test_db("outbox").await;
        let to = vec!["a@example.org".to_string(), "b@example.org".to_string()];
        enqueue(&db, "alert-1", None, Channel::Email, &to)
            .await
            .unwrap();
        enqueue(
            &db,
            "alert-1",
            None,
            Channel::Webhook,
            &["https://x.example/h".into()],
        )
        .await
        .unwrap();
        // A webhook-only node never takes the emails.
        let hook = claim_next(&db, &[Channel::Webhook]).await.unwrap().unwrap();
        assert_eq!(hook.channel, Channel::Webhook);
        assert!(claim_next(&db, &[Channel::Webhook])
            .await
            .unwrap()
            .is_none());
        // Claimed notices are out of reach until their claim runs out.
        let first = claim_next(&db, &[Channel::Email]).await.unwrap().unwrap();
        let second = claim_next(&db, &[Channel::Email, Channel::Webhook])
            .await
            .unwrap()
            .unwrap();
        assert_ne!(first.id, second.id);
        assert!(claim_next(&db, &[Channel::Email, Channel::Webhook])
            .await
            .unwrap()
            .is_none());
        // An outcome counts only under the claim that was given.
        let stale = Delivery {
            claim: first.claim - 1,
            ..first.clone()
        };
        assert!(!finish(&db, &stale, true).await.unwrap());
        assert!(finish(&db, &first, true).await.unwrap());
        // A failed try comes back after the delay; the tenth is the last.
        assert!(retry_later(&db, &second, 1).await.unwrap());
        assert!(claim_next(&db, &[Channel::Email]).await.unwrap().is_none());
        let last_try = Delivery {
            attempts: MAX_ATTEMPTS - 1,
            ..second.clone()
        };
        sqlx::query("UPDATE alert_deliveries SET next_at = $1 WHERE id = $2")
            .bind(second.claim)
            .bind(&second.id)
            .execute(&db.write)
            .await
            .unwrap();
        assert!(!retry_later(&db, &last_try, 1).await.unwrap());
        let states: Vec<(String, i64)> = counts(&db).await.unwrap();
        assert_eq!(
            states,
            vec![
                ("failed".to_string(), 1),
                ("pending".to_string(), 1),
                ("sent".to_string(), 1)
            ]
        );
        // Nothing finished is old enough to be purged yet.
        assert_eq!(purge_finished(&db).await.unwrap(), 0);
        let _ = std::fs::remove_dir_all(dir);
    }
}
