//! `kura serve`: open the data folder, sweep leftovers, print the bootstrap
//! token while no platform administrator exists, and serve until a signal,
//! letting in-flight requests (uploads) finish within the grace period.

use crate::config::Config;
use crate::open;
use anyhow::{bail, Context, Result};
use axum::Router;
use kura_server::{AppState, ServerConfig};
use kura_store::sessions::SessionPolicy;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address for the public listener (env KURA_LISTEN; default 127.0.0.1:8080)
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Separate listener for platform administration (/api/admin/…, /metrics)
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS (with --tls-key)
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for TLS
    #[arg(long)]
    tls_key: Option<PathBuf>,
    /// Plain HTTP on a non-loopback address is allowed only behind a TLS proxy
    #[arg(long)]
    behind_tls_proxy: bool,
}

pub async fn run(mut c: Config, a: ServeArgs) -> Result<ExitCode> {
    if let Some(l) = a.listen {
        c.listen = l;
    }
    if a.admin_listen.is_some() {
        c.admin_listen = a.admin_listen;
    }
    if a.tls_cert.is_some() {
        c.tls_cert = a.tls_cert;
    }
    if a.tls_key.is_some() {
        c.tls_key = a.tls_key;
    }
    c.behind_tls_proxy |= a.behind_tls_proxy;
    if c.tls_cert.is_some() != c.tls_key.is_some() {
        bail!("--tls-cert and --tls-key go together");
    }
    for addr in std::iter::once(c.listen).chain(c.admin_listen) {
        if !addr.ip().is_loopback() && !c.tls() && !c.behind_tls_proxy {
            bail!("refusing plain HTTP on {addr}: configure --tls-cert/--tls-key, or --behind-tls-proxy if a TLS proxy terminates connections");
        }
    }
    let store = open::store(&c, true).await?;
    housekeeping(&store);
    let signer = kura_crypto::AuditSigner::load_or_create(&c.audit_key_path())?;
    start_checkpoints(&store, signer, c.audit_checkpoint_minutes);
    let tls = match (&c.tls_cert, &c.tls_key) {
        (Some(cert), Some(key)) => Some(kura_server::tls::server_config(cert, key)?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public = TcpListener::bind(c.listen)
        .await
        .with_context(|| format!("binding {}", c.listen))?;
    // Without a configured public URL, the listener's own port on
    // localhost (WebAuthn and single sign-on need a host name).
    let public_url = c.public_url.clone().unwrap_or_else(|| {
        let port = public
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(c.listen.port());
        format!("{scheme}://localhost:{port}")
    });
    announce_bootstrap(&store, &c, &public_url).await?;

    let state = AppState::new(
        store,
        ServerConfig {
            max_upload_bytes: c.max_upload_bytes,
            session: SessionPolicy {
                idle_secs: c.session_idle_minutes * 60,
                absolute_secs: c.session_absolute_hours * 3600,
            },
            tls: c.tls() || c.behind_tls_proxy,
            trust_forwarded_for: c.behind_tls_proxy,
            platform_on_public: c.admin_listen.is_none(),
            default_quota_bytes: c.default_quota_bytes,
            public_url,
            signin_rate_per_minute: c.signin_rate_per_minute,
            anonymous_rate_per_minute: c.anonymous_rate_per_minute,
            password_checks_per_second: c.password_checks_per_second,
            mail: c.mail()?,
            webhook_allow_private: c.webhook_allow_private,
            alert_retry_seconds: c.alert_retry_seconds.max(1),
        },
    );
    state.metrics.set_forward_stats(kura_store::forward::start(
        state.store.db.clone(),
        c.forward_sinks(),
        Duration::from_millis(200),
    ));
    // Detection rules over the committed trail; alerts, containment, notices.
    kura_server::responder::start(state.clone(), c.detection);
    // Alert notices from the database, on every node (each claims its own).
    kura_server::responder::start_deliveries(state.clone());
    let routers = kura_server::build(state, c.admin_listen.is_some());
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested; finishing in-flight requests");
        let _ = stop_tx.send(true);
    });
    let mut servers = Vec::new();
    println!("kura: listening on {scheme}://{}", public.local_addr()?);
    servers.push(tokio::spawn(serve_one(
        public,
        routers.public,
        tls.clone(),
        stop_rx.clone(),
    )));
    if let (Some(addr), Some(router)) = (c.admin_listen, routers.admin) {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        println!("kura: admin listening on {scheme}://{}", l.local_addr()?);
        servers.push(tokio::spawn(serve_one(
            l,
            router,
            tls.clone(),
            stop_rx.clone(),
        )));
    }
    let mut stopping = stop_rx.clone();
    let all = futures_join(servers);
    tokio::select! {
        r = all => r?,
        _ = async {
            while !*stopping.borrow() {
                if stopping.changed().await.is_err() { break; }
            }
            tokio::time::sleep(Duration::from_secs(c.shutdown_grace_secs)).await;
        } => tracing::warn!("shutdown grace period over; closing remaining connections"),
    }
    println!("kura: stopped");
    Ok(ExitCode::SUCCESS)
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<Result<()>>>) -> Result<()> {
    for h in handles {
        h.await.context("server task")??;
    }
    Ok(())
}

