//! The audit signing key (Ed25519, `ed25519-dalek`). It lives in its own
//! file, apart from the database, so someone who can rewrite the database
//! cannot forge checkpoints; anyone with the public key can verify them.

use crate::keys::KeyError;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::io::Write;
use std::path::Path;

const HEADER: &str = "kura-audit-signing-key-v1:";

pub struct AuditSigner {
    key: SigningKey,
}

impl AuditSigner {
    /// Load an existing key; a missing key is an error (never silently a new one,
    /// which would make every earlier checkpoint look forged).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        if !path.exists() {
            return Err(KeyError::Io {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no audit signing key (the first `kura serve` creates it)",
                ),
            });
        }
        Self::load_or_create(path)
    }

    /// Load the key from `path`, creating it (mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let hexkey = text
                    .trim()
                    .strip_prefix(HEADER)
                    .ok_or(KeyError::Format(shown.clone()))?;
                let bytes = hex::decode(hexkey).map_err(|_| KeyError::Format(shown.clone()))?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| KeyError::Format(shown.clone()))?;
                Ok(Self {
                    key: SigningKey::from_bytes(&arr),
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SigningKey::generate(&mut rand::rngs::OsRng);
                let io = |source| KeyError::Io {
                    path: shown.clone(),
                    source,
                };
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let mut f = opts.open(path).map_err(io)?;
                f.write_all(format!("{HEADER}{}\n", hex::encode(key.to_bytes())).as_bytes())
                    .map_err(io)?;
                f.sync_all().map_err(io)?;
                Ok(Self { key })
            }
            Err(source) => Err(KeyError::Io {
                path: shown,
                source,
            }),
        }
    }

    /// The public key, hex-encoded: what an organization needs to verify.
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn sign_hex(&self, message: &[u8]) -> String {
        hex::encode(self.key.sign(message).to_bytes())
    }
}

/// Check a hex signature over `message` with a hex public key.
pub fn verify_signature(public_key_hex: &str, message: &[u8], signature_hex: &str) -> bool {
    let (Ok(pk), Ok(sig)) = (
        hex::decode(public_key_hex.trim()),
        hex::decode(signature_hex.trim()),
    ) else {
        return false;
    };
    let (Ok(pk), Ok(sig)) = (
        <[u8; 32]>::try_from(pk.as_slice()),
        <[u8; 64]>::try_from(sig.as_slice()),
    ) else {
        return false;
    };
    let Ok(vk) = VerifyingKey::from_bytes(&pk) else {
        return false;
    };
    vk.verify(message, &Signature::from_bytes(&sig)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_verify_and_reload() {
        let dir = std::env::temp_dir().join(format!("kura-sign-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("audit.key");
        let s = AuditSigner::load_or_create(&p).unwrap();
        let sig = s.sign_hex(b"checkpoint");
        assert!(verify_signature(&s.public_key_hex(), b"checkpoint", &sig));
        assert!(!verify_signature(&s.public_key_hex(), b"checkpoinT", &sig));
        let again = AuditSigner::load_or_create(&p).unwrap();
        assert_eq!(again.public_key_hex(), s.public_key_hex());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
