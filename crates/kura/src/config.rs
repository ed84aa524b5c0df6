//! Configuration: defaults, then `kura.toml` (or the file named by
//! `--config`/`KURA_CONFIG`), then `KURA_*` environment variables, then
//! command-line flags. Loaded once and passed down; secrets never live in
//! the environment (the master key is a file, the environment may only name it).

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub master_key_file: Option<PathBuf>,
    pub audit_key_file: Option<PathBuf>,
    pub audit_checkpoint_minutes: u64,
    pub audit_forward_stdout: bool,
    /// Evaluate the detection rules on this node (one node holds the lease).
    pub detection: bool,
    /// Alert webhooks may go to private and loopback addresses.
    pub webhook_allow_private: bool,
    /// Seconds before an alert notice that failed is tried again (doubling
    /// after each try, at most 30 minutes apart, 10 tries).
    pub alert_retry_seconds: u64,
    pub audit_forward_file: Option<PathBuf>,
    pub audit_syslog: Option<String>,
    pub max_upload_bytes: u64,
    pub default_quota_bytes: i64,
    pub session_idle_minutes: i64,
    pub session_absolute_hours: i64,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub behind_tls_proxy: bool,
    pub log_format: String,
    pub shutdown_grace_secs: u64,
    /// The address users reach Kura at (its host is the WebAuthn relying
    /// party); default http://localhost:PORT of `listen`.
    pub public_url: Option<String>,
    pub signin_rate_per_minute: u32,
    pub anonymous_rate_per_minute: u32,
    pub password_checks_per_second: u32,
    /// SMTP relay for email to users (reset links, new sign-in and lock notices).
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// starttls (default), tls, or none (a relay on loopback only).
    pub smtp_tls: String,
    pub smtp_from: Option<String>,
    pub smtp_username: Option<String>,
    /// A file holding the SMTP password (never the environment).
    pub smtp_password_file: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: None,
            data_dir: PathBuf::from("./kura-data"),
            database_url: None,
            master_key_file: None,
            audit_key_file: None,
            audit_checkpoint_minutes: 10,
            audit_forward_stdout: false,
            detection: true,
            webhook_allow_private: false,
            alert_retry_seconds: 30,
            audit_forward_file: None,
            audit_syslog: None,
            max_upload_bytes: 10 * 1024 * 1024 * 1024,
            default_quota_bytes: 100 * 1024 * 1024 * 1024,
            session_idle_minutes: 30,
            session_absolute_hours: 12,
            tls_cert: None,
            tls_key: None,
            behind_tls_proxy: false,
            log_format: "json".into(),
            shutdown_grace_secs: 30,
            public_url: None,
            signin_rate_per_minute: 20,
            anonymous_rate_per_minute: 600,
            password_checks_per_second: 4,
            smtp_host: None,
            smtp_port: 587,
            smtp_tls: "starttls".into(),
            smtp_from: None,
            smtp_username: None,
            smtp_password_file: None,
        }
    }
}

/// Command-line overrides shared by every subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Configuration file (default: ./kura.toml if it exists; env KURA_CONFIG)
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Data folder: SQLite database, encrypted blobs, master key (env KURA_DATA_DIR)
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://… (env KURA_DATABASE_URL)
    #[arg(long, global = true)]
    pub database_url: Option<String>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &str) -> Result<Option<T>> {
    match env(name) {
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{name}: cannot parse '{v}'")),
        None => Ok(None),
    }
}

