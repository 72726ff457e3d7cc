//! The store key: where it comes from (`[daemon] store_key_file`, a systemd credential, the
//! environment), the checks on its file, and the keys derived from it.
//!
//! Receives the configured source; promises a [`StoreKey`] read only from a file owned by this
//! process's user (or root), readable by its owner only, holding 32 bytes raw or as 64 hex
//! digits, and errors ([`KeyError`]) that say how to fix the file without showing a byte of
//! the key. The ciphers that use it are in `cipher`; operators' notes: `docs/at-rest.md`.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::store::StoreError;

/// `[daemon] store_key_file` when the config does not set it.
pub const DEFAULT_KEY_FILE: &str = "/etc/vitalsd/store.key";
/// The environment variable systemd sets to the directory of a unit's credentials.
pub const CREDENTIALS_ENV: &str = "CREDENTIALS_DIRECTORY";
/// Overrides `[daemon] store_key_file` (same syntax) when set and not empty.
pub const KEY_FILE_ENV: &str = "VITALSD_STORE_KEY_FILE";
/// What `[daemon] store_key_file` starts with to name a systemd credential.
pub const CREDENTIAL_PREFIX: &str = "credential:";

/// Where the store key comes from: `[daemon] store_key_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A file path.
    File(PathBuf),
    /// A systemd credential of this name: `$CREDENTIALS_DIRECTORY/<name>`.
    Credential(String),
}

impl KeySource {
    /// Parses the config's value: `credential:<name>` or a path.
    pub fn parse(text: &str) -> Result<Self, KeyError> {
        match text.strip_prefix(CREDENTIAL_PREFIX) {
            Some(name) if name.is_empty() || name.contains('/') || name == ".." => {
                Err(KeyError::BadCredentialName(name.to_string()))
            }
            Some(name) => Ok(Self::Credential(name.to_string())),
            None if text.is_empty() => Err(KeyError::Empty),
            None => Ok(Self::File(PathBuf::from(text))),
        }
    }

    /// The config's source, or [`KEY_FILE_ENV`]'s when that is set.
    pub fn from_env_or(configured: &KeySource) -> Result<Self, KeyError> {
        match std::env::var(KEY_FILE_ENV) {
            Ok(v) if !v.is_empty() => Self::parse(&v),
            _ => Ok(configured.clone()),
        }
    }

    /// The file to read (a credential resolves through `CREDENTIALS_DIRECTORY`).
    pub fn path(&self) -> Result<PathBuf, KeyError> {
        match self {
            Self::File(p) => Ok(p.clone()),
            Self::Credential(name) => match std::env::var_os(CREDENTIALS_ENV) {
                Some(dir) if !dir.is_empty() => Ok(Path::new(&dir).join(name)),
                _ => Err(KeyError::NoCredentials(name.clone())),
            },
        }
    }
}

impl std::fmt::Display for KeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::File(p) => write!(f, "{}", p.display()),
            Self::Credential(n) => write!(f, "{CREDENTIAL_PREFIX}{n}"),
        }
    }
}

/// Why the store key cannot be used. Never shows the key's bytes.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("daemon.store_key_file is empty")]
    Empty,
    #[error("store key credential `{0}` is not a plain file name")]
    BadCredentialName(String),
    #[error(
        "the store key is the systemd credential `{0}` but CREDENTIALS_DIRECTORY is not set \
         (add LoadCredential= or LoadCredentialEncrypted= for it to the unit)"
    )]
    NoCredentials(String),
    #[error(
        "the store key file {path} does not exist: create it with \
         `install -m 0600 -o vitalsd /dev/null {path} && head -c 32 /dev/urandom > {path}` \
         (a new store only; an existing store needs the key it was encrypted with)"
    )]
    Missing { path: PathBuf },
    #[error("cannot read the store key file {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error(
        "the store key file {path} has mode {mode:04o}: it must be readable by its owner only \
         (chmod 0600 or 0400)"
    )]
    Mode { path: PathBuf, mode: u32 },
    #[error(
        "the store key file {path} belongs to uid {uid}: it must belong to the user vitalsd \
         runs as (uid {euid}) or to root"
    )]
    Owner { path: PathBuf, uid: u32, euid: u32 },
    #[error(
        "the store key file {path} holds {len} bytes: it must hold 32 random bytes, raw or as \
         64 hex digits"
    )]
    Format { path: PathBuf, len: usize },
}

/// The 32-byte store key. Its `Debug` shows nothing of the bytes.
#[derive(Clone)]
pub struct StoreKey {
    pub(super) bytes: [u8; 32],
    /// Where it was read from, for messages.
    origin: String,
}

impl std::fmt::Debug for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl StoreKey {
    /// A key from its bytes (tests, the demo's throwaway store).
    pub fn from_bytes(bytes: [u8; 32], origin: impl Into<String>) -> Self {
        Self {
            bytes,
            origin: origin.into(),
        }
    }

    /// A fresh random key.
    pub fn generate(origin: impl Into<String>) -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| StoreError::Io("the system random generator failed".into()))?;
        Ok(Self::from_bytes(bytes, origin))
    }

    /// Reads the key from `source`: the file must be owned by this process's user or root,
    /// readable by its owner only, and hold 32 bytes raw or 64 hex digits (whitespace around
    /// them is ignored).
    pub fn load(source: &KeySource) -> Result<Self, KeyError> {
        let path = source.path()?;
        let unreadable = |e: std::io::Error| KeyError::Unreadable {
            path: path.clone(),
            reason: e.to_string(),
        };
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(KeyError::Missing { path })
            }
            Err(e) => return Err(unreadable(e)),
        };
        if !meta.is_file() {
            return Err(KeyError::Unreadable {
                path,
                reason: "not a regular file".into(),
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o177 != 0 {
            return Err(KeyError::Mode { path, mode });
        }
        let euid = nix::unistd::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(KeyError::Owner {
                path,
                uid: meta.uid(),
                euid,
            });
        }
        let raw = std::fs::read(&path).map_err(unreadable)?;
        let bytes = parse_key(&raw).ok_or(KeyError::Format {
            path: path.clone(),
            len: raw.len(),
        })?;
        Ok(Self::from_bytes(bytes, path.display().to_string()))
    }

    /// Where the key came from (a path or "generated").
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// A 32-byte key derived for one use, named by `label` (HMAC-SHA256 of the label).
    pub(super) fn derive(&self, label: &[u8]) -> [u8; 32] {
        let k = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes);
        let tag = hmac::sign(&k, label);
        let mut out = [0u8; 32];
        out.copy_from_slice(tag.as_ref());
        out
    }
}

/// Creates a key file at `path` unless one exists: 32 random bytes as 64 hex digits, mode
/// 0600 (the demo's throwaway store; production keys come from the package's install step).
pub fn ensure_key_file(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| std::io::Error::other("the system random generator failed"))?;
    let mut f = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    };
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(hex::encode(bytes).as_bytes())?;
    f.sync_all()
}

/// 32 raw bytes, or 64 hex digits with optional surrounding whitespace.
fn parse_key(raw: &[u8]) -> Option<[u8; 32]> {
    let trimmed = raw.trim_ascii();
    if trimmed.len() == 64 {
        if let Ok(b) = hex::decode(trimmed) {
            return b.try_into().ok();
        }
    }
    raw.try_into().ok()
}
