//! Single sign-on pages: start at the organization's identity provider,
//! come back to /sso/callback, then Kura's second factor where the
//! organization requires one the provider did not assert.

use super::login::{login_page, safe_next, signed_in_redirect};
use super::{OrWeb, Web, WebError};

use crate::error::ApiError;
use crate::signin::{self, Step};
use crate::sso;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use kura_store::sessions::Amr;
use kura_store::users::{self, NewUser};
use kura_store::{org_policy, orgs, AuditEvent, Outcome};
use serde::Deserialize;
use serde_json::json;

const SSO_COOKIE: &str = "kura_sso";

#[derive(askama::Template)]
#[template(path = "sso_redirect.html")]
struct SsoRedirect {
    l: super::Layout,
    url: String,
}

#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    org: String,
    next: Option<String>,
}

fn refused(w: &Web, e: ApiError) -> Response {
    let mut r = login_page(w, "/".into(), String::new(), Some(e.detail.clone()));
    *r.status_mut() = if e.status.is_client_error() {
        e.status
    } else {
        StatusCode::BAD_GATEWAY
    };
    r
}

#[derive(askama::Template)]
#[template(path = "sso_confirm.html")]
struct SsoConfirm {
    l: super::Layout,
    org_name: String,
    org: String,
    next: String,
    login_token: String,
}

/// GET /sso?org=SLUG (a link an organization hands out): a page naming the
/// organization with a button, so a link alone cannot sign a browser in
/// (login CSRF through an attacker's own provider).
pub async fn confirm(
    State(s): State<AppState>,
    w: Web,
    Query(q): Query<StartQuery>,
) -> Result<Response, WebError> {
    let slug = q.org.trim().to_lowercase();
    let org = match orgs::by_slug(&s.store.db, &slug).await {
        Ok(o) if !o.suspended => o,
        _ => {
            return Ok(refused(
                &w,
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "sso-not-configured",
                    w.t.t("sso.unknown_org"),
                ),
            ))
        }
    };
    let token = kura_crypto::random_token("klogin");
    let mut r = super::html(&SsoConfirm {
        l: w.layout(w.t.t("sso.submit").into()),
        org_name: org.name,
        org: slug,
        next: safe_next(q.next.as_deref()),
        login_token: token.clone(),
    });
    r.headers_mut()
        .append(header::SET_COOKIE, super::login::login_token_cookie(&token));
    Ok(r)
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    org: String,
    next: Option<String>,
    #[serde(default)]
    login_token: String,
}

/// POST /sso: off to the organization's identity provider (a sign-in
/// form: double-submit token and Origin checked).
pub async fn start(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(q): axum::Form<StartForm>,
) -> Result<Response, WebError> {
    if let Some(r) =
        super::login::login_csrf(&s, &w, &headers, &q.login_token, q.next.as_deref()).await
    {
        return Ok(r);
    }
    let slug = q.org.trim().to_lowercase();
    let org = match orgs::by_slug(&s.store.db, &slug).await {
        Ok(o) if !o.suspended => o,
        _ => {
            return Ok(refused(
                &w,
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "sso-not-configured",
                    w.t.t("sso.unknown_org"),
                ),
            ))
        }
    };
    let next = safe_next(q.next.as_deref());
    let (url, state) = match sso::start(&s, org.id, &next).await {
        Ok(v) => v,
        Err(e) if e.code == "sso-not-configured" => {
            return Ok(refused(
                &w,
                ApiError::new(e.status, e.code, w.t.t("sso.unknown_org")),
            ))
        }
        Err(e) => return Ok(refused(&w, e)),
    };
    // A page that moves on to the provider: the sign-in form's CSP
    // (form-action 'self') would stop a redirect to another origin.
    let mut r = super::html(&SsoRedirect {
        l: w.layout(w.t.t("sso.continuing").into()),
        url,
    });
    // Binds the flow to this browser: a callback URL carried to another
    // browser (login CSRF, session swapping) finds no matching cookie.
    let cookie =
        format!("{SSO_COOKIE}={state}; Path=/sso; HttpOnly; Secure; SameSite=Lax; Max-Age=600");
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| w.error(ApiError::internal()))?,
    );
    Ok(r)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    #[serde(default)]
    code: String,
    #[serde(default)]
    state: String,
    error: Option<String>,
}

