//! Cross-cutting layers: request ids, security headers on every response,
//! metrics and one structured log line per request.

use crate::auth::RequestId;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::response::Response;
use axum::Router;
use std::time::Instant;

pub fn wrap(r: Router, state: AppState) -> Router {
    r.layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .layer(axum::middleware::from_fn_with_state(state, around))
}

/// Sign-in steps, and every request that carries no credential, are
/// limited per client address; an exhausted bucket answers 429.
fn rate_limited(state: &AppState, parts: &axum::http::request::Parts) -> Option<Response> {
    use axum::response::IntoResponse;
    let path = parts.uri.path();
    let signin = parts.method == axum::http::Method::POST
        && (path == "/api/auth/login"
            || path.starts_with("/api/auth/mfa")
            || path.starts_with("/api/auth/enrol")
            || path.starts_with("/api/auth/password-reset")
            || path.starts_with("/api/auth/step-up")
            || path == "/api/me/password"
            || path == "/account/password"
            || path == "/step-up"
            || path == "/forgot"
            || path == "/reset-password"
            || path == "/api/bootstrap"
            || path == "/login"
            || path.starts_with("/login/"));
    let credentialed = parts.headers.contains_key(header::AUTHORIZATION)
        || crate::auth::cookie_value(parts, crate::auth::SESSION_COOKIE).is_some();
    let ops = matches!(path, "/healthz" | "/readyz" | "/metrics") || path.starts_with("/assets/");
    let limiter = if signin {
        &state.signin_limiter
    } else if !credentialed && !ops {
        &state.anonymous_limiter
    } else {
        return None;
    };
    let ip: std::net::IpAddr = crate::auth::client_ip(parts, state).parse().ok()?;
    let wait = limiter.check(ip).err()?;
    state.metrics.rate_limited.inc();
    let e = crate::error::ApiError::rate_limited(wait);
    if path.starts_with("/api/") {
        return Some(e.into_response());
    }
    let mut r = (
        axum::http::StatusCode::TOO_MANY_REQUESTS,
        axum::response::Html(format!(
            "<!doctype html><title>Too many requests · Kura</title><h1>Too many requests</h1><p>Try again in {wait} seconds. / {wait} 秒後にもう一度お試しください。</p>"
        )),
    )
        .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(wait));
    Some(r)
}

/// Kill switch: while the platform is suspended, clients other than
/// loopback (the break-glass administrator on the host) get a maintenance
/// page. Health checks still answer.
async fn maintenance(state: &AppState, parts: &axum::http::request::Parts) -> Option<Response> {
    let path = parts.uri.path();
    if state.mode.get() == kura_store::platform::Mode::Normal {
        return None;
    }
    // The cache is refreshed every half second; before refusing anything,
    // confirm with the database, so that lifting a switch takes effect on
    // the next request too. (Requests with a credential read the mode with
    // it, so switching on never waits for the cache either.)
    let mode = match kura_store::platform::mode(&state.store.db).await {
        Ok(m) => {
            state.mode.set(m);
            m
        }
        Err(_) => state.mode.get(),
    };
    match mode {
        kura_store::platform::Mode::Normal => return None,
        // Requests with a credential are checked with it (auth.rs); this
        // catches the anonymous changes (password reset, bootstrap).
        kura_store::platform::Mode::ReadOnly => {
            return (!crate::auth::is_safe(&parts.method) && !crate::auth::read_only_allows(path))
                .then(|| crate::error::ApiError::read_only().into_response());
        }
        kura_store::platform::Mode::Suspended => {}
    }
    if matches!(path, "/healthz" | "/readyz") || path.starts_with("/assets/") {
        return None;
    }
    let ip = crate::auth::client_ip(parts, state);
    // A proxy on the same host makes every client look like loopback; a
    // request it forwarded is never the break-glass operator.
    let forwarded = !state.config.trust_forwarded_for
        && (parts.headers.contains_key("x-forwarded-for")
            || parts.headers.contains_key("forwarded"));
    if !forwarded
        && ip
            .parse::<std::net::IpAddr>()
            .is_ok_and(|i| i.is_loopback())
    {
        return None;
    }
    let html = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let mut r = if html {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Kura: maintenance</title></head>\
             <body><h1>Kura is under maintenance</h1><p>The service is suspended for now. Please try again later.</p>\
             <h1 lang=\"ja\">メンテナンス中</h1><p lang=\"ja\">現在サービスを停止しています。しばらくしてから再度お試しください。</p></body></html>",
        )
            .into_response()
    } else {
        crate::error::ApiError::platform_suspended().into_response()
    };
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("300"));
    Some(r)
}

async fn around(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    // Every log line written while handling the request carries its id.
    let span = tracing::info_span!("request", request_id = %id);
    let (parts, body) = req.into_parts();
    let limited = match rate_limited(&state, &parts) {
        Some(r) => Some(r),
        None => maintenance(&state, &parts).await,
    };
    let req = Request::from_parts(parts, body);
    let mut resp = match limited {
        Some(r) => r,
        None => tracing::Instrument::instrument(next.run(req), span).await,
    };
    let h = resp.headers_mut();
    h.insert(
        "x-request-id",
        HeaderValue::from_str(&id).unwrap_or(HeaderValue::from_static("-")),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !h.contains_key(header::X_FRAME_OPTIONS) {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CONTENT_SECURITY_POLICY) {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
            ),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if state.config.tls {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        );
    }
    let status = resp.status().as_u16();
    let elapsed = started.elapsed();
    state
        .metrics
        .requests
        .get_or_create(&crate::metrics::RequestLabels {
            method: method.to_string(),
            status,
        })
        .inc();
    state
        .metrics
        .latency
        .get_or_create(&crate::metrics::MethodLabel {
            method: method.to_string(),
        })
        .observe(elapsed.as_secs_f64());
    tracing::info!(request_id = %id, method = %method, path = %path, status, micros = elapsed.as_micros() as u64, "request");
    resp
}
