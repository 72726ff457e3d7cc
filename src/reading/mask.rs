//! The key behind [`super::PatientRef::masked`]: a per-install secret, so a masked tag cannot
//! be turned back into the identifier by hashing every plausible MRN.
//!
//! Receives the data directory at start ([`load_or_create`]). Promises (docs/security.md):
//! - the key is 32 random bytes in `data_dir/mask.key`, created with mode 0600 when missing;
//!   a key file that group or others may read or write is refused, never used;
//! - the key is installed once per process; a process that never loads one (tests, tools)
//!   gets a random key of its own, so its tags are stable within the process only.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The key file's name inside `daemon.data_dir`.
pub const KEY_FILE: &str = "mask.key";
/// Key length in bytes.
pub const KEY_LEN: usize = 32;

struct Installed {
    bytes: [u8; KEY_LEN],
    key: hmac::Key,
}

impl Installed {
    fn new(bytes: [u8; KEY_LEN]) -> Self {
        Self {
            bytes,
            key: hmac::Key::new(hmac::HMAC_SHA256, &bytes),
        }
    }
}

static KEY: OnceLock<Installed> = OnceLock::new();

/// Why the masking key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum MaskKeyError {
    #[error("{path}: {reason}")]
    Io { path: PathBuf, reason: String },
    #[error("{path} may be read or written by group or others (mode {mode:04o}): chmod 600 it")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path} does not hold a {KEY_LEN}-byte key (it has {len} bytes): remove it to have a new one made")]
    BadLength { path: PathBuf, len: usize },
    #[error("no randomness for a new masking key")]
    Random,
    #[error("a different masking key is already in use in this process")]
    AlreadySet,
}

/// 32 fresh random bytes.
pub fn random_key() -> Result<[u8; KEY_LEN], MaskKeyError> {
    let mut k = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| MaskKeyError::Random)?;
    Ok(k)
}

/// Reads `data_dir/mask.key`, creating it (0600, random) when missing; refuses a file others
/// may read. Does not install it (see [`install`]).
pub fn read_or_create(data_dir: &Path) -> Result<[u8; KEY_LEN], MaskKeyError> {
    let path = data_dir.join(KEY_FILE);
    let io = |e: std::io::Error| MaskKeyError::Io {
        path: path.clone(),
        reason: e.to_string(),
    };
    match std::fs::metadata(&path) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(MaskKeyError::TooOpen { path, mode });
            }
            let bytes = std::fs::read(&path).map_err(io)?;
            <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| MaskKeyError::BadLength {
                path: path.clone(),
                len: bytes.len(),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = random_key()?;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io)?;
            f.write_all(&key).map_err(io)?;
            f.sync_all().map_err(io)?;
            tracing::info!(path = %path.display(), "created the patient-tag masking key");
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

/// Installs `key` for this process. A second call with the same key is fine (a reload reads
/// the same file); a different one is refused, so tags never change while the daemon runs.
pub fn install(key: &[u8; KEY_LEN]) -> Result<(), MaskKeyError> {
    let k = KEY.get_or_init(|| Installed::new(*key));
    if k.bytes == *key {
        Ok(())
    } else {
        Err(MaskKeyError::AlreadySet)
    }
}

/// [`read_or_create`] then [`install`]: the daemon calls this once at start.
pub fn load_or_create(data_dir: &Path) -> Result<(), MaskKeyError> {
    install(&read_or_create(data_dir)?)
}

/// The process key (a random one when none was installed).
pub(super) fn key() -> &'static hmac::Key {
    &KEY.get_or_init(|| {
        // Without a system RNG nothing else here works either (sessions, ids); an all-zero
        // key would still be private to this build, but make the failure loud.
        let bytes = random_key().unwrap_or_else(|e| {
            tracing::error!(error = %e, "no random masking key; tags use a fixed one");
            [0u8; KEY_LEN]
        });
        Installed::new(bytes)
    })
    .key
}

/// The tag of `(system, id)` under `key`: the first 12 hex digits of HMAC-SHA-256.
pub fn tag(key: &hmac::Key, system: &str, id: &str) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(system.as_bytes());
    ctx.update(&[0]);
    ctx.update(id.as_bytes());
    hex::encode(&ctx.sign().as_ref()[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_is_stable_for_one_key_and_differs_across_keys() {
        let a = hmac::Key::new(hmac::HMAC_SHA256, &[1u8; KEY_LEN]);
        let b = hmac::Key::new(hmac::HMAC_SHA256, &[2u8; KEY_LEN]);
        let t = tag(&a, "urn:oid:1.2.3", "MRN0012345");
        assert_eq!(t.len(), 12);
        assert!(t.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(t, tag(&a, "urn:oid:1.2.3", "MRN0012345"));
        assert_ne!(t, tag(&b, "urn:oid:1.2.3", "MRN0012345"));
        assert_ne!(t, tag(&a, "urn:oid:1.2.3", "MRN0012346"));
        // The separator keeps (system, id) pairs apart.
        assert_ne!(tag(&a, "urn:oid:1", "23"), tag(&a, "urn:oid:12", "3"));
    }

    #[test]
    fn the_key_file_is_created_private_reused_and_refused_when_open() {
        let dir = tempfile::tempdir().unwrap();
        let k1 = read_or_create(dir.path()).unwrap();
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_or_create(dir.path()).unwrap(), k1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = read_or_create(dir.path()).unwrap_err();
        assert!(matches!(err, MaskKeyError::TooOpen { .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, b"short").unwrap();
        assert!(matches!(
            read_or_create(dir.path()),
            Err(MaskKeyError::BadLength { len: 5, .. })
        ));
    }
}
