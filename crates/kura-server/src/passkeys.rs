//! WebAuthn ceremonies (passkeys and security keys) through webauthn-rs.
//! Ceremony state is kept server-side in the challenge row, never sent to
//! the client; credentials are stored as webauthn-rs serializes them.

use crate::error::ApiError;
use axum::http::StatusCode;
use kura_core::{FactorId, UserId};
use serde_json::Value;
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PasskeyRegistration, PublicKeyCredential,
    RegisterPublicKeyCredential, Url, Webauthn, WebauthnBuilder,
};

pub struct Passkeys {
    webauthn: Webauthn,
}

fn invalid(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "webauthn-invalid",
        format!("the {what} could not be verified; try again with your passkey or security key"),
    )
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    tracing::error!(error = %e, "webauthn");
    ApiError::internal()
}

impl Passkeys {
    /// The relying party is the public origin's host; browsers refuse IP
    /// addresses there, so an origin on 127.0.0.1 gets no passkeys.
    pub fn new(public_url: &str) -> Result<Self, String> {
        let url = Url::parse(public_url).map_err(|e| format!("public_url {public_url}: {e}"))?;
        let host = url
            .domain()
            .ok_or_else(|| {
                format!("public_url {public_url}: WebAuthn needs a host name, not an IP address")
            })?
            .to_string();
        let local = host == "localhost";
        let webauthn = WebauthnBuilder::new(&host, &url)
            .map_err(|e| format!("public_url {public_url}: {e}"))?
            .rp_name("Kura")
            // Test and development servers on localhost pick their port at start.
            .allow_any_port(local)
            .build()
            .map_err(|e| format!("webauthn: {e}"))?;
        Ok(Self { webauthn })
    }

    pub fn register_start(
        &self,
        user: UserId,
        email: &str,
        display_name: &str,
        existing: &[(FactorId, String)],
    ) -> Result<(Value, String), ApiError> {
        let exclude: Vec<_> = parse_all(existing)
            .iter()
            .map(|(_, p)| p.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(user.as_uuid(), email, display_name, Some(exclude))
            .map_err(internal)?;
        Ok((
            serde_json::to_value(options).map_err(internal)?,
            serde_json::to_string(&state).map_err(internal)?,
        ))
    }

    /// Verify a registration; returns (credential id, serialized passkey).
    pub fn register_finish(
        &self,
        state: &str,
        credential: Value,
    ) -> Result<(String, String), ApiError> {
        let state: PasskeyRegistration = serde_json::from_str(state).map_err(internal)?;
        let cred: RegisterPublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| invalid("registration"))?;
        let pk = self
            .webauthn
            .finish_passkey_registration(&cred, &state)
            .map_err(|e| {
                tracing::info!(error = %e, "passkey registration refused");
                invalid("registration")
            })?;
        Ok((
            hex::encode(pk.cred_id()),
            serde_json::to_string(&pk).map_err(internal)?,
        ))
    }

    pub fn auth_start(&self, stored: &[(FactorId, String)]) -> Result<(Value, String), ApiError> {
        let keys: Vec<Passkey> = parse_all(stored).into_iter().map(|(_, p)| p).collect();
        if keys.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no-passkey",
                "you have no passkey or security key enrolled",
            ));
        }
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&keys)
            .map_err(internal)?;
        Ok((
            serde_json::to_value(options).map_err(internal)?,
            serde_json::to_string(&state).map_err(internal)?,
        ))
    }

    /// Verify an assertion; returns the factor used and, when its counter
    /// moved, the credential to store back.
    pub fn auth_finish(
        &self,
        state: &str,
        credential: Value,
        stored: &[(FactorId, String)],
    ) -> Result<(FactorId, Option<String>), ApiError> {
        let state: PasskeyAuthentication = serde_json::from_str(state).map_err(internal)?;
        let cred: PublicKeyCredential =
            serde_json::from_value(credential).map_err(|_| invalid("sign-in response"))?;
        let res = self
            .webauthn
            .finish_passkey_authentication(&cred, &state)
            .map_err(|e| {
                tracing::info!(error = %e, "passkey assertion refused");
                invalid("sign-in response")
            })?;
        for (id, mut pk) in parse_all(stored) {
            if pk.cred_id() == res.cred_id() {
                let updated = match pk.update_credential(&res) {
                    Some(true) => Some(serde_json::to_string(&pk).map_err(internal)?),
                    _ => None,
                };
                return Ok((id, updated));
            }
        }
        Err(invalid("sign-in response"))
    }
}

fn parse_all(stored: &[(FactorId, String)]) -> Vec<(FactorId, Passkey)> {
    stored
        .iter()
        .filter_map(|(id, json)| match serde_json::from_str::<Passkey>(json) {
            Ok(p) => Some((*id, p)),
            Err(e) => {
                tracing::error!(factor = %id, error = %e, "stored passkey is unreadable");
                None
            }
        })
        .collect()
}
