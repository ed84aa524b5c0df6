//! Kura's HTTP application: the REST API (JSON, RFC 9457 errors, OpenAPI),
//! authentication, security headers, metrics and operations endpoints.
//! Handlers parse input, ask the policy (through [`AppState`]'s grant
//! helpers, the one choke point) and call the store.

pub mod api;
pub mod auth;
pub mod error;
pub mod mailer;
pub mod metrics;
pub mod middleware;
pub mod notices;
pub mod ops;
pub mod passkeys;
pub mod ratelimit;
pub mod responder;
pub mod signin;
pub mod sso;
pub mod state;
pub mod tls;
pub mod web;

pub use state::{AppState, ServerConfig};

use axum::Router;

/// The routers for the public listener and (when configured) the separate
/// platform-administration listener.
pub struct Routers {
    pub public: Router,
    pub admin: Option<Router>,
}

pub fn build(state: AppState, separate_admin: bool) -> Routers {
    let (api_public, api_admin, doc) = api::routes();
    let doc = std::sync::Arc::new(doc);
    let ops = ops::router(doc, !separate_admin);
    let wrap = |r: Router<AppState>| {
        middleware::wrap(
            r.fallback(web::not_found).with_state(state.clone()),
            state.clone(),
        )
    };
    if separate_admin {
        Routers {
            public: wrap(api_public.merge(ops.clone()).merge(web::router())),
            admin: Some(wrap(api_admin.merge(ops::router(
                std::sync::Arc::new(serde_json::Value::Null),
                true,
            )))),
        }
    } else {
        Routers {
            public: wrap(api_public.merge(api_admin).merge(ops).merge(web::router())),
            admin: None,
        }
    }
}
