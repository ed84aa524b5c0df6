//! The web interface: server-rendered pages (askama, checked at compile
//! time) over the same use cases as the API, in Japanese and English.
//!
//! Security: the page CSP allows scripts and styles only from our own origin
//! (no inline code); every state-changing form carries the session's CSRF
//! token and is refused without it or from a foreign Origin; user content
//! is only ever served as a download or in a sandbox.

mod account;
mod admin;
pub mod assets;
mod browser;
mod file;
pub mod i18n;
mod login;
mod members;
mod mfa;
mod org_security;
mod pages;
mod password_reset;
pub mod security;
pub use security::scope_html;
mod sso;

use crate::auth::{cookie_value, RequestId, SESSION_COOKIE};
use crate::error::ApiError;
use crate::state::AppState;
use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use i18n::{Lang, T};
use kura_core::Actor;
use kura_store::orgs::Org;
use kura_store::users::User;
use kura_store::AuditCtx;
use serde::de::DeserializeOwned;

pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::home))
        .route("/assets/{name}", get(assets::serve))
        .route("/login", get(login::form).post(login::submit))
        .route("/login/factor", post(mfa::factor_submit))
        .route("/sso", get(sso::confirm).post(sso::start))
        .route("/sso/callback", get(sso::callback))
        .route(
            "/forgot",
            get(password_reset::forgot_form).post(password_reset::forgot_submit),
        )
        .route(
            "/reset-password",
            get(password_reset::reset_form).post(password_reset::reset_submit),
        )
        .route("/login/enrol", post(mfa::enrol_submit))
        .route("/step-up", get(mfa::step_up).post(mfa::step_up_submit))
        .route("/account/factors/totp", post(mfa::add_totp))
        .route("/account/factors/totp/confirm", post(mfa::confirm_totp))
        .route("/account/factors/{f}/rename", post(mfa::rename_factor))
        .route("/account/factors/{f}/remove", post(mfa::remove_factor))
        .route("/account/recovery-codes", post(mfa::new_codes))
        .route("/logout", post(login::logout))
        .route("/projects", post(pages::create_project))
        .route("/projects/{p}", get(browser::project_root))
        .route("/projects/{p}/folders/{f}", get(browser::folder))
        .route("/projects/{p}/folders/{f}/mkdir", post(browser::mkdir))
        .route("/projects/{p}/nodes/{n}", get(file::details))
        .route("/projects/{p}/nodes/{n}/preview", get(file::preview))
        .route("/projects/{p}/nodes/{n}/rename", post(file::rename))
        .route(
            "/projects/{p}/nodes/{n}/move",
            get(file::move_picker).post(file::move_to),
        )
        .route("/projects/{p}/nodes/{n}/delete", post(file::delete))
        .route(
            "/projects/{p}/nodes/{n}/versions/{v}/restore",
            post(file::restore_version),
        )
        .route("/projects/{p}/trash", get(browser::trash))
        .route("/projects/{p}/trash/{n}/restore", post(browser::restore))
        .route("/projects/{p}/trash/{n}/purge", post(browser::purge))
        .route(
            "/projects/{p}/members",
            get(members::list).post(members::add),
        )
        .route("/projects/{p}/members/{u}/role", post(members::set_role))
        .route("/projects/{p}/members/{u}/remove", post(members::remove))
        .route("/orgs/{o}", get(admin::org))
        .route("/orgs/{o}/users", post(admin::create_user))
        .route("/orgs/{o}/users/{u}/disable", post(admin::disable_user))
        .route("/orgs/{o}/users/{u}/enable", post(admin::enable_user))
        .route("/orgs/{o}/users/{u}/password", post(admin::reset_password))
        .route("/orgs/{o}/users/{u}/lock", post(org_security::lock))
        .route("/orgs/{o}/users/{u}/unlock", post(org_security::unlock))
        .route(
            "/orgs/{o}/users/{u}/reset-mfa",
            post(org_security::reset_mfa),
        )
        .route(
            "/orgs/{o}/users/{u}/revoke-sessions",
            post(org_security::revoke_user),
        )
        .route("/orgs/{o}/revoke-sessions", post(org_security::revoke_org))
        .route("/orgs/{o}/policy", post(org_security::set_policy))
        .route("/audit", get(admin::audit))
        .route("/security", get(security::dashboard))
        .route("/security/scope", get(security::scope))
        .route("/security/alerts/{a}/status", post(security::alert_status))
        .route("/security/platform/mode", post(security::set_mode))
        .route("/security/orgs/{o}/suspend", post(security::suspend_org))
        .route("/orgs/{o}/force-reset", post(security::force_reset_org))
        .route(
            "/orgs/{o}/users/{u}/force-reset",
            post(security::force_reset_user),
        )
        .route("/projects/{p}/nodes/{n}/canary", post(security::canary))
        .route("/audit.csv", get(admin::audit_csv))
        .route("/account", get(account::page))
        .route("/account/password", post(account::password))
        .route("/account/preferences", post(account::preferences))
        .route(
            "/account/sessions/{s}/revoke",
            post(account::revoke_session),
        )
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{t}/revoke", post(account::revoke_token))
}

