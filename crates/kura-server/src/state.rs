//! Shared application state, and the grant helpers: every handler obtains
//! its authorization here, so a denial is always audited the same way.

use crate::error::{ApiError, ApiResult};
use crate::metrics::Metrics;
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
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent Argon2 hashing so sign-in floods cannot starve the server.
    pub hash_pool: Arc<Semaphore>,
    /// Verified when an account does not exist, so unknown accounts and
    /// wrong passwords cost the same time.
    pub dummy_hash: Arc<String>,
}

impl AppState {
    pub fn new(store: Store, config: ServerConfig) -> Self {
        let dummy = kura_crypto::hash_password("kura-dummy-password").unwrap_or_default();
        Self {
            store,
            config: Arc::new(config),
            metrics: Metrics::new(),
            hash_pool: Arc::new(Semaphore::new(2)),
            dummy_hash: Arc::new(dummy),
        }
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
        match decision {
            Ok(g) => Ok(g),
            Err((d, org)) => {
                let mut ev = AuditEvent::new("authz.deny", Outcome::Denied)
                    .detail(serde_json::json!({"project_id": project, "action": P::ACTION.as_str(), "reason": d.to_string()}));
                // Only record the project's organization if the actor may know it exists.
                if let (Some(o), Denied::Forbidden) = (org, d) {
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
