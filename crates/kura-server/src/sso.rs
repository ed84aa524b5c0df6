//! Single sign-on with OpenID Connect (authorization code flow with PKCE)
//! through the `openidconnect` crate. The organization's admins configure
//! their identity provider; an account is found by the provider's subject,
//! linked by verified email on first use, or provisioned for the
//! organization's allowed email domains when the organization says so.
//! The provider's MFA assertion (amr, RFC 8176) satisfies the MFA policy
//! only when the organization trusts it; otherwise Kura's own second
//! factor follows, as after a password.

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use axum::http::StatusCode;
use kura_core::OrgId;
use kura_store::sso::{self, SsoConfig};
use kura_store::{AuditCtx, AuditEvent, Outcome};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, TokenResponse,
};
use serde_json::json;

/// Whether an amr list (RFC 8176) shows more than one factor: "mfa", or
/// methods of two different kinds (something known, held, or inherent).
/// A single method ("otp" alone: an emailed code) is one factor.
pub fn amr_is_mfa(amr: &[String]) -> bool {
    const KNOWN: &[&str] = &["pwd", "pin", "kba"];
    const HELD: &[&str] = &["otp", "hwk", "swk", "sc", "sms", "tel", "pop"];
    const INHERENT: &[&str] = &["fpt", "face", "iris", "retina", "vbm", "geo"];
    let has = |set: &[&str]| amr.iter().any(|a| set.contains(&a.as_str()));
    let kinds = [has(KNOWN), has(HELD), has(INHERENT)]
        .iter()
        .filter(|k| **k)
        .count();
    amr.iter().any(|a| a == "mfa") || kinds >= 2
}

fn idp_error(what: &str, e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "single sign-on: {what}");
    ApiError::new(
        StatusCode::BAD_GATEWAY,
        "sso-provider-error",
        format!("the identity provider could not be used ({what})"),
    )
}

fn http_client() -> ApiResult<reqwest::Client> {
    // No redirects: the provider's endpoints are used as published (SSRF).
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| idp_error("http client", e))
}

pub fn redirect_uri(s: &AppState) -> String {
    format!("{}/sso/callback", s.config.public_url.trim_end_matches('/'))
}

async fn metadata(cfg: &SsoConfig, http: &reqwest::Client) -> ApiResult<CoreProviderMetadata> {
    let issuer = IssuerUrl::new(cfg.issuer.clone()).map_err(|e| idp_error("issuer URL", e))?;
    CoreProviderMetadata::discover_async(issuer, http)
        .await
        .map_err(|e| idp_error("discovery", e))
}

pub async fn config(s: &AppState, org: OrgId) -> ApiResult<SsoConfig> {
    sso::get(&s.store.db, &s.store.keys, org)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "sso-not-configured",
                "this organization has no single sign-on",
            )
        })
}

