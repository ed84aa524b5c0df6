//! The key hierarchy. Keys are 256-bit, zeroized on drop, never printed.
//! Wrapping is AES-256-GCM with a random 96-bit nonce and the identity of what
//! the key belongs to as associated data, so a wrapped key moved to another
//! organization or blob fails to unwrap.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Write;
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop};

const MASTER_HEADER: &str = "kura-master-key-v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("key file {0} is not a Kura master key")]
    Format(String),
    #[error("key file {0} is readable by group or others (chmod 600 it)")]
    Permissions(String),
    #[error(
        "a wrapped key failed to authenticate (wrong master/organization key or tampered data)"
    )]
    Unwrap,
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Key32([u8; 32]);

impl Key32 {
    fn random() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    fn wrap(&self, child: &Key32, context: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let payload = Payload {
            msg: &child.0,
            aad: context,
        };
        let mut out = nonce.to_vec();
        // AES-GCM encryption of 32 bytes cannot fail (only oversized inputs do).
        if let Ok(ct) = cipher.encrypt(Nonce::from_slice(&nonce), payload) {
            out.extend_from_slice(&ct);
        }
        out
    }

    fn seal(&self, msg: &[u8], context: &[u8]) -> Vec<u8> {
        let cipher = Aes256Gcm::new((&self.0).into());
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let mut out = nonce.to_vec();
        // Only inputs near 64 GiB make AES-GCM fail; secrets are tiny.
        if let Ok(ct) = cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg, aad: context }) {
            out.extend_from_slice(&ct);
        }
        out
    }

    fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, KeyError> {
        if sealed.len() < NONCE_LEN + 16 {
            return Err(KeyError::Unwrap);
        }
        let cipher = Aes256Gcm::new((&self.0).into());
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Unwrap)
    }

    fn unwrap_child(&self, wrapped: &[u8], context: &[u8]) -> Result<Key32, KeyError> {
        if wrapped.len() != NONCE_LEN + 32 + 16 {
            return Err(KeyError::Unwrap);
        }
        let cipher = Aes256Gcm::new((&self.0).into());
        let (nonce, ct) = wrapped.split_at(NONCE_LEN);
        let mut pt = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context,
                },
            )
            .map_err(|_| KeyError::Unwrap)?;
        let mut k = [0u8; 32];
        k.copy_from_slice(&pt);
        pt.zeroize();
        Ok(Key32(k))
    }
}

/// The root of the hierarchy, kept in a file with mode 0600.
pub struct MasterKey {
    key: Key32,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey(id={})", self.id())
    }
}

impl MasterKey {
    pub fn generate() -> Self {
        Self {
            key: Key32::random(),
        }
    }

    /// A short public fingerprint, stored beside wrapped keys so rotation
    /// knows which master wrapped what.
    pub fn id(&self) -> String {
        let d = Sha256::digest([b"kura-master-id".as_slice(), &self.key.0].concat());
        hex::encode(&d[..8])
    }

    /// Load the key from `path`, creating it (mode 0600) when absent.
    /// Returns the key and whether it was created now.
    pub fn load_or_create(path: &Path) -> Result<(Self, bool), KeyError> {
        match Self::load(path) {
            Ok(k) => Ok((k, false)),
            Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                key.write_new(path)?;
                Ok((key, true))
            }
            Err(e) => Err(e),
        }
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let io = |source| KeyError::Io {
            path: shown.clone(),
            source,
        };
        check_private(path)
            .map_err(io)?
            .then_some(())
            .ok_or(KeyError::Permissions(shown.clone()))?;
        let text = std::fs::read_to_string(path).map_err(io)?;
        let hexkey = text
            .trim()
            .strip_prefix(MASTER_HEADER)
            .ok_or(KeyError::Format(shown.clone()))?;
        let bytes = hex::decode(hexkey).map_err(|_| KeyError::Format(shown.clone()))?;
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| KeyError::Format(shown.clone()))?;
        Ok(Self { key: Key32(arr) })
    }

    /// Write the key to a new file with mode 0600; refuses to overwrite.
    pub fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
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
        let line = format!("{MASTER_HEADER}{}\n", hex::encode(self.key.0));
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        Ok(())
    }

    pub fn wrap_org_key(&self, key: &OrgKey, org_context: &[u8]) -> Vec<u8> {
        self.key.wrap(&key.key, org_context)
    }

    pub fn unwrap_org_key(&self, wrapped: &[u8], org_context: &[u8]) -> Result<OrgKey, KeyError> {
        Ok(OrgKey {
            key: self.key.unwrap_child(wrapped, org_context)?,
        })
    }
}

