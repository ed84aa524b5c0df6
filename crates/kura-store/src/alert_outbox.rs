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

/// How long a claimed notice stays with the node that claimed it; if that
/// node stops before it finishes, another takes it over afterwards.
const CLAIM_MICROS: i64 = 120_000_000;

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

/// Claim up to `limit` notices that are due: each is moved out of reach of
/// other nodes for a while (compare-and-set on `next_at`), so that one node
/// sends it.
pub async fn claim_due(db: &Db, limit: i64) -> Result<Vec<Delivery>> {
    let now = crate::time::now_micros();
    let rows = sqlx::query(
        "SELECT id, alert_id, org_id, channel, target, attempts, next_at FROM alert_deliveries \
         WHERE state = 'pending' AND next_at <= $1 ORDER BY next_at LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(&db.read)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let claimed = sqlx::query(
            "UPDATE alert_deliveries SET next_at = $1 WHERE id = $2 AND next_at = $3 AND state = 'pending'",
        )
        .bind(now + CLAIM_MICROS)
        .bind(r.str("id")?)
        .bind(r.int("next_at")?)
        .execute(&db.write)
        .await?
        .rows_affected();
        if claimed == 1 {
            match from_row(r)? {
                Some(d) => out.push(d),
                // A channel this version does not know: leave it to fail
                // visibly rather than retrying it forever.
                None => finish(db, &r.str("id")?, false).await?,
            }
        }
    }
    Ok(out)
}

/// The notice was delivered (`sent`) or is given up.
pub async fn finish(db: &Db, id: &str, sent: bool) -> Result<()> {
    sqlx::query("UPDATE alert_deliveries SET state = $1, attempts = attempts + 1 WHERE id = $2")
        .bind(if sent { "sent" } else { "failed" })
        .bind(id)
        .execute(&db.write)
        .await?;
    Ok(())
}

/// The try failed: count it and schedule the next one `base_secs`, then
/// twice that, and so on (at most 30 minutes apart). Returns false when
/// the notice had its last try and is given up instead.
pub async fn retry_later(db: &Db, d: &Delivery, base_secs: u64) -> Result<bool> {
    let tries = d.attempts + 1;
    if tries >= MAX_ATTEMPTS {
        finish(db, &d.id, false).await?;
        return Ok(false);
    }
    let delay = (base_secs.max(1) as i64)
        .saturating_mul(1i64 << (tries - 1).min(20))
        .min(MAX_DELAY_SECS);
    sqlx::query("UPDATE alert_deliveries SET attempts = $1, next_at = $2 WHERE id = $3")
        .bind(tries)
        .bind(crate::time::now_micros() + delay * 1_000_000)
        .bind(&d.id)
        .execute(&db.write)
        .await?;
    Ok(true)
}

/// Notices not yet delivered, per state (for the dashboard and tests).
pub async fn counts(db: &Db) -> Result<Vec<(String, i64)>> {
    let rows = sqlx::query(
        "SELECT state, COUNT(*) AS n FROM alert_deliveries GROUP BY state ORDER BY state",
    )
    .fetch_all(&db.read)
    .await?;
    rows.iter()
        .map(|r| Ok((r.str("state")?, r.int("n")?)))
        .collect()
}