/// Start a flow: returns the provider's authorization URL and the state
/// (for the browser-binding cookie).
pub async fn start(s: &AppState, org: OrgId, next: &str) -> ApiResult<(String, String)> {
    let cfg = config(s, org).await?;
    let http = http_client()?;
    let client = CoreClient::from_provider_metadata(
        metadata(&cfg, &http).await?,
        ClientId::new(cfg.client_id.clone()),
        Some(ClientSecret::new(cfg.client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri(s)).map_err(|e| idp_error("redirect URL", e))?);
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    sso::begin_flow(
        &s.store.db,
        org,
        state.secret(),
        verifier.secret(),
        nonce.secret(),
        next,
    )
    .await?;
    Ok((url.to_string(), state.secret().clone()))
}

/// What the provider vouched for.
pub struct Assertion {
    pub org: OrgId,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub mfa: bool,
    pub amr: Vec<String>,
    pub next: String,
    pub config: SsoConfig,
}

/// Finish a flow: exchange the code (with the PKCE verifier), verify the
/// ID token (signature, issuer, audience, expiry, nonce).
pub async fn finish(s: &AppState, ctx: &AuditCtx, state: &str, code: &str) -> ApiResult<Assertion> {
    let refused = |reason: &str| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "sso-invalid",
            format!("the single sign-on response was refused ({reason}); start again"),
        )
    };
    if code.is_empty() || code.len() > 2000 {
        return Err(refused("no code"));
    }
    let Some(flow) = sso::take_flow(&s.store.db, state).await? else {
        let ev =
            AuditEvent::new("auth.sso", Outcome::Denied).detail(json!({"reason": "unknown_state"}));
        s.record(ctx, ev).await?;
        return Err(refused("unknown or used state"));
    };
    let cfg = config(s, flow.org_id).await?;
    let http = http_client()?;
    let client = CoreClient::from_provider_metadata(
        metadata(&cfg, &http).await?,
        ClientId::new(cfg.client_id.clone()),
        Some(ClientSecret::new(cfg.client_secret.clone())),
    )
    .set_redirect_uri(RedirectUrl::new(redirect_uri(s)).map_err(|e| idp_error("redirect URL", e))?);
    let token = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| idp_error("token endpoint", e))?
        .set_pkce_verifier(PkceCodeVerifier::new(flow.verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            tracing::info!(error = %e, "single sign-on: code exchange refused");
            refused("code exchange")
        })?;
    let id_token = token.id_token().ok_or_else(|| refused("no ID token"))?;
    let claims = match id_token.claims(&client.id_token_verifier(), &Nonce::new(flow.nonce.clone()))
    {
        Ok(c) => c,
        Err(e) => {
            let ev = AuditEvent::new("auth.sso", Outcome::Denied)
                .org(flow.org_id)
                .detail(json!({"reason": "id_token", "error": e.to_string()}));
            s.record(ctx, ev).await?;
            return Err(refused("ID token"));
        }
    };
    let mut email = claims.email().map(|e| e.to_string().trim().to_lowercase());
    let mut email_verified = claims.email_verified().unwrap_or(false);
    let mut name = claims
        .name()
        .and_then(|n| n.get(None))
        .map(|n| n.to_string());
    if email.is_none() {
        // Conforming providers put scope claims in the userinfo response
        // rather than the ID token; ask there, for the same subject.
        let info: Result<openidconnect::core::CoreUserInfoClaims, _> =
            match client.user_info(token.access_token().clone(), Some(claims.subject().clone())) {
                Ok(req) => req.request_async(&http).await.map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
        match info {
            Ok(info) => {
                email = info.email().map(|e| e.to_string().trim().to_lowercase());
                email_verified = info.email_verified().unwrap_or(false);
                name =
                    name.or_else(|| info.name().and_then(|n| n.get(None)).map(|n| n.to_string()));
            }
            Err(e) => tracing::info!(error = %e, "single sign-on: no userinfo"),
        }
    }
    let amr: Vec<String> = claims
        .auth_method_refs()
        .map(|v| v.iter().map(|a| a.to_string()).collect())
        .unwrap_or_default();
    Ok(Assertion {
        org: flow.org_id,
        issuer: cfg.issuer.clone(),
        subject: claims.subject().to_string(),
        email,
        email_verified,
        name,
        mfa: amr_is_mfa(&amr),
        amr,
        next: flow.next,
        config: cfg,
    })
}

#[cfg(test)]
mod tests {
    use super::amr_is_mfa;

    #[test]
    fn amr_needs_two_kinds_or_mfa() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(amr_is_mfa(&v(&["pwd", "otp"])));
        assert!(amr_is_mfa(&v(&["mfa"])));
        assert!(amr_is_mfa(&v(&["hwk", "fpt"])));
        assert!(!amr_is_mfa(&v(&["otp"])));
        assert!(!amr_is_mfa(&v(&["pwd"])));
        assert!(!amr_is_mfa(&v(&["hwk", "swk"])));
        assert!(!amr_is_mfa(&v(&[])));
    }
}
