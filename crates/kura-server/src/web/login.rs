//! Sign-in and sign-out pages.

use super::{html, see_other, HasCsrf, Layout, Web, WebError, WebForm};
use crate::api::account::{clear_cookie, session_cookie, sign_in};
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
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// Only local paths: never an open redirect.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.contains('\\')
                && n.len() < 2000 =>
        {
            n.to_string()
        }
        _ => "/".to_string(),
    }
}

pub async fn form(w: Web, Query(q): Query<NextQuery>) -> Response {
    if w.me.is_some() {
        return see_other(&safe_next(q.next.as_deref()));
    }
    html(&LoginPage {
        l: w.layout(w.t.t("login.title").into()),
        next: safe_next(q.next.as_deref()),
        email: String::new(),
        error: None,
    })
}

#[derive(Deserialize)]
pub struct LoginForm {
    email: String,
    password: String,
    next: Option<String>,
}

pub async fn submit(
    State(s): State<AppState>,
    w: Web,
    headers: HeaderMap,
    axum::Form(f): axum::Form<LoginForm>,
) -> Result<Response, WebError> {
    // No session exists yet, so no CSRF token either: a foreign Origin is refused instead.
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if origin.split("://").nth(1).unwrap_or("") != host {
            return Err(w.error(crate::error::ApiError::forbidden()));
        }
    }
    let next = safe_next(f.next.as_deref());
    match sign_in(&s, &w.ctx, &f.email, &f.password).await {
        Ok((_user, sess)) => {
            let mut r = see_other(&next);
            r.headers_mut().insert(
                header::SET_COOKIE,
                session_cookie(&s, &sess.token).map_err(|e| w.error(e))?,
            );
            Ok(r)
        }
        Err(e) if e.status == StatusCode::UNAUTHORIZED || e.status == StatusCode::BAD_REQUEST => {
            let page = LoginPage {
                l: w.layout(w.t.t("login.title").into()),
                next,
                email: f.email.chars().take(254).collect(),
                error: Some(w.t.t("login.failed").into()),
            };
            let mut r = html(&page);
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            Ok(r)
        }
        Err(e) => Err(w.error(e)),
    }
}

#[derive(Deserialize)]
pub struct CsrfOnly {
    _csrf: String,
}

impl HasCsrf for CsrfOnly {
    fn csrf(&self) -> &str {
        &self._csrf
    }
}

pub async fn logout(
    State(s): State<AppState>,
    w: Web,
    WebForm(_f): WebForm<CsrfOnly>,
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
