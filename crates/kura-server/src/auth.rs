//! Authentication extractors. A handler that takes [`Authed`] runs only for
//! a credential that resolved just now (session or API token, with the user
//! and organization re-checked as active), and, for cookie sessions, only
//! with a valid CSRF token on state-changing methods.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, Method};
use kura_core::Actor;
use kura_store::sessions::{self, Resolved};
use kura_store::{AuditCtx, AuditEvent, Outcome};

pub const SESSION_COOKIE: &str = "kura_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The request id assigned by the middleware.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Request context for auditing, available to every handler.
pub struct Ctx(pub AuditCtx);

pub(crate) fn client_ip(parts: &Parts, state: &AppState) -> String {
    // Only the proxy in front of us is trusted, and it appends the address it
    // saw as the last entry; earlier entries are whatever the client sent.
    if state.config.trust_forwarded_for {
        if let Some(ip) = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|s| s.trim().parse::<std::net::IpAddr>().ok())
        {
            return canonical_ip(ip);
        }
    }
    parts
        .extensions
        .get::<ConnectInfo<crate::tls::ClientAddr>>()
        .map(|c| canonical_ip(c.0 .0.ip()))
        .unwrap_or_default()
}

/// One text per address, as the trail, the scope report and the network
/// policies compare them: an IPv4 client of a dual-stack listener
/// (`::ffff:192.0.2.1`) is its IPv4 address, and a forwarded address is
/// printed the standard way (lowercase, shortest form), whatever the proxy
/// wrote.
fn canonical_ip(ip: std::net::IpAddr) -> String {
    ip.to_canonical().to_string()
}

fn base_ctx(parts: &Parts, state: &AppState) -> AuditCtx {
    AuditCtx {
        actor_user_id: None,
        actor_org_id: None,
        credential: None,
        ip: Some(client_ip(parts, state)),
        user_agent: parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect()),
        request_id: parts.extensions.get::<RequestId>().map(|r| r.0.clone()),
    }
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(Ctx(base_ctx(parts, state)))
    }
}

/// An authenticated actor and the audit context of this request.
pub struct Authed {
    pub actor: Actor,
    pub ctx: AuditCtx,
    /// The home organization's policy, read with the credential.
    pub policy: std::sync::Arc<kura_store::org_policy::OrgPolicy>,
}

impl Authed {
    /// Sensitive actions of the user's own account (new API tokens, removing
    /// a factor, new recovery codes) need a fresh second factor.
    pub fn require_step_up(&self) -> Result<(), ApiError> {
        if self.actor.stepped_up {
            Ok(())
        } else {
            Err(ApiError::step_up_required())
        }
    }

    /// Account changes are refused to read-only API tokens.
    pub fn require_writable(&self) -> Result<(), ApiError> {
        match self.actor.credential {
            kura_core::Credential::Token {
                read_only: true, ..
            } => Err(ApiError::forbidden()),
            _ => Ok(()),
        }
    }
}

fn find_cookie<'a>(headers: &'a axum::http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pub fn cookie_value<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    find_cookie(&parts.headers, name)
}

/// A cookie's value from raw headers (handlers that take a HeaderMap).
pub fn cookie_from_headers(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    find_cookie(headers, name).map(String::from)
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
}

/// Requests that stay possible in read-only mode: signing in (factors and
/// first enrolment included) and out, step-up, and turning the switch back.
/// Password resets are changes like any other and wait.
pub(crate) fn read_only_allows(path: &str) -> bool {
    const EXEMPT: &[&str] = &[
        "/api/auth/",
        "/api/admin/platform",
        "/login",
        "/logout",
        "/step-up",
        "/sso",
        "/security/platform",
    ];
    // Incident response goes on while the platform is frozen: locking,
    // ending sessions, forced resets, suspensions, alerts.
    const RESPONSE: &[&str] = &[
        "/lock",
        "/unlock",
        "/revoke-sessions",
        "/force-reset",
        "/suspend",
        "/status",
    ];
    (EXEMPT.iter().any(|p| path.starts_with(p)) && !path.starts_with("/api/auth/password-reset"))
        || RESPONSE.iter().any(|p| path.ends_with(p))
}

/// The platform kill switches, checked with every credential: when
/// suspended only platform administrators on loopback (break-glass) pass;
/// when read-only nothing that changes state does.
pub(crate) fn kill_switches(parts: &Parts, r: &Resolved, ctx: &AuditCtx) -> Result<(), ApiError> {
    use kura_store::platform::Mode;
    match r.platform_mode {
        Mode::Normal => Ok(()),
        Mode::Suspended => {
            let loopback = ctx
                .ip
                .as_deref()
                .and_then(|i| i.parse::<std::net::IpAddr>().ok())
                .is_some_and(|i| i.is_loopback());
            if r.actor.platform_admin && loopback {
                Ok(())
            } else {
                Err(ApiError::platform_suspended())
            }
        }
        Mode::ReadOnly => {
            let path = parts.uri.path();
            if is_safe(&parts.method) || read_only_allows(path) {
                Ok(())
            } else {
                Err(ApiError::read_only())
            }
        }
    }
}

