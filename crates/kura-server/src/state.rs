//! Shared application state, and the grant helpers: every handler obtains
//! its authorization here, so a denial is always audited the same way.

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
use crate::ratelimit::{DownloadWindow, RateLimiter};
use kura_core::{
    authorize_org, authorize_platform, authorize_project, Actor, Denied, OrgAction, OrgGrant,
    OrgId, PlatformGrant, ProjectGrant, ProjectId, ProjectPermission,
};
use kura_store::sessions::SessionPolicy;
use kura_store::{AuditCtx, AuditEvent, Outcome, Store};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub max_upload_bytes: u64,
    pub session: SessionPolicy,
    /// Send HSTS (TLS here or at a proxy in front). Cookies are always `Secure`:
    /// browsers accept those on http://localhost, and nowhere else is plain HTTP allowed.
    pub tls: bool,
    /// Trust X-Forwarded-For from a TLS proxy in front.
    pub trust_forwarded_for: bool,
    /// Platform-wide views (the whole audit trail) may be shown on the public
    /// listener; false when a separate admin listener is configured.
    pub platform_on_public: bool,
    pub default_quota_bytes: i64,
    /// The address users reach Kura at; its host is the WebAuthn relying party.
    pub public_url: String,
    /// Sign-in attempts (password and second-factor steps) per client address per minute.
    pub signin_rate_per_minute: u32,
    /// Other requests without a credential, per client address per minute.
    pub anonymous_rate_per_minute: u32,
    /// Password checks (Argon2, ~50 ms of one core each) per second for the
    /// whole node: bounds what a sign-in flood takes from other requests.
    pub password_checks_per_second: u32,
    /// Alert webhooks may go to private and loopback addresses (tests, or
    /// a SIEM inside the network).
    pub webhook_allow_private: bool,
    /// Seconds before a failed alert notice is tried again (then doubling).
    pub alert_retry_seconds: u64,
    /// The SMTP relay for email to users; none: emails are only logged.
    pub mail: Option<crate::mailer::MailConfig>,
}

