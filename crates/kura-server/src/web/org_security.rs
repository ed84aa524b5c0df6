//! The organization page's sign-in controls: the policy form, and per user
//! lock, unlock, reset of second factors and ending sessions; ending every
//! session of the organization. Same store calls as the API, same audit.

use super::{see_other, OrWeb, Web, WebError, WebForm};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use kura_core::{OrgAction, OrgId, UserId};
use kura_store::org_policy::{self, OrgPolicy};
use kura_store::{sessions, throttle, users};
use serde::Deserialize;

/// The policy as the form shows it.
pub struct PolicyView {
    pub mfa_required: bool,
    pub webauthn_for_admins: bool,
    pub allowed_networks: String,
    pub allowed_email_domains: String,
    pub session_idle_minutes: String,
    pub session_absolute_hours: String,
    pub lockout_threshold: u32,
    pub step_up_minutes: u32,
    pub bulk_download_files: u32,
    pub bulk_download_mib: u64,
}

impl From<&OrgPolicy> for PolicyView {
    fn from(p: &OrgPolicy) -> Self {
        Self {
            mfa_required: p.mfa_required,
            webauthn_for_admins: p.webauthn_for_admins,
            allowed_networks: p
                .allowed_networks
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
            allowed_email_domains: p.allowed_email_domains.join("\n"),
            session_idle_minutes: p
                .session_idle_minutes
                .map(|v| v.to_string())
                .unwrap_or_default(),
            session_absolute_hours: p
                .session_absolute_hours
                .map(|v| v.to_string())
                .unwrap_or_default(),
            lockout_threshold: p.lockout_threshold,
            step_up_minutes: p.step_up_minutes,
            bulk_download_files: p.bulk_download_files,
            bulk_download_mib: p.bulk_download_bytes / (1024 * 1024),
        }
    }
}

fn ids(w: &Web, o: &str, u: Option<&str>) -> Result<(OrgId, Option<UserId>), WebError> {
    let o: OrgId = o.parse().map_err(|_| w.error(ApiError::not_found()))?;
    let u = match u {
        Some(u) => Some(u.parse().map_err(|_| w.error(ApiError::not_found()))?),
        None => None,
    };
    Ok((o, u))
}

#[derive(Deserialize)]
pub struct PolicyForm {
    mfa_required: Option<String>,
    webauthn_for_admins: Option<String>,
    #[serde(default)]
    allowed_networks: String,
    #[serde(default)]
    allowed_email_domains: String,
    #[serde(default)]
    session_idle_minutes: String,
    #[serde(default)]
    session_absolute_hours: String,
    lockout_threshold: String,
    step_up_minutes: String,
    bulk_download_files: String,
    bulk_download_mib: String,
}

