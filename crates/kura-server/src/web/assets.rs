//! Static assets compiled into the binary and served under names that carry
//! a digest of their content, so they can be cached forever and change name
//! when they change. No CDN, no inline script: the CSP is `script-src 'self'`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use std::sync::OnceLock;

pub struct Asset {
    pub logical: &'static str,
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        logical: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_bytes!("../../assets/app.css"),
    },
    Asset {
        logical: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/app.js"),
    },
    Asset {
        logical: "passkey.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/passkey.js"),
    },
    Asset {
        logical: "upload.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_bytes!("../../assets/upload.js"),
    },
];

fn hashed_names() -> &'static Vec<(String, &'static Asset)> {
    static NAMES: OnceLock<Vec<(String, &'static Asset)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let d = hex::encode(&Sha256::digest(a.body)[..6]);
                let (stem, ext) = a.logical.rsplit_once('.').unwrap_or((a.logical, ""));
                (format!("{stem}.{d}.{ext}"), a)
            })
            .collect()
    })
}

/// The URL of an asset, e.g. `/assets/app.3f2a1b9c0d4e.css`.
pub fn url(logical: &str) -> String {
    hashed_names()
        .iter()
        .find(|(_, a)| a.logical == logical)
        .map(|(n, _)| format!("/assets/{n}"))
        .unwrap_or_default()
}

pub async fn serve(Path(name): Path<String>) -> Response {
    match hashed_names().iter().find(|(n, _)| *n == name) {
        Some((_, a)) => {
            let mut r = a.body.into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(a.content_type),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=31536000, immutable"),
            );
            r
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