impl Config {
    pub fn load(o: &Overrides) -> Result<Self> {
        let file = o
            .config
            .clone()
            .or_else(|| env("KURA_CONFIG").map(PathBuf::from));
        let mut c = match &file {
            Some(p) => Self::from_file(p)?,
            None if Path::new("kura.toml").exists() => Self::from_file(Path::new("kura.toml"))?,
            None => Self::default(),
        };
        if let Some(v) = parse_env("KURA_LISTEN")? {
            c.listen = v;
        }
        if let Some(v) = parse_env("KURA_ADMIN_LISTEN")? {
            c.admin_listen = Some(v);
        }
        if let Some(v) = env("KURA_DATA_DIR") {
            c.data_dir = v.into();
        }
        if let Some(v) = env("KURA_DATABASE_URL") {
            c.database_url = Some(v);
        }
        if let Some(v) = env("KURA_MASTER_KEY_FILE") {
            c.master_key_file = Some(v.into());
        }
        if let Some(v) = env("KURA_AUDIT_KEY_FILE") {
            c.audit_key_file = Some(v.into());
        }
        if let Some(v) = parse_env("KURA_AUDIT_CHECKPOINT_MINUTES")? {
            c.audit_checkpoint_minutes = v;
        }
        if let Some(v) = parse_env("KURA_DETECTION")? {
            c.detection = v;
        }
        if let Some(v) = parse_env("KURA_WEBHOOK_ALLOW_PRIVATE")? {
            c.webhook_allow_private = v;
        }
        if let Some(v) = parse_env("KURA_ALERT_RETRY_SECONDS")? {
            c.alert_retry_seconds = v;
        }
        if let Some(v) = parse_env("KURA_AUDIT_FORWARD_STDOUT")? {
            c.audit_forward_stdout = v;
        }
        if let Some(v) = env("KURA_AUDIT_FORWARD_FILE") {
            c.audit_forward_file = Some(v.into());
        }
        if let Some(v) = env("KURA_AUDIT_SYSLOG") {
            c.audit_syslog = Some(v);
        }
        if let Some(v) = parse_env("KURA_MAX_UPLOAD_BYTES")? {
            c.max_upload_bytes = v;
        }
        if let Some(v) = parse_env("KURA_DEFAULT_QUOTA_BYTES")? {
            c.default_quota_bytes = v;
        }
        if let Some(v) = env("KURA_SMTP_HOST") {
            c.smtp_host = Some(v);
        }
        if let Some(v) = parse_env("KURA_SMTP_PORT")? {
            c.smtp_port = v;
        }
        if let Some(v) = env("KURA_SMTP_TLS") {
            c.smtp_tls = v;
        }
        if let Some(v) = env("KURA_SMTP_FROM") {
            c.smtp_from = Some(v);
        }
        if let Some(v) = env("KURA_SMTP_USERNAME") {
            c.smtp_username = Some(v);
        }
        if let Some(v) = env("KURA_SMTP_PASSWORD_FILE") {
            c.smtp_password_file = Some(v.into());
        }
        if let Some(v) = env("KURA_PUBLIC_URL") {
            c.public_url = Some(v);
        }
        if let Some(v) = parse_env("KURA_SIGNIN_RATE_PER_MINUTE")? {
            c.signin_rate_per_minute = v;
        }
        if let Some(v) = parse_env("KURA_ANONYMOUS_RATE_PER_MINUTE")? {
            c.anonymous_rate_per_minute = v;
        }
        if let Some(v) = parse_env("KURA_PASSWORD_CHECKS_PER_SECOND")? {
            c.password_checks_per_second = v;
        }
        if let Some(v) = parse_env("KURA_SESSION_IDLE_MINUTES")? {
            c.session_idle_minutes = v;
        }
        if let Some(v) = parse_env("KURA_SESSION_ABSOLUTE_HOURS")? {
            c.session_absolute_hours = v;
        }
        if let Some(v) = env("KURA_TLS_CERT") {
            c.tls_cert = Some(v.into());
        }
        if let Some(v) = env("KURA_TLS_KEY") {
            c.tls_key = Some(v.into());
        }
        if let Some(v) = parse_env("KURA_BEHIND_TLS_PROXY")? {
            c.behind_tls_proxy = v;
        }
        if let Some(v) = env("KURA_LOG_FORMAT") {
            c.log_format = v;
        }
        if let Some(v) = parse_env("KURA_SHUTDOWN_GRACE_SECS")? {
            c.shutdown_grace_secs = v;
        }
        if let Some(v) = &o.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = &o.database_url {
            c.database_url = Some(v.clone());
        }
        c.validate()?;
        Ok(c)
    }