fn parse_policy(f: &PolicyForm) -> Result<OrgPolicy, String> {
    fn num<T: std::str::FromStr>(field: &str, v: &str) -> Result<T, String> {
        v.trim()
            .parse()
            .map_err(|_| format!("{field}: a whole number is needed"))
    }
    fn opt<T: std::str::FromStr>(field: &str, v: &str) -> Result<Option<T>, String> {
        if v.trim().is_empty() {
            Ok(None)
        } else {
            num(field, v).map(Some)
        }
    }
    let lines = |s: &str| -> Vec<String> {
        s.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect()
    };
    let mut networks = Vec::new();
    for n in lines(&f.allowed_networks) {
        // A bare address means that one host.
        let net = n
            .parse::<ipnet::IpNet>()
            .or_else(|_| n.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
            .map_err(|_| format!("{n} is not an address or a network like 10.0.0.0/8"))?;
        networks.push(net);
    }
    let mib: u64 = num("bulk download size", &f.bulk_download_mib)?;
    Ok(OrgPolicy {
        mfa_required: f.mfa_required.is_some(),
        webauthn_for_admins: f.webauthn_for_admins.is_some(),
        allowed_networks: networks,
        allowed_email_domains: lines(&f.allowed_email_domains)
            .into_iter()
            .map(|d| d.to_lowercase())
            .collect(),
        session_idle_minutes: opt("session idle timeout", &f.session_idle_minutes)?,
        session_absolute_hours: opt("session lifetime", &f.session_absolute_hours)?,
        lockout_threshold: num("lockout threshold", &f.lockout_threshold)?,
        step_up_minutes: num("step-up window", &f.step_up_minutes)?,
        bulk_download_files: num("bulk download files", &f.bulk_download_files)?,
        bulk_download_bytes: mib.saturating_mul(1024 * 1024),
    })
}

pub async fn set_policy(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
    WebForm(f): WebForm<PolicyForm>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (o, _) = ids(&w, &o, None)?;
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(&w)?;
    let policy = match parse_policy(&f) {
        Ok(p) => p,
        Err(m) => {
            return super::admin::render_org(&s, &w, o, Some(m), StatusCode::BAD_REQUEST).await
        }
    };
    let ip = w.ctx.ip.clone().unwrap_or_default();
    if o == me.actor.org_id && !policy.allows_ip(&ip) {
        let m = w.t.f("org.policy_own_ip", &[("ip", &ip)]);
        return super::admin::render_org(&s, &w, o, Some(m), StatusCode::CONFLICT).await;
    }
    match org_policy::set(&s.store.db, &g, &w.ctx, &policy).await {
        Ok(()) => {
            super::admin::render_org(
                &s,
                &w,
                o,
                Some(w.t.t("org.policy_saved").into()),
                StatusCode::OK,
            )
            .await
        }
        Err(kura_store::StoreError::Invalid(m)) => {
            super::admin::render_org(&s, &w, o, Some(m), StatusCode::BAD_REQUEST).await
        }
        Err(e) => Err(w.error(e.into())),
    }
}

async fn target(
    s: &AppState,
    w: &Web,
    o: &str,
    u: &str,
) -> Result<(kura_core::OrgGrant, users::User), WebError> {
    let me = w.me()?;
    let (o, u) = ids(w, o, Some(u))?;
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(w)?;
    let user = users::get_in_org(&s.store.db, &g, u.unwrap_or_default())
        .await
        .web(w)?;
    Ok((g, user))
}

pub async fn lock(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let (g, user) = target(&s, &w, &o, &u).await?;
    if Some(user.id) == w.me.as_ref().map(|m| m.actor.user_id) {
        return super::admin::render_org(
            &s,
            &w,
            g.org_id(),
            Some(w.t.t("org.not_yourself").into()),
            StatusCode::CONFLICT,
        )
        .await;
    }
    throttle::lock(&s.store.db, &w.ctx, user.id, g.org_id(), "admin")
        .await
        .web(&w)?;
    Ok(see_other(&format!("/orgs/{}", g.org_id())))
}

pub async fn unlock(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let (g, user) = target(&s, &w, &o, &u).await?;
    throttle::unlock(&s.store.db, &w.ctx, user.id, g.org_id(), &user.email)
        .await
        .web(&w)?;
    Ok(see_other(&format!("/orgs/{}", g.org_id())))
}

pub async fn reset_mfa(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let (g, user) = target(&s, &w, &o, &u).await?;
    users::reset_mfa(&s.store.db, &g, &w.ctx, user.id)
        .await
        .web(&w)?;
    Ok(see_other(&format!("/orgs/{}", g.org_id())))
}

pub async fn revoke_user(
    State(s): State<AppState>,
    w: Web,
    Path((o, u)): Path<(String, String)>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let (g, user) = target(&s, &w, &o, &u).await?;
    let n = sessions::revoke_user(&s.store.db, &w.ctx, g.org_id(), user.id, true)
        .await
        .web(&w)?;
    let m = w.t.f("org.revoked", &[("n", &n.to_string())]);
    super::admin::render_org(&s, &w, g.org_id(), Some(m), StatusCode::OK).await
}

pub async fn revoke_org(
    State(s): State<AppState>,
    w: Web,
    Path(o): Path<String>,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    let (o, _) = ids(&w, &o, None)?;
    let g = s
        .org_grant(&me.actor, &w.ctx, o, OrgAction::ManageUsers)
        .await
        .web(&w)?;
    sessions::revoke_org(&s.store.db, &w.ctx, g.org_id(), true)
        .await
        .web(&w)?;
    // The admin's own session ended with the others.
    Ok(see_other("/login"))
}
