//! Real-time forwarding of the audit trail to a SIEM: JSON lines to stdout
//! or a file, and RFC 5424 syslog over UDP or TCP (RFC 6587 octet counting).
//!
//! The forwarder follows the committed trail in the database rather than an
//! in-memory queue: requests never wait for it, nothing is lost when a
//! receiver is slow or down (it retries the same batch and reports how far
//! it lags), and a restart resumes from the stored cursor.

use crate::chain::Record;
use crate::db::{Db, RowExt};
use crate::error::Result;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    Stdout,
    File(std::path::PathBuf),
    SyslogUdp(String),
    SyslogTcp(String),
}

impl Sink {
    /// `udp://HOST:PORT` or `tcp://HOST:PORT`.
    pub fn syslog(url: &str) -> std::result::Result<Sink, String> {
        match url.split_once("://") {
            Some(("udp", a)) if !a.is_empty() => Ok(Sink::SyslogUdp(a.to_string())),
            Some(("tcp", a)) if !a.is_empty() => Ok(Sink::SyslogTcp(a.to_string())),
            _ => Err(format!(
                "audit_syslog must be udp://HOST:PORT or tcp://HOST:PORT, not '{url}'"
            )),
        }
    }
}

/// Counters the metrics endpoint reports.
#[derive(Default)]
pub struct ForwardStats {
    pub forwarded: AtomicU64,
    pub failures: AtomicU64,
    /// Events committed but not yet forwarded.
    pub lag: AtomicU64,
}

const CURSOR_KEY: &str = "audit_forward_cursor";
const BATCH: i64 = 2000;
/// The cursor is stored at most this often (it costs a durable write); after a
/// crash, events since the last stored cursor are sent again (at least once;
/// each carries its id and chain position, so receivers can drop repeats).
const CURSOR_EVERY: Duration = Duration::from_secs(2);

pub fn json_line(r: &Record) -> String {
    let mut buf = Vec::with_capacity(512);
    json_line_into(&mut buf, r);
    String::from_utf8(buf).unwrap_or_default()
}

/// The event as one JSON object (its fields, then `time` in RFC 3339),
/// appended to `buf` without a line break: written straight into the
/// batch's buffer, with no intermediate JSON value.
fn json_line_into(buf: &mut Vec<u8>, r: &Record) {
    let start = buf.len();
    if serde_json::to_writer(&mut *buf, r).is_err() || buf.last() != Some(&b'}') {
        buf.truncate(start);
        buf.extend_from_slice(b"{");
    } else {
        buf.pop();
        buf.push(b',');
    }
    buf.extend_from_slice(b"\"time\":\"");
    buf.extend_from_slice(crate::time::rfc3339(r.ts).as_bytes());
    buf.extend_from_slice(b"\"}");
}

/// A batch as JSON Lines, for one write.
fn json_lines(batch: &[std::sync::Arc<Record>]) -> Vec<u8> {
    let mut buf = Vec::with_capacity(batch.len() * 512);
    for r in batch {
        json_line_into(&mut buf, r);
        buf.push(b'\n');
    }
    buf
}

/// An RFC 5424 message: facility log audit (13); warning for refusals and
/// failures, informational otherwise. The event's JSON is the MSG part.
pub fn syslog_line(r: &Record, hostname: &str) -> String {
    let severity = if r.outcome == "success" { 6 } else { 4 };
    let pri = 13 * 8 + severity;
    let msgid: String = r
        .action
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    format!(
        "<{pri}>1 {} {hostname} kura - {msgid} - {}",
        crate::time::rfc3339(r.ts),
        json_line(r)
    )
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_graphic())
                .take(255)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "-".to_string())
}

struct Outputs {
    file: Option<std::fs::File>,
    tcp: Option<tokio::net::TcpStream>,
    udp: Option<tokio::net::UdpSocket>,
}

async fn send(
    sinks: &[Sink],
    out: &mut Outputs,
    batch: &[std::sync::Arc<Record>],
    host: &str,
) -> std::io::Result<()> {
    for sink in sinks {
        match sink {
            Sink::Stdout => {
                let mut so = std::io::stdout().lock();
                so.write_all(&json_lines(batch))?;
                so.flush()?;
            }
            Sink::File(path) => {
                if out.file.is_none() {
                    out.file = Some(
                        std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(path)?,
                    );
                }
                if let Some(f) = out.file.as_mut() {
                    // One write per batch (the file is unbuffered). A write
                    // that fails part-way is cut back, so that the retry
                    // does not continue a half-written line.
                    let before = f.metadata()?.len();
                    if let Err(e) = f.write_all(&json_lines(batch)) {
                        let _ = f.set_len(before);
                        return Err(e);
                    }
                }
            }
            Sink::SyslogUdp(addr) => {
                if out.udp.is_none() {
                    let s = tokio::net::UdpSocket::bind(if addr.starts_with('[') {
                        "[::]:0"
                    } else {
                        "0.0.0.0:0"
                    })
                    .await?;
                    s.connect(addr.as_str()).await?;
                    out.udp = Some(s);
                }
                if let Some(s) = out.udp.as_ref() {
                    for r in batch {
                        s.send(syslog_line(r, host).as_bytes()).await?;
                    }
                }
            }
            Sink::SyslogTcp(addr) => {
                if out.tcp.is_none() {
                    out.tcp = Some(tokio::net::TcpStream::connect(addr.as_str()).await?);
                }
                if let Some(s) = out.tcp.as_mut() {
                    let mut buf = Vec::new();
                    for r in batch {
                        let msg = syslog_line(r, host);
                        buf.extend_from_slice(format!("{} {msg}", msg.len()).as_bytes());
                    }
                    if let Err(e) = s.write_all(&buf).await {
                        out.tcp = None; // reconnect next time
                        return Err(e);
                    }
                }
            }
        }
    }
    Ok(())
}