/// What every handler shares, behind one reference count: axum clones the
/// state for each request, and one atomic increment is cheaper than one per
/// field (two cores contend on each of them).
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent Argon2 hashing so sign-in floods cannot starve the server.
    pub hash_pool: Arc<Semaphore>,
    /// Verified when an account does not exist, so unknown accounts and
    /// wrong passwords cost the same time.
    pub dummy_hash: Arc<String>,
    /// None when the public URL has no host name (WebAuthn needs one).
    pub passkeys: Option<Arc<crate::passkeys::Passkeys>>,
    pub signin_limiter: Arc<RateLimiter>,
    /// Password checks (Argon2) per second, platform-wide.
    pub password_budget: Arc<RateLimiter>,
    pub anonymous_limiter: Arc<RateLimiter>,
    pub downloads: Arc<DownloadWindow>,
    pub mailer: Option<Arc<crate::mailer::Mailer>>,
    /// The platform kill-switch state for the maintenance page.
    pub mode: Arc<crate::responder::ModeCache>,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> Self {
        let dummy = kura_crypto::hash_password("kura-dummy-password").unwrap_or_default();
        let passkeys = match crate::passkeys::Passkeys::new(&config.public_url) {
            Ok(p) => Some(Arc::new(p)),
            Err(e) => {
                tracing::warn!(error = %e, "passkeys (WebAuthn) are unavailable");
                None
            }
        };
        // Half the cores hash passwords at most, so a flood of sign-ins
        // leaves the other half to everyone else.
        let hashers = std::thread::available_parallelism()
            .map(|n| (n.get() / 2).max(1))
            .unwrap_or(1);
        let mailer = config
            .mail
            .clone()
            .and_then(|m| match crate::mailer::Mailer::start(m) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(error = %e, "email is unavailable");
                    None
                }
            });
        Self(Arc::new(Shared {
            mailer,
            mode: Arc::default(),
            signin_limiter: Arc::new(RateLimiter::per_minute(config.signin_rate_per_minute)),
            password_budget: Arc::new(RateLimiter::per_second(config.password_checks_per_second)),
            anonymous_limiter: Arc::new(RateLimiter::per_minute(config.anonymous_rate_per_minute)),
            downloads: Arc::new(DownloadWindow::default()),
            store,
            config: Arc::new(config),
            metrics: Metrics::new(),
            hash_pool: Arc::new(Semaphore::new(hashers)),
            dummy_hash: Arc::new(dummy),
            passkeys,
        }))
    }

    async fn audit_denial(&self, ctx: &AuditCtx, ev: AuditEvent) -> ApiResult<()> {
        self.store
            .audit
            .record(ctx, ev)
            .await
            .map_err(ApiError::from)
    }

    /// The choke point for project data: facts from the store, the decision
    /// from the policy, and an audit record when it says no.
    pub async fn project_grant<P: ProjectPermission>(
        &self,
        actor: &Actor,
        ctx: &AuditCtx,
        project: ProjectId,
    ) -> ApiResult<ProjectGrant<P>> {
        let facts = kura_store::projects::facts(&self.store.db, project, actor.user_id).await?;
        let decision = match facts {
            Some(f) => authorize_project::<P>(actor, &f).map_err(|d| (d, Some(f.org_id))),
            None => Err((Denied::NotFound, None)),
        };
        let decision = match decision {
            Ok(g) if g.org_id() != actor.org_id => {
                // A member from another organization also obeys the owning
                // organization's policy: the stricter of the two applies.
                let owner = kura_store::org_policy::get(&self.store.db, g.org_id()).await?;
                let ip = ctx.ip.as_deref().unwrap_or("");
                if !owner.allows_ip(ip) || (owner.requires_mfa() && !actor.mfa) {
                    let ev = AuditEvent::new("authz.deny", Outcome::Denied)
                        .project(g.org_id(), project)
                        .detail(serde_json::json!({"project_id": project, "action": P::ACTION.as_str(), "reason": "owner organization policy", "network_allowed": owner.allows_ip(ip), "mfa": actor.mfa}));
                    self.audit_denial(ctx, ev).await?;
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "org-policy",
                        "the organization that owns this project requires a second factor or a network you are not using",
                    ));
                }
                Ok(g)
            }
            other => other,
        };
        match decision {
            Ok(g) => Ok(g),
            Err((d, org)) => {
                let mut ev = AuditEvent::new("authz.deny", Outcome::Denied)
                    .detail(serde_json::json!({"project_id": project, "action": P::ACTION.as_str(), "reason": d.to_string()}));
                // Only record the project's organization if the actor may know it exists.
                if let (Some(o), Denied::Forbidden | Denied::StepUpRequired) = (org, d) {
                    ev = ev.project(o, project);
                } else {
                    ev.org_id = Some(actor.org_id);
                }
                self.audit_denial(ctx, ev).await?;
                Err(d.into())
            }
        }
    }

    pub async fn org_grant(
        &self,
        actor: &Actor,
        ctx: &AuditCtx,
        org: OrgId,
        action: OrgAction,
    ) -> ApiResult<OrgGrant> {
        match authorize_org(actor, org, action) {
            Ok(g) => Ok(g),
            Err(d) => {
                let ev = AuditEvent::new("authz.deny", Outcome::Denied)
                    .org(actor.org_id)
                    .detail(serde_json::json!({"org_id": org, "action": action.as_str(), "reason": d.to_string()}));
                self.audit_denial(ctx, ev).await?;
                Err(d.into())
            }
        }
    }

    pub async fn platform_grant(
        &self,
        actor: &Actor,
        ctx: &AuditCtx,
        action: &'static str,
    ) -> ApiResult<PlatformGrant> {
        match authorize_platform(actor) {
            Ok(g) => Ok(g),
            Err(d) => {
                let ev = AuditEvent::new("authz.deny", Outcome::Denied)
                    .org(actor.org_id)
                    .detail(serde_json::json!({"action": action, "reason": d.to_string()}));
                self.audit_denial(ctx, ev).await?;
                Err(d.into())
            }
        }
    }

    /// Bulk-download guard: more files or bytes within the step-up window
    /// than the policies of the user's and the project's organizations
    /// allow (the stricter applies) needs a fresh second factor. Sessions
    /// that stepped up, and API tokens (created under one), pass.
    pub async fn admit_download(
        &self,
        actor: &Actor,
        ctx: &AuditCtx,
        home: &kura_store::org_policy::OrgPolicy,
        owner_org: OrgId,
        bytes: u64,
        new_file: bool,
    ) -> ApiResult<()> {
        let db = &self.store.db;
        let (files, max_bytes, minutes) = if owner_org == actor.org_id {
            (
                home.bulk_download_files,
                home.bulk_download_bytes,
                home.step_up_minutes,
            )
        } else {
            let owner = kura_store::org_policy::get(db, owner_org).await?;
            (
                home.bulk_download_files.min(owner.bulk_download_files),
                home.bulk_download_bytes.min(owner.bulk_download_bytes),
                home.step_up_minutes.max(owner.step_up_minutes),
            )
        };
        // A continued range read of one file counts its bytes, not a new file.
        let files = if new_file { files } else { u32::MAX };
        let window = std::time::Duration::from_secs(u64::from(minutes) * 60);
        if self
            .downloads
            .admit(actor.user_id, bytes, files, max_bytes, window)
            || actor.stepped_up
        {
            return Ok(());
        }
        let ev = AuditEvent::new("download.step_up_required", Outcome::Denied)
            .org(actor.org_id)
            .detail(serde_json::json!({"files_limit": files, "bytes_limit": max_bytes, "window_minutes": minutes}));
        self.audit_denial(ctx, ev).await?;
        Err(ApiError::step_up_required())
    }

    /// Record a read (list, view, download) and wait until it is durable.
    pub async fn record(&self, ctx: &AuditCtx, ev: AuditEvent) -> ApiResult<()> {
        self.store
            .audit
            .record(ctx, ev)
            .await
            .map_err(ApiError::from)
    }

    /// Run Argon2 on the bounded blocking pool.
    pub async fn hash_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> ApiResult<T> {
        let _permit = self
            .hash_pool
            .acquire()
            .await
            .map_err(|_| ApiError::internal())?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| ApiError::internal())
    }
}