/// GET /sso/callback: verify, find or provision the account, then sign in.
pub async fn callback(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, WebError> {
    let cookie = crate::auth::cookie_from_headers(&headers, SSO_COOKIE).unwrap_or_default();
    let bound = !cookie.is_empty()
        && q.state.len() <= 200
        && kura_crypto::secrets::secrets_equal(cookie.as_bytes(), q.state.as_bytes());
    if q.error.is_some() || !bound {
        let reason = if q.error.is_some() {
            "provider_error"
        } else {
            "state_mismatch"
        };
        let ev = AuditEvent::new("auth.sso", Outcome::Denied).detail(json!({"reason": reason, "error": q.error.as_deref().map(|e| e.chars().take(100).collect::<String>())}));
        s.record(&w.ctx, ev).await.web(&w)?;
        return Ok(refused(
            &w,
            ApiError::new(StatusCode::BAD_REQUEST, "sso-invalid", w.t.t("sso.failed")),
        ));
    }
    let a = match sso::finish(&s, &w.ctx, &q.state, &q.code).await {
        Ok(a) => a,
        Err(e) => return Ok(refused(&w, e)),
    };
    let user = match account(&s, &w, &a).await? {
        Ok(u) => u,
        Err(reason) => {
            let ev = AuditEvent::new("auth.sso", Outcome::Denied)
                .org(a.org)
                .detail(json!({"reason": reason, "issuer": a.issuer, "subject": a.subject, "email": a.email}));
            s.record(&w.ctx, ev).await.web(&w)?;
            return Ok(refused(
                &w,
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    "sso-no-account",
                    w.t.t("sso.no_account"),
                ),
            ));
        }
    };
    let mut ctx = w.ctx.clone();
    ctx.actor_user_id = Some(user.id);
    ctx.actor_org_id = Some(user.org_id);
    let policy = org_policy::get(&s.store.db, user.org_id).await.web(&w)?;
    if !policy.allows_ip(ctx.ip.as_deref().unwrap_or("")) {
        let ev = AuditEvent::new("auth.sso", Outcome::Denied)
            .org(user.org_id)
            .detail(json!({"reason": "network_not_allowed"}));
        s.record(&ctx, ev).await.web(&w)?;
        return Ok(refused(
            &w,
            ApiError::new(
                StatusCode::FORBIDDEN,
                "network-not-allowed",
                w.t.t("sso.network"),
            ),
        ));
    }
    let trusted_mfa = a.config.idp_mfa_satisfies && a.mfa;
    let ev = AuditEvent::new("auth.sso", Outcome::Success)
        .org(user.org_id)
        .detail(json!({"issuer": a.issuer, "subject": a.subject, "amr": a.amr, "mfa_trusted": trusted_mfa}));
    s.record(&ctx, ev).await.web(&w)?;
    let presented = crate::auth::cookie_from_headers(&headers, crate::auth::SESSION_COOKIE);
    let webauthn_only = policy.requires_webauthn(signin::is_admin(&user));
    let step = if trusted_mfa && !webauthn_only {
        let sess = signin::finish(
            &s,
            &ctx,
            &user,
            &user.email.clone(),
            Amr::FederatedMfa,
            presented.as_deref(),
        )
        .await
        .web(&w)?;
        Step::Session(user, sess)
    } else {
        match signin::second_step(
            &s,
            &ctx,
            user,
            &policy,
            Amr::Federated,
            presented.as_deref(),
        )
        .await
        {
            Ok(step) => step,
            Err(e) => return Ok(refused(&w, e)),
        }
    };
    let next = safe_next(Some(&a.next));
    // The second-factor forms are sign-in forms: give them their token.
    let token = kura_crypto::random_token("klogin");
    let mut r = match step {
        Step::Session(_, sess) => return signed_in_redirect(&s, &w, &sess.token, &next),
        Step::Factor { challenge, methods } => {
            super::mfa::factor_page(&w, &challenge, &methods, &next, &token, None)
        }
        Step::Enrol { challenge, methods } => {
            super::mfa::enrol_page(&s, &w, &challenge, &methods, &next, &token, None).await?
        }
    };
    r.headers_mut()
        .append(header::SET_COOKIE, super::login::login_token_cookie(&token));
    Ok(r)
}

/// The account the assertion stands for: linked by subject, else by a
/// verified email in the same organization, else provisioned for an
/// allowed domain when the organization provisions. Err(reason) refuses.
async fn account(
    s: &AppState,
    w: &Web,
    a: &sso::Assertion,
) -> Result<Result<users::User, &'static str>, WebError> {
    let db = &s.store.db;
    if let Some((uid, org)) = kura_store::sso::linked(db, &a.issuer, &a.subject)
        .await
        .web(w)?
    {
        if org != a.org {
            return Ok(Err("linked_elsewhere"));
        }
        let u = users::get_any(db, uid).await.web(w)?;
        return Ok(if u.disabled {
            Err("disabled")
        } else if u.locked {
            Err("locked")
        } else {
            Ok(u)
        });
    }
    let (Some(email), true) = (a.email.clone(), a.email_verified) else {
        return Ok(Err("no_verified_email"));
    };
    let user = match users::by_email(db, &email).await.web(w)? {
        Some((u, _)) if u.org_id != a.org => return Ok(Err("email_in_other_org")),
        Some((u, _)) => u,
        None => {
            let policy = org_policy::get(db, a.org).await.web(w)?;
            if !a.config.provision_users || !policy.allows_email(&email) {
                return Ok(Err("not_provisioned"));
            }
            let name = a
                .name
                .clone()
                .unwrap_or_else(|| email.split('@').next().unwrap_or("user").to_string());
            users::insert(
                db,
                a.org,
                &w.ctx,
                NewUser {
                    email: &email,
                    display_name: &name,
                    password_hash: "",
                    org_admin: false,
                    platform_admin: false,
                },
            )
            .await
            .web(w)?
        }
    };
    if user.disabled {
        return Ok(Err("disabled"));
    }
    if user.locked {
        return Ok(Err("locked"));
    }
    kura_store::sso::link(db, &w.ctx, &a.issuer, &a.subject, user.id, a.org)
        .await
        .web(w)?;
    Ok(Ok(user))
}