pub(crate) fn is_safe(m: &Method) -> bool {
    matches!(*m, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Record a refused credential (a revoked, expired or suspended one, or a
/// missing CSRF token). Unknown tokens are not recorded: they identify no
/// account and would let anyone fill the trail.
async fn audit_refusal(
    state: &AppState,
    ctx: &AuditCtx,
    reason: &str,
    actor: Option<&kura_core::Actor>,
) {
    let mut ctx = ctx.clone();
    let mut ev = AuditEvent::new("auth.reject", Outcome::Denied)
        .detail(serde_json::json!({"reason": reason}));
    if let Some(a) = actor {
        ctx.actor_user_id = Some(a.user_id);
        ctx.actor_org_id = Some(a.org_id);
        ctx.credential = Some(AuditCtx::credential_label(&a.credential));
        ev = ev.org(a.org_id);
    }
    if let Err(e) = state.store.audit.record(&ctx, ev).await {
        tracing::error!(error = %e, "could not audit a refused credential");
    }
}

fn rejected_reason(r: sessions::Rejected) -> &'static str {
    match r {
        sessions::Rejected::Unknown => "unknown",
        sessions::Rejected::Expired => "expired",
        sessions::Rejected::Revoked => "revoked",
        sessions::Rejected::AccountDisabled => "account_disabled",
        sessions::Rejected::AccountLocked => "account_locked",
        sessions::Rejected::OrgSuspended => "org_suspended",
        sessions::Rejected::PlatformSuspended => "platform_suspended",
        sessions::Rejected::NetworkNotAllowed => "network_not_allowed",
    }
}

pub(crate) async fn refuse(state: &AppState, ctx: &AuditCtx, r: sessions::Rejected) -> ApiError {
    // A refused credential is an anonymous request: it draws on the same
    // per-address budget, so made-up cookies cannot dodge the limit.
    if let Some(ip) = ctx.ip.as_deref().and_then(|i| i.parse().ok()) {
        if let Err(wait) = state.anonymous_limiter.check(ip) {
            state.metrics.rate_limited.inc();
            return ApiError::rate_limited(wait);
        }
    }
    if r != sessions::Rejected::Unknown {
        audit_refusal(state, ctx, rejected_reason(r), None).await;
    }
    if r == sessions::Rejected::PlatformSuspended {
        return ApiError::platform_suspended();
    }
    if r == sessions::Rejected::NetworkNotAllowed {
        return ApiError::new(
            axum::http::StatusCode::FORBIDDEN,
            "network-not-allowed",
            "your organization does not allow access from this network",
        );
    }
    ApiError::unauthenticated()
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let mut ctx = base_ctx(parts, state);
        let resolved: Resolved = if let Some(token) = bearer(parts) {
            if token.len() > 200 {
                return Err(ApiError::unauthenticated());
            }
            let ip = ctx.ip.clone().unwrap_or_default();
            match sessions::resolve_token(&state.store.db, token, &ip).await? {
                Ok(r) => r,
                Err(rej) => return Err(refuse(state, &ctx, rej).await),
            }
        } else if let Some(token) = cookie_value(parts, SESSION_COOKIE) {
            if token.len() > 200 {
                return Err(ApiError::unauthenticated());
            }
            let ip = ctx.ip.clone().unwrap_or_default();
            let r =
                match sessions::resolve_session(&state.store.db, token, state.config.session, &ip)
                    .await?
                {
                    Ok(r) => r,
                    Err(rej) => return Err(refuse(state, &ctx, rej).await),
                };
            if !is_safe(&parts.method) {
                let sent = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let want = r.csrf_digest.as_deref().unwrap_or("");
                let got = kura_crypto::token_digest(sent);
                if sent.is_empty()
                    || !kura_crypto::secrets::secrets_equal(got.as_bytes(), want.as_bytes())
                {
                    audit_refusal(state, &ctx, "csrf", Some(&r.actor)).await;
                    return Err(ApiError::new(
                        axum::http::StatusCode::FORBIDDEN,
                        "csrf",
                        "missing or invalid CSRF token (send the X-CSRF-Token header)",
                    ));
                }
            }
            r
        } else {
            return Err(ApiError::unauthenticated());
        };
        ctx.actor_user_id = Some(resolved.actor.user_id);
        ctx.actor_org_id = Some(resolved.actor.org_id);
        ctx.credential = Some(AuditCtx::credential_label(&resolved.actor.credential));
        kill_switches(parts, &resolved, &ctx)?;
        Ok(Authed {
            actor: resolved.actor,
            ctx,
            policy: resolved.policy,
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn addresses_have_one_text() {
        for (given, stored) in [
            ("::ffff:192.0.2.1", "192.0.2.1"),
            ("192.0.2.1", "192.0.2.1"),
            ("2001:DB8:0:0::1", "2001:db8::1"),
            ("::1", "::1"),
        ] {
            let ip: std::net::IpAddr = given.parse().expect("address");
            assert_eq!(super::canonical_ip(ip), stored);
        }
    }
}