/// The signed-in user as pages need them.
#[derive(Clone)]
pub struct Me {
    pub actor: Actor,
    pub user: User,
    pub org: Org,
    /// The home organization's policy, read with the session.
    pub policy: std::sync::Arc<kura_store::org_policy::OrgPolicy>,
}

/// Per-request web context: language, time zone, the user (if signed in),
/// CSRF token and audit context.
/// The page a form posting to `path` lives on.
fn page_of_form(path: &str) -> String {
    let seg: Vec<&str> = path.split('/').collect();
    match seg.as_slice() {
        ["", "projects", p, "members", ..] => format!("/projects/{p}/members"),
        ["", "projects", p, ..] => format!("/projects/{p}"),
        ["", "orgs", o, ..] => format!("/orgs/{o}"),
        ["", "account", ..] => "/account".into(),
        _ => "/".into(),
    }
}

pub struct Web {
    pub t: T,
    pub tz: jiff::tz::TimeZone,
    pub me: Option<Me>,
    pub csrf: String,
    pub ctx: AuditCtx,
    pub path: String,
}

impl FromRequestParts<AppState> for Web {
    type Rejection = WebError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, WebError> {
        let accept = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let browser_lang = Lang::from_accept_language(accept).unwrap_or(Lang::En);
        let mut ctx = crate::auth::Ctx::from_request_parts(parts, state)
            .await
            .map(|c| c.0)
            .unwrap_or_default();
        if ctx.request_id.is_none() {
            ctx.request_id = parts.extensions.get::<RequestId>().map(|r| r.0.clone());
        }
        // After signing in, the browser returns here: only GET pages make sense.
        let path = if parts.method == axum::http::Method::GET {
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".into())
        } else {
            // A POST that must be confirmed first (step-up) returns to the
            // page its form is on (pages send no Referer).
            page_of_form(parts.uri.path())
        };
        let mut web = Web {
            t: T { lang: browser_lang },
            tz: jiff::tz::TimeZone::UTC,
            me: None,
            csrf: String::new(),
            ctx,
            path,
        };
        let Some(token) = cookie_value(parts, SESSION_COOKIE).filter(|t| t.len() <= 200) else {
            return Ok(web);
        };
        let ip = web.ctx.ip.clone().unwrap_or_default();
        let resolved = kura_store::sessions::resolve_session(
            &state.store.db,
            token,
            state.config.session,
            &ip,
        )
        .await
        .map_err(|e| web.error(e.into()))?;
        // A refused cookie (revoked, expired, disabled, suspended) is audited as
        // in the API, then the page is served as signed out.
        let resolved = match resolved {
            Ok(r) => Ok(r),
            Err(rej) => {
                let _ = crate::auth::refuse(state, &web.ctx, rej).await;
                Err(rej)
            }
        };
        if let Ok(r) = resolved {
            crate::auth::kill_switches(parts, &r, &web.ctx).map_err(|e| web.error(e))?;
            let user = kura_store::users::get_any(&state.store.db, r.actor.user_id)
                .await
                .map_err(|e| web.error(e.into()))?;
            let org = kura_store::orgs::get_any(&state.store.db, r.actor.org_id)
                .await
                .map_err(|e| web.error(e.into()))?;
            if let Some(l) = user.locale.as_deref().and_then(Lang::parse) {
                web.t = T { lang: l };
            }
            if let Some(tz) = user
                .time_zone
                .as_deref()
                .and_then(|z| jiff::tz::TimeZone::get(z).ok())
            {
                web.tz = tz;
            }
            web.csrf = kura_crypto::secrets::csrf_for(token);
            web.ctx.actor_user_id = Some(r.actor.user_id);
            web.ctx.actor_org_id = Some(r.actor.org_id);
            web.ctx.credential = Some(AuditCtx::credential_label(&r.actor.credential));
            web.me = Some(Me {
                actor: r.actor,
                user,
                org,
                policy: r.policy,
            });
        }
        Ok(web)
    }
}