async fn cursor(db: &Db) -> Result<i64> {
    let r = sqlx::query("SELECT value FROM settings WHERE key = $1")
        .bind(CURSOR_KEY)
        .fetch_optional(&db.read)
        .await?;
    Ok(r.map(|r| r.str("value"))
        .transpose()?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

async fn save_cursor(db: &Db, id: i64) -> Result<()> {
    let mut tx = db.write.begin().await?;
    sqlx::query("DELETE FROM settings WHERE key = $1")
        .bind(CURSOR_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2)")
        .bind(CURSOR_KEY)
        .bind(id.to_string())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Follow the trail and forward every committed event to every sink.
pub fn start(db: Db, sinks: Vec<Sink>, poll: Duration) -> Arc<ForwardStats> {
    let stats = Arc::new(ForwardStats::default());
    if sinks.is_empty() {
        return stats;
    }
    let st = stats.clone();
    tokio::spawn(async move {
        let host = hostname();
        let mut out = Outputs {
            file: None,
            tcp: None,
            udp: None,
        };
        let mut backoff = poll;
        let mut position: Option<i64> = None;
        let mut saved_at = std::time::Instant::now();
        let mut saved = 0i64;
        loop {
            let step = async {
                let from = match position {
                    Some(p) => p,
                    None => cursor(&db).await?,
                };
                let batch = crate::audit::events_after(&db, from, BATCH).await?;
                let max = sqlx::query("SELECT COALESCE(MAX(id), 0) AS m FROM audit_events")
                    .fetch_one(&db.read)
                    .await?
                    .int("m")?;
                Ok::<_, crate::StoreError>((batch, max, from))
            };
            match step.await {
                Ok((batch, max, from)) if !batch.is_empty() => {
                    st.lag
                        .store(u64::try_from(max - from).unwrap_or(0), Ordering::Relaxed);
                    match send(&sinks, &mut out, &batch, &host).await {
                        Ok(()) => {
                            let last = batch.last().map(|r| r.id).unwrap_or(from);
                            position = Some(last);
                            if saved_at.elapsed() >= CURSOR_EVERY {
                                match save_cursor(&db, last).await {
                                    Ok(()) => {
                                        saved = last;
                                        saved_at = std::time::Instant::now();
                                    }
                                    Err(e) => {
                                        tracing::error!(error = %e, "could not store the forwarding cursor")
                                    }
                                }
                            }
                            st.forwarded
                                .fetch_add(batch.len() as u64, Ordering::Relaxed);
                            st.lag
                                .store(u64::try_from(max - last).unwrap_or(0), Ordering::Relaxed);
                            backoff = poll;
                            continue;
                        }
                        Err(e) => {
                            st.failures.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(error = %e, lag = max - from, "audit forwarding failed; retrying the same events");
                            backoff = (backoff * 2).min(Duration::from_secs(30));
                        }
                    }
                }
                Ok((_, max, from)) => {
                    st.lag
                        .store(u64::try_from(max - from).unwrap_or(0), Ordering::Relaxed);
                    position = Some(from);
                    if from > saved && save_cursor(&db, from).await.is_ok() {
                        saved = from;
                        saved_at = std::time::Instant::now();
                    }
                }
                Err(e) => tracing::warn!(error = %e, "audit forwarding could not read the trail"),
            }
            tokio::time::sleep(backoff).await;
        }
    });
    stats
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc5424_shape() {
        let r = Record {
            id: 7,
            ts: 1_795_697_400_565_015,
            org_id: Some("o".into()),
            actor_user_id: None,
            actor_org_id: None,
            credential: None,
            ip: Some("127.0.0.1".into()),
            user_agent: None,
            request_id: None,
            action: "file.download".into(),
            outcome: "denied".into(),
            project_id: None,
            node_id: None,
            version_id: None,
            object_name: Some("a b.pdf".into()),
            bytes: Some(5),
            detail: None,
            chain_seq: Some(3),
            chain_hash: Some("ab".into()),
        };
        let line = syslog_line(&r, "host1");
        assert!(
            line.starts_with("<108>1 2026-11-26T12:50:00.565015Z host1 kura - file.download - {"),
            "{line}"
        );
        assert!(Sink::syslog("udp://127.0.0.1:514").is_ok());
        assert!(Sink::syslog("http://x").is_err());
        // The line is the event's fields plus its time, as one JSON object.
        let mut expected = serde_json::to_value(&r).expect("json");
        expected["time"] = "2026-11-26T12:50:00.565015Z".into();
        let lines = json_lines(&[Arc::new(r.clone()), Arc::new(r)]);
        let text = String::from_utf8(lines).expect("utf-8");
        let parsed: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON object per line"))
            .collect();
        assert_eq!(parsed, vec![expected.clone(), expected]);
        assert!(text.ends_with("}\n"));
    }
}