async fn serve_one(
    l: TcpListener,
    router: Router,
    tls: Option<std::sync::Arc<kura_server::tls::RustlsConfig>>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let shutdown = async move {
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
    };
    let app = router.into_make_service_with_connect_info::<kura_server::tls::ClientAddr>();
    match tls {
        Some(cfg) => {
            let l = kura_server::tls::TlsListener::new(l, cfg)?;
            axum::serve(l, app).with_graceful_shutdown(shutdown).await?;
        }
        None => axum::serve(l, app).with_graceful_shutdown(shutdown).await?,
    }
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {},
                _ = tokio::signal::ctrl_c() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// Sweep staging files and orphaned blobs from interrupted uploads. Only
/// objects older than an hour: another node may be about to commit a newer one.
fn housekeeping(store: &kura_store::Store) {
    let store = store.clone();
    tokio::spawn(async move {
        let mut report = kura_store::fsck::FsckReport::default();
        match kura_store::fsck::sweep(&store, 3600, &mut report).await {
            Ok(()) if report.orphans_removed + report.staging_removed > 0 => {
                tracing::info!(
                    orphans = report.orphans_removed,
                    staging = report.staging_removed,
                    "swept leftovers of interrupted uploads"
                )
            }
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "sweep failed"),
        }
    });
}

/// Sign a checkpoint of every audit chain now and then every `minutes`.
fn start_checkpoints(store: &kura_store::Store, signer: kura_crypto::AuditSigner, minutes: u64) {
    if minutes == 0 {
        return;
    }
    let db = store.db.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(minutes * 60));
        loop {
            tick.tick().await;
            if let Err(e) = kura_store::chain::checkpoint_all(&db, &signer).await {
                tracing::error!(error = %e, "could not sign audit checkpoints");
            }
        }
    });
}

async fn announce_bootstrap(store: &kura_store::Store, c: &Config, public_url: &str) -> Result<()> {
    if kura_store::users::count_platform_admins(&store.db).await? > 0 {
        return Ok(());
    }
    let token = kura_crypto::random_token("kboot");
    kura_store::users::set_bootstrap_digest(&store.db, &kura_crypto::token_digest(&token)).await?;
    let scheme = if c.tls() { "https" } else { "http" };
    println!("kura: no platform administrator exists yet. One-time bootstrap token:");
    println!("kura: bootstrap-token {token}");
    println!("kura: create the administrator with: curl -X POST {scheme}://{}/api/bootstrap -H 'content-type: application/json' -d '{{\"token\":\"{token}\",\"email\":\"you@example.org\",\"display_name\":\"Your Name\",\"password\":\"…\"}}'", c.listen);
    println!(
        "kura: then sign in at {}/login and register a passkey (administrators need one; passkeys need this host name, not an IP address)",
        public_url.trim_end_matches('/')
    );
    Ok(())
}