impl Web {
    /// The signed-in user, or a redirect to the sign-in page.
    pub fn me(&self) -> Result<&Me, WebError> {
        self.me.as_ref().ok_or_else(|| WebError {
            t: self.t,
            kind: ErrKind::Login(self.path.clone()),
        })
    }

    pub fn error(&self, e: ApiError) -> WebError {
        WebError {
            t: self.t,
            kind: if e.status == StatusCode::UNAUTHORIZED {
                ErrKind::Login(self.path.clone())
            } else if e.code == "step-up-required" {
                ErrKind::StepUp(self.path.clone())
            } else {
                ErrKind::Api(e)
            },
        }
    }

    /// A time in the user's zone, e.g. "2026-11-26 21:05".
    pub fn time(&self, micros: i64) -> String {
        jiff::Timestamp::from_microsecond(micros)
            .map(|ts| {
                ts.to_zoned(self.tz.clone())
                    .strftime("%Y-%m-%d %H:%M")
                    .to_string()
            })
            .unwrap_or_default()
    }

    pub fn layout(&self, title: String) -> Layout {
        Layout {
            t: self.t,
            title,
            csrf: self.csrf.clone(),
            css: assets::url("app.css"),
            js: assets::url("app.js"),
            me_name: self.me.as_ref().map(|m| m.user.display_name.clone()),
            me_org: self.me.as_ref().map(|m| m.org.name.clone()),
            org_id: self
                .me
                .as_ref()
                .map(|m| m.org.id.to_string())
                .unwrap_or_default(),
            is_org_admin: self.me.as_ref().is_some_and(|m| m.actor.org_admin),
            is_platform_admin: self.me.as_ref().is_some_and(|m| m.actor.platform_admin),
        }
    }
}

/// What every page's frame needs.
pub struct Layout {
    pub t: T,
    pub title: String,
    pub csrf: String,
    pub css: String,
    pub js: String,
    pub me_name: Option<String>,
    pub me_org: Option<String>,
    pub org_id: String,
    pub is_org_admin: bool,
    pub is_platform_admin: bool,
}

/// Map a failure of the layers below to a web error.
pub trait OrWeb<V> {
    fn web(self, w: &Web) -> Result<V, WebError>;
}

impl<V, E: Into<ApiError>> OrWeb<V> for Result<V, E> {
    fn web(self, w: &Web) -> Result<V, WebError> {
        self.map_err(|e| w.error(e.into()))
    }
}

pub enum ErrKind {
    Login(String),
    /// A fresh second factor is needed; come back to this page after it.
    StepUp(String),
    Api(ApiError),
}

pub struct WebError {
    pub t: T,
    pub kind: ErrKind,
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    l: Layout,
    status: u16,
    heading: String,
    detail: String,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        match self.kind {
            ErrKind::Login(next) => {
                let next = if next.starts_with('/') && !next.starts_with("//") {
                    next
                } else {
                    "/".into()
                };
                Redirect::to(&format!("/login?next={}", urlencode(&next))).into_response()
            }
            ErrKind::StepUp(next) => {
                let next = if next.starts_with('/') && !next.starts_with("//") {
                    next
                } else {
                    "/".into()
                };
                Redirect::to(&format!("/step-up?next={}", urlencode(&next))).into_response()
            }
            ErrKind::Api(e) => {
                let t = self.t;
                let key = match e.status.as_u16() {
                    404 => "error.not_found",
                    403 => "error.forbidden",
                    400 | 409 | 413 | 415 | 416 | 507 => "error.bad_request",
                    _ => "error.server",
                };
                let detail = if e.status.is_server_error() {
                    t.t("error.server_detail").to_string()
                } else {
                    e.detail.clone()
                };
                let page = ErrorPage {
                    l: Layout {
                        t,
                        title: t.t(key).to_string(),
                        csrf: String::new(),
                        css: assets::url("app.css"),
                        js: assets::url("app.js"),
                        me_name: None,
                        me_org: None,
                        org_id: String::new(),
                        is_org_admin: false,
                        is_platform_admin: false,
                    },
                    status: e.status.as_u16(),
                    heading: t.t(key).to_string(),
                    detail,
                };
                let mut r = html(&page);
                *r.status_mut() = e.status;
                r
            }
        }
    }
}