#[cfg(unix)]
fn check_private(path: &Path) -> std::io::Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)?.permissions().mode();
    Ok(mode & 0o077 == 0)
}

#[cfg(not(unix))]
fn check_private(path: &Path) -> std::io::Result<bool> {
    std::fs::metadata(path).map(|_| true)
}

/// One organization's key. Deleting its wrapped form shreds the organization's files.
#[derive(Clone)]
pub struct OrgKey {
    key: Key32,
}

impl OrgKey {
    pub fn generate() -> Self {
        Self {
            key: Key32::random(),
        }
    }

    pub fn wrap_data_key(&self, key: &DataKey, blob_context: &[u8]) -> Vec<u8> {
        self.key.wrap(&key.key, blob_context)
    }

    /// Seal a small secret of the organization (a TOTP key) so that it is
    /// ciphertext at rest; `context` names what it belongs to.
    pub fn seal_secret(&self, secret: &[u8], context: &[u8]) -> Vec<u8> {
        self.key.seal(secret, context)
    }

    pub fn open_secret(
        &self,
        sealed: &[u8],
        context: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError> {
        self.key.open(sealed, context).map(zeroize::Zeroizing::new)
    }

    pub fn unwrap_data_key(
        &self,
        wrapped: &[u8],
        blob_context: &[u8],
    ) -> Result<DataKey, KeyError> {
        Ok(DataKey {
            key: self.key.unwrap_child(wrapped, blob_context)?,
        })
    }
}

/// The key of one encrypted blob.
pub struct DataKey {
    key: Key32,
}

impl DataKey {
    pub fn generate() -> Self {
        Self {
            key: Key32::random(),
        }
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.key.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_are_bound_to_their_context() {
        let o = OrgKey::generate();
        let sealed = o.seal_secret(b"totp-secret", b"factor-1");
        assert_eq!(
            &o.open_secret(&sealed, b"factor-1").unwrap()[..],
            b"totp-secret"
        );
        assert!(o.open_secret(&sealed, b"factor-2").is_err());
        assert!(OrgKey::generate()
            .open_secret(&sealed, b"factor-1")
            .is_err());
        assert!(o.open_secret(&sealed[..10], b"factor-1").is_err());
    }

    #[test]
    fn wrap_round_trip_and_context_binding() {
        let m = MasterKey::generate();
        let o = OrgKey::generate();
        let w = m.wrap_org_key(&o, b"org-a");
        let o2 = m.unwrap_org_key(&w, b"org-a").unwrap();
        let d = DataKey::generate();
        let wd = o2.wrap_data_key(&d, b"blob-1");
        assert_eq!(
            o.unwrap_data_key(&wd, b"blob-1").unwrap().bytes(),
            d.bytes()
        );
        assert!(m.unwrap_org_key(&w, b"org-b").is_err());
        assert!(o.unwrap_data_key(&wd, b"blob-2").is_err());
        assert!(MasterKey::generate().unwrap_org_key(&w, b"org-a").is_err());
        let mut tampered = w.clone();
        tampered[20] ^= 1;
        assert!(m.unwrap_org_key(&tampered, b"org-a").is_err());
    }

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = std::env::temp_dir().join(format!("kura-key-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("master.key");
        let (k, created) = MasterKey::load_or_create(&p).unwrap();
        assert!(created);
        let (k2, created2) = MasterKey::load_or_create(&p).unwrap();
        assert!(!created2);
        assert_eq!(k.id(), k2.id());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(matches!(MasterKey::load(&p), Err(KeyError::Permissions(_))));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