    fn from_file(p: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))
    }

    /// The SMTP relay, when one is configured.
    pub fn mail(&self) -> Result<Option<kura_server::mailer::MailConfig>> {
        let Some(host) = self.smtp_host.clone() else {
            return Ok(None);
        };
        let Some(from) = self.smtp_from.clone() else {
            bail!("smtp_from is required with smtp_host");
        };
        if !["starttls", "tls", "none"].contains(&self.smtp_tls.as_str()) {
            bail!("smtp_tls must be starttls, tls or none");
        }
        let password = match &self.smtp_password_file {
            Some(p) => Some(
                std::fs::read_to_string(p)
                    .with_context(|| format!("smtp_password_file {}", p.display()))?
                    .trim_end_matches(['\r', '\n'])
                    .to_string(),
            ),
            None => None,
        };
        Ok(Some(kura_server::mailer::MailConfig {
            host,
            port: self.smtp_port,
            tls: self.smtp_tls.clone(),
            from,
            username: self.smtp_username.clone(),
            password,
        }))
    }

    fn validate(&self) -> Result<()> {
        if self.signin_rate_per_minute == 0
            || self.anonymous_rate_per_minute == 0
            || self.password_checks_per_second == 0
        {
            bail!("signin_rate_per_minute, anonymous_rate_per_minute and password_checks_per_second must be at least 1");
        }
        if let Some(u) = &self.public_url {
            if !(u.starts_with("https://") || u.starts_with("http://localhost")) {
                bail!("public_url must be https:// (or http://localhost for development)");
            }
        }
        if !(1..=24 * 60).contains(&self.session_idle_minutes) {
            bail!("session_idle_minutes must be 1..=1440");
        }
        if !(1..=24 * 30).contains(&self.session_absolute_hours) {
            bail!("session_absolute_hours must be 1..=720");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bail!("tls_cert and tls_key go together");
        }
        if let Some(s) = &self.audit_syslog {
            kura_store::forward::Sink::syslog(s).map_err(|e| anyhow::anyhow!(e))?;
        }
        if !["json", "text"].contains(&self.log_format.as_str()) {
            bail!("log_format must be json or text");
        }
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("kura.db").display()))
    }

    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The Ed25519 key that signs audit checkpoints; keep it (or a copy of
    /// its public key) apart from the database.
    pub fn audit_key_path(&self) -> PathBuf {
        self.audit_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("audit-signing.key"))
    }

    /// Where audit events are forwarded as they are committed.
    pub fn forward_sinks(&self) -> Vec<kura_store::forward::Sink> {
        use kura_store::forward::Sink;
        let mut sinks = Vec::new();
        if self.audit_forward_stdout {
            sinks.push(Sink::Stdout);
        }
        if let Some(f) = &self.audit_forward_file {
            sinks.push(Sink::File(f.clone()));
        }
        if let Some(s) = self
            .audit_syslog
            .as_deref()
            .and_then(|s| Sink::syslog(s).ok())
        {
            sinks.push(s);
        }
        sinks
    }

    pub fn tls(&self) -> bool {
        self.tls_cert.is_some()
    }
}

/// A database URL for logs, with any password hidden.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact_url("postgres://kura:secret@db/kura"),
            "postgres://kura:***@db/kura"
        );
        assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
    }

    #[test]
    fn file_config_parses_and_rejects_unknown_keys() {
        let c: Config =
            toml::from_str("listen = \"127.0.0.1:9000\"\ndata_dir = \"/tmp/k\"").unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert!(toml::from_str::<Config>("lisen = \"x\"").is_err());
    }
}