/// Render a page with the page CSP.
pub fn html<P: Template>(page: &P) -> Response {
    match page.render() {
        Ok(body) => {
            let mut r = axum::response::Html(body).into_response();
            r.headers_mut().insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(PAGE_CSP),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A form body, accepted only with the session's CSRF token (field `_csrf`,
/// checked before the form is interpreted) and not from a foreign origin.
/// Handlers of state-changing forms take this extractor, so a form without
/// the check cannot be written; form types need not declare `_csrf`.
pub struct WebForm<F>(pub F);

/// A foreign Origin is refused. `null` is not foreign: browsers send it for
/// our own forms because every page says `Referrer-Policy: no-referrer`; the
/// CSRF token is what proves those requests came from our pages.
pub fn foreign_origin(headers: &axum::http::HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    if origin == "null" {
        return false;
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin.split("://").nth(1).unwrap_or("") != host
}

const FORM_LIMIT: usize = 64 * 1024;

impl<F: DeserializeOwned + Send> FromRequest<AppState> for WebForm<F> {
    type Rejection = Response;
    async fn from_request(req: Request, state: &AppState) -> Result<Self, Response> {
        let (mut parts, body) = req.into_parts();
        let web = Web::from_request_parts(&mut parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if web.me.is_none() {
            return Err(web.error(ApiError::unauthenticated()).into_response());
        }
        let refuse = |reason: &'static str| {
            let mut ev = kura_store::AuditEvent::new("auth.reject", kura_store::Outcome::Denied)
                .detail(serde_json::json!({"reason": reason, "path": parts.uri.path()}));
            if let Some(me) = &web.me {
                ev = ev.org(me.actor.org_id);
            }
            ev
        };
        let forbidden = |w: &Web| {
            w.error(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                w.t.t("error.csrf"),
            ))
            .into_response()
        };
        if foreign_origin(&parts.headers) {
            let _ = state.store.audit.record(&web.ctx, refuse("origin")).await;
            return Err(forbidden(&web));
        }
        let bytes = axum::body::to_bytes(body, FORM_LIMIT).await.map_err(|_| {
            web.error(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-large",
                "the form is larger than 64 KiB",
            ))
            .into_response()
        })?;
        // The token is checked before the form is interpreted at all.
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let sent = pairs
            .iter()
            .find(|(k, _)| k == "_csrf")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        if sent.is_empty()
            || !kura_crypto::secrets::secrets_equal(sent.as_bytes(), web.csrf.as_bytes())
        {
            let _ = state.store.audit.record(&web.ctx, refuse("csrf")).await;
            return Err(forbidden(&web));
        }
        let f: F = serde_urlencoded::from_bytes(&bytes).map_err(|e| {
            web.error(ApiError::bad_request(e.to_string()))
                .into_response()
        })?;
        Ok(WebForm(f))
    }
}

/// A form with no fields of its own (only the CSRF token).
#[derive(serde::Deserialize)]
pub struct NoFields {}

/// Parse an id from the path; a malformed one is simply not found.
pub fn parse_id<T: std::str::FromStr>(w: &Web, raw: &str) -> Result<T, WebError> {
    raw.parse().map_err(|_| w.error(ApiError::not_found()))
}

/// Redirect after a successful POST (303: the browser follows with GET).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// Unknown paths: a problem document under /api, a page elsewhere.
pub async fn not_found(w: Web) -> Response {
    let e = ApiError::new(StatusCode::NOT_FOUND, "not-found", "no such endpoint");
    if w.path.starts_with("/api/") || w.path == "/api" {
        e.into_response()
    } else {
        WebError {
            t: w.t,
            kind: ErrKind::Api(ApiError::new(
                StatusCode::NOT_FOUND,
                "not-found",
                w.t.t("error.not_found_detail"),
            )),
        }
        .into_response()
    }
}
