//! Email to users (password reset links, new sign-in notices, lock
//! notices) through an SMTP relay with lettre. Messages are queued and sent
//! by one background task, so no request waits for the mail server; a full
//! queue or a failed delivery is logged and counted, never fatal.

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

#[derive(Clone, Debug)]
pub struct MailConfig {
    pub host: String,
    pub port: u16,
    /// "starttls" (default), "tls" (implicit TLS), or "none" (loopback relays only).
    pub tls: String,
    pub from: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

pub struct Outgoing {
    pub to: String,
    pub subject: String,
    pub body: String,
}

pub struct Mailer {
    tx: mpsc::Sender<Outgoing>,
    pub sent: Arc<AtomicU64>,
    pub failed: Arc<AtomicU64>,
    smtp: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

/// A plain-text message from `from` to `to`.
fn message(from: &Mailbox, to: &str, subject: &str, body: String) -> Result<Message, String> {
    let to = to.parse::<Mailbox>().map_err(|e| e.to_string())?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(body)
        .map_err(|e| e.to_string())
}

const QUEUE: usize = 1000;

fn transport(c: &MailConfig) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let b = match c.tls.as_str() {
        "none" => {
            let loopback = c.host == "localhost"
                || c.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                return Err("smtp_tls = \"none\" is allowed only for a relay on loopback".into());
            }
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&c.host)
        }
        "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(&c.host).map_err(|e| e.to_string())?,
        "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&c.host)
            .map_err(|e| e.to_string())?,
        other => {
            return Err(format!(
                "smtp_tls must be starttls, tls or none, not {other}"
            ))
        }
    };
    // Bounded: a stalled relay must not hold an alert notice's claim.
    let b = b
        .port(c.port)
        .timeout(Some(std::time::Duration::from_secs(30)));
    let b = match (&c.username, &c.password) {
        (Some(u), Some(p)) => b.credentials(Credentials::new(u.clone(), p.clone())),
        _ => b,
    };
    Ok(b.build())
}

impl Mailer {
    /// Start the sender task; Err if the configuration cannot work.
    pub fn start(c: MailConfig) -> Result<Arc<Self>, String> {
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("smtp_from {}: {e}", c.from))?;
        let smtp = transport(&c)?;
        let (tx, mut rx) = mpsc::channel::<Outgoing>(QUEUE);
        let sent = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let (s2, f2) = (sent.clone(), failed.clone());
        let (queue_smtp, queue_from) = (smtp.clone(), from.clone());
        tokio::spawn(async move {
            while let Some(m) = rx.recv().await {
                let msg = match message(&queue_from, &m.to, &m.subject, m.body) {
                    Ok(msg) => msg,
                    Err(e) => {
                        tracing::warn!(error = %e, "email not built");
                        f2.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let mut delivered = false;
                for attempt in 0..3u32 {
                    match queue_smtp.send(msg.clone()).await {
                        Ok(_) => {
                            delivered = true;
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, attempt, "email delivery failed");
                            tokio::time::sleep(std::time::Duration::from_millis(500 << attempt))
                                .await;
                        }
                    }
                }
                if delivered {
                    s2.fetch_add(1, Ordering::Relaxed);
                } else {
                    f2.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Arc::new(Self {
            tx,
            sent,
            failed,
            smtp,
            from,
        }))
    }

    /// Send one message now and say whether the relay took it (one try: the
    /// caller keeps the message and decides when to try again).
    pub async fn deliver(&self, to: &str, subject: &str, body: String) -> Result<(), String> {
        let msg = message(&self.from, to, subject, body)?;
        match self.smtp.send(msg).await {
            Ok(_) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                Err(e.to_string())
            }
        }
    }

    /// Queue a message; never waits. A full queue drops it (counted).
    pub fn send(&self, to: &str, subject: &str, body: String) {
        let m = Outgoing {
            to: to.to_string(),
            subject: subject.to_string(),
            body,
        };
        if self.tx.try_send(m).is_err() {
            tracing::error!("email queue full: a message was dropped");
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}
