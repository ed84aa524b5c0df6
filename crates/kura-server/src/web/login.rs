//! Sign-in and sign-out pages.

use super::{html, see_other, Layout, Web, WebError, WebForm};
use crate::api::account::clear_cookie;
use crate::api::signin::session_cookie;
use crate::signin::{password_step, Step};
use crate::state::AppState;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use kura_core::Credential;
use serde::Deserialize;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    l: Layout,
    next: String,
    email: String,
    error: Option<String>,
    login_token: String,
    reset_done: bool,
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    reset: Option<String>,
}

/// Only local paths: never an open redirect.
pub(crate) fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && !n.chars().any(|c| c.is_control() || c.is_whitespace())
                && n.len() < 2000 =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

pub(crate) const LOGIN_COOKIE: &str = "kura_login";

/// Sign-in forms carry no session yet, so their CSRF protection is a
/// double-submit token: a random value in a SameSite=Strict cookie and in
/// the form; a forged cross-site form cannot know it.
pub(crate) fn login_token_cookie(token: &str) -> axum::http::HeaderValue {
    axum::http::HeaderValue::from_str(&format!(
        "{LOGIN_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=3600"
    ))
    .unwrap_or(axum::http::HeaderValue::from_static(
        "kura_login=; Path=/; Max-Age=0",
    ))
}

pub(crate) fn login_page(w: &Web, next: String, email: String, error: Option<String>) -> Response {
    render_login(w, next, email, error, false)
}

fn render_login(
    w: &Web,
    next: String,
    email: String,
    error: Option<String>,
    reset_done: bool,
) -> Response {
    let token = kura_crypto::random_token("klogin");
    let mut r = html(&LoginPage {
        l: w.layout(w.t.t("login.title").into()),
        next,
        email,
        error,
        login_token: token.clone(),
        reset_done,
    });
    r.headers_mut()
        .insert(header::SET_COOKIE, login_token_cookie(&token));
    r
}

pub async fn form(w: Web, Query(q): Query<NextQuery>) -> Response {
    if w.me.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    render_login(
        &w,
        safe_next(q.next.as_deref()),
        String::new(),
        None,
        q.reset.is_some(),
    )
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
    #[serde(default)]
    login_token: String,
}

/// The sign-in forms' CSRF check (double-submit token and Origin); a
/// refusal is audited and answered with a fresh sign-in page.
pub(crate) async fn login_csrf(
    s: &AppState,
    w: &Web,
    headers: &HeaderMap,
    sent: &str,
    next: Option<&str>,
) -> Option<Response> {
    let cookie = crate::auth::cookie_from_headers(headers, LOGIN_COOKIE).unwrap_or_default();
    let token_ok = !cookie.is_empty()
        && kura_crypto::secrets::secrets_equal(cookie.as_bytes(), sent.as_bytes());
    if super::foreign_origin(headers) || !token_ok {
        let ev = kura_store::AuditEvent::new("auth.reject", kura_store::Outcome::Denied)
            .detail(serde_json::json!({"reason": "login_csrf"}));
        let _ = s.store.audit.record(&w.ctx, ev).await;
        let mut r = login_page(
            w,
            safe_next(next),
            String::new(),
            Some(w.t.t("error.csrf").into()),
        );
        *r.status_mut() = StatusCode::FORBIDDEN;
        return Some(r);
    }
    None
}

/// Signed in: the session cookie, then the page the user wanted.
pub(crate) fn signed_in_redirect(
    s: &AppState,
    w: &Web,
    token: &str,
    next: &str,
) -> Result<Response, WebError> {
    let mut r = see_other(next);
    r.headers_mut().insert(
        header::SET_COOKIE,
        session_cookie(s, token).map_err(|e| w.error(e))?,
    );
    Ok(r)
}

pub async fn submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Result<Response, WebError> {
    if let Some(r) = login_csrf(&s, &w, &headers, &f.login_token, f.next.as_deref()).await {
        return Ok(r);
    }
    let next = safe_next(f.next.as_deref());
    let presented = crate::auth::cookie_from_headers(&headers, crate::auth::SESSION_COOKIE);
    match password_step(&s, &w.ctx, &f.email, &f.password, presented.as_deref()).await {
        Ok(Step::Session(_user, sess)) => signed_in_redirect(&s, &w, &sess.token, &next),
        Ok(Step::Factor { challenge, methods }) => Ok(super::mfa::factor_page(
            &w,
            &challenge,
            &methods,
            &next,
            &f.login_token,
            None,
        )),
        Ok(Step::Enrol { challenge, methods }) => {
            super::mfa::enrol_page(&s, &w, &challenge, &methods, &next, &f.login_token, None).await
        }
        Err(e)
            if e.status == StatusCode::FORBIDDEN || e.status == StatusCode::TOO_MANY_REQUESTS =>
        {
            let mut r = login_page(
                &w,
                next,
                f.email.chars().take(254).collect(),
                Some(e.detail.clone()),
            );
            *r.status_mut() = e.status;
            Ok(r)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::BAD_REQUEST => {
            let mut r = login_page(
                &w,
                next,
                f.email.chars().take(254).collect(),
                Some(w.t.t("login.failed").into()),
            );
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
        Err(e) => Err(w.error(e)),
    }
}

pub async fn logout(
    State(s): State<AppState>,
    w: Web,
    WebForm(_f): WebForm<super::NoFields>,
) -> Result<Response, WebError> {
    let me = w.me()?;
    if let Credential::Session(id) = me.actor.credential {
        kura_store::sessions::revoke(&s.store.db, &w.ctx, me.actor.user_id, me.actor.org_id, id)
            .await
            .map_err(|e| w.error(e.into()))?;
    }
    let mut r = see_other("/login");
    r.headers_mut().insert(header::SET_COOKIE, clear_cookie());
    Ok(r.into_response())
}
