//! Encryption at rest: a [`Store`] that seals every value before it reaches the store below.
//!
//! Receives the store key ([`StoreKey`], 32 bytes read from a file outside `data_dir`) and a
//! plain store (sled in production). Promises:
//! - every value is written as `0x01 ++ nonce(12) ++ ChaCha20-Poly1305(value) ++ tag(16)` with a
//!   random nonce per value and the entry's key as associated data, so a value copied under
//!   another key, altered, or read with another store key fails to open;
//! - keys stay readable (ids, sequence numbers, sink and room names, times) except the dedupe
//!   index (`'k'`), whose keys are built from a reading's values: they are replaced by
//!   `'k' 0x00 ++ HMAC-SHA256(key)`, so equal keys still meet and nothing of the value shows;
//! - [`Sealed::open`] refuses a store that was sealed with another key ([`SealError::WrongKey`],
//!   checked against a marker value under `m key-check` written when the store got its key),
//!   and seals an unencrypted store from an earlier version in place, in batches, before use;
//! - [`Sealed::reader`] (for `queue verify` and `salvage`) writes nothing and hands back a
//!   value that does not open as it is stored, so a damaged or unencrypted entry is reported
//!   by the checks above instead of stopping the scan.
//!
//! The value and dedupe keys are derived from the store key with HMAC-SHA256 under two fixed
//! labels, so the file's 32 bytes are never used directly. Details for operators:
//! `docs/at-rest.md`.

use std::borrow::Cow;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use super::keys::DEDUPE;
use super::store::{Batch, Entry, Op, Store, StoreError};
pub use super::store_key::{
    ensure_key_file, KeyError, KeySource, StoreKey, CREDENTIALS_ENV, CREDENTIAL_PREFIX,
    DEFAULT_KEY_FILE, KEY_FILE_ENV,
};

/// The key under which the marker value lives.
pub const KEY_CHECK: &[u8] = b"mkey-check";
const KEY_CHECK_TEXT: &[u8] = b"vitalsd store key check v1";
const VERSION: u8 = 1;
const TAG_LEN: usize = 16;
const OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;
/// Values sealed per batch when an unencrypted store is sealed at open.
const MIGRATE_PAGE: usize = 1024;
/// True when `store` holds entries but no key marker: it was written unencrypted by an
/// earlier version and [`Sealed::open`] will seal it.
pub fn is_unsealed(store: &dyn Store) -> Result<bool, StoreError> {
    Ok(store.get(KEY_CHECK)?.is_none() && !store.scan_prefix(&[], None, 1)?.is_empty())
}

/// Why a sealed store cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error(
        "the store key from {origin} does not open this queue store: it was encrypted with \
         another key (restore the key file it was created with; nothing was changed)"
    )]
    WrongKey { origin: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A [`Store`] whose values are sealed with the store key (see the module docs).
pub struct Sealed<S> {
    inner: S,
    aead: LessSafeKey,
    mac: hmac::Key,
    rng: SystemRandom,
    /// Hand back values that do not open as they are stored (verify and salvage only).
    lenient: bool,
}

impl<S> std::fmt::Debug for Sealed<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("lenient", &self.lenient)
            .finish_non_exhaustive()
    }
}

impl<S: Store> Sealed<S> {
    fn new(inner: S, key: &StoreKey, lenient: bool) -> Self {
        let value_key = key.derive(b"vitalsd store values v1");
        let unbound = UnboundKey::new(&aead::CHACHA20_POLY1305, &value_key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits ChaCha20-Poly1305"));
        Self {
            inner,
            aead: LessSafeKey::new(unbound),
            mac: hmac::Key::new(hmac::HMAC_SHA256, &key.derive(b"vitalsd dedupe keys v1")),
            rng: SystemRandom::new(),
            lenient,
        }
    }

    /// The store the daemon uses: checks the key against the marker; a new store gets the
    /// marker; a store without it (written unencrypted by an earlier version) is sealed in
    /// place first, in batches of [`MIGRATE_PAGE`] values, and synced.
    pub fn open(inner: S, key: &StoreKey) -> Result<Self, SealError> {
        let s = Self::new(inner, key, false);
        if s.check_marker(key)? {
            return Ok(s);
        }
        let empty = s.inner.scan_prefix(&[], None, 1)?.is_empty();
        if !empty {
            let n = s.migrate()?;
            tracing::info!(
                values = n,
                "the queue store was unencrypted (written by an earlier vitalsd): every value is now encrypted with the store key"
            );
        }
        let mut b = Batch::new();
        b.put(KEY_CHECK.to_vec(), s.seal(KEY_CHECK, KEY_CHECK_TEXT)?);
        s.inner.apply(b)?;
        s.inner.sync()?;
        Ok(s)
    }

    /// A read-mostly view for the offline checks: checks the key against the marker when the
    /// store has one, writes nothing, and hands back values that do not open as they are.
    pub fn reader(inner: S, key: &StoreKey) -> Result<Self, SealError> {
        let s = Self::new(inner, key, true);
        s.check_marker(key)?;
        Ok(s)
    }

    /// The plain store below (its values are the sealed bytes).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// `Ok(true)` when the marker is present and opens; `Ok(false)` when it is absent.
    fn check_marker(&self, key: &StoreKey) -> Result<bool, SealError> {
        match self.inner.get(KEY_CHECK)? {
            None => Ok(false),
            Some(v) if self.open_value(KEY_CHECK, &v).as_deref() == Some(KEY_CHECK_TEXT) => {
                Ok(true)
            }
            Some(_) => Err(SealError::WrongKey {
                origin: key.origin().to_string(),
            }),
        }
    }

    /// Seals every value that does not open yet (a run interrupted by a crash resumes) and
    /// moves dedupe keys to their keyed hash. Returns how many values it sealed.
    fn migrate(&self) -> Result<u64, StoreError> {
        let mut n = 0u64;
        let mut after: Option<Vec<u8>> = None;
        loop {
            let page = self
                .inner
                .scan_prefix(&[], after.as_deref(), MIGRATE_PAGE)?;
            let Some((last, _)) = page.last() else {
                return Ok(n);
            };
            after = Some(last.clone());
            let mut batch = Batch::new();
            for (k, v) in page {
                if k == KEY_CHECK || self.open_value(&k, &v).is_some() {
                    continue;
                }
                let pk = self.physical(&k).into_owned();
                let sealed = self.seal(&pk, &v)?;
                if pk != k {
                    batch.remove(k);
                }
                batch.put(pk, sealed);
                n += 1;
            }
            if !batch.is_empty() {
                self.inner.apply(batch)?;
            }
            if n > 0 && n % (100 * MIGRATE_PAGE as u64) < MIGRATE_PAGE as u64 {
                tracing::info!(values = n, "encrypting the queue store");
            }
        }
    }

    /// The key as stored: a dedupe key becomes `'k' 0x00 ++ HMAC`; a key already in that
    /// form (from a scan) and every other key stay as they are.
    fn physical<'a>(&self, key: &'a [u8]) -> Cow<'a, [u8]> {
        if key.first() != Some(&DEDUPE) || is_hashed_dedupe(key) {
            return Cow::Borrowed(key);
        }
        let tag = hmac::sign(&self.mac, &key[1..]);
        let mut k = Vec::with_capacity(2 + tag.as_ref().len());
        k.push(DEDUPE);
        k.push(0);
        k.extend_from_slice(tag.as_ref());
        Cow::Owned(k)
    }

    /// `n` random nonces from one call to the system's generator (one syscall per batch
    /// rather than per value).
    fn nonces(&self, n: usize) -> Result<Vec<u8>, StoreError> {
        let mut buf = vec![0u8; n * NONCE_LEN];
        self.rng
            .fill(&mut buf)
            .map_err(|_| StoreError::Io("the system random generator failed".into()))?;
        Ok(buf)
    }

    fn seal(&self, key: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce = self.nonces(1)?;
        self.seal_with(key, plain, &nonce)
    }

    /// Seals `plain` under `key` with `nonce` (fresh random bytes, never used before).
    fn seal_with(&self, key: &[u8], plain: &[u8], nonce: &[u8]) -> Result<Vec<u8>, StoreError> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| StoreError::Io("a nonce of the wrong length".into()))?;
        seal_sealed(&self.aead, nonce, key, plain)
    }

    /// The plain value, or `None` when `stored` does not open under `key`.
    fn open_value(&self, key: &[u8], stored: &[u8]) -> Option<Vec<u8>> {
        open_sealed(&self.aead, key, stored)
    }

    fn unseal(&self, key: &[u8], stored: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        match self.open_value(key, &stored) {
            Some(v) => Ok(v),
            None if self.lenient => Ok(stored),
            None => Err(StoreError::Corrupt(format!(
                "a value under a '{}' key ({} bytes) does not decrypt with the store key",
                key.first()
                    .filter(|b| b.is_ascii_alphanumeric())
                    .map_or('?', |&b| char::from(b)),
                stored.len()
            ))),
        }
    }
}

fn is_hashed_dedupe(key: &[u8]) -> bool {
    key.len() == 2 + 32 && key[1] == 0
}

impl<S: Store> Store for Sealed<S> {
    /// A sealed value is its plain value and a fixed overhead: its length is known without
    /// decrypting it (a value of another shape is opened as [`Store::get`] would).
    fn value_len(&self, key: &[u8]) -> Result<Option<usize>, StoreError> {
        let pk = self.physical(key);
        match self.inner.get(&pk)? {
            Some(v) if v.first() == Some(&VERSION) && v.len() >= OVERHEAD => {
                Ok(Some(v.len() - OVERHEAD))
            }
            Some(v) => self.unseal(&pk, v).map(|p| Some(p.len())),
            None => Ok(None),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let pk = self.physical(key);
        match self.inner.get(&pk)? {
            Some(v) => Ok(Some(self.unseal(&pk, v)?)),
            None => Ok(None),
        }
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.inner
            .scan_prefix(prefix, after, limit)?
            .into_iter()
            .map(|(k, v)| {
                let v = self.unseal(&k, v)?;
                Ok((k, v))
            })
            .collect()
    }

    /// Keys are stored as they are (a dedupe key is looked up by its hash, never scanned), so
    /// the keys of a scan need no value opened. A listed key whose value is then needed is
    /// still read through [`Store::get`], which opens and checks it.
    fn scan_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        self.inner.scan_keys(prefix, after, limit)
    }

    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.last_key(prefix)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        let mut sealed = Batch {
            ops: Vec::with_capacity(batch.ops.len()),
        };
        let puts = batch
            .ops
            .iter()
            .filter(|op| matches!(op, Op::Put(..)))
            .count();
        let nonces = self.nonces(puts)?;
        let mut nonces = nonces.chunks_exact(NONCE_LEN);
        for op in batch.ops {
            match op {
                Op::Put(k, v) => {
                    let pk = self.physical(&k).into_owned();
                    let nonce = nonces
                        .next()
                        .ok_or_else(|| StoreError::Io("ran out of nonces".into()))?;
                    let v = self.seal_with(&pk, &v, nonce)?;
                    sealed.put(pk, v);
                }
                Op::Remove(k) => sealed.remove(self.physical(&k).into_owned()),
            }
        }
        self.inner.apply(sealed)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.inner.sync()
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn sync_count(&self) -> u64 {
        self.inner.sync_count()
    }
}

/// Seals single records outside the store (the audit files, see `crate::audit`) with the same
/// AEAD as the store's values, under a key derived from the store key with its own label.
/// A sealed record is `version ‖ nonce ‖ ciphertext ‖ tag`, bound to `aad`.
pub struct RecordCipher {
    aead: LessSafeKey,
    rng: SystemRandom,
}

impl std::fmt::Debug for RecordCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordCipher").finish_non_exhaustive()
    }
}

impl RecordCipher {
    /// The cipher for records labelled `label` (each use of it gets its own label).
    pub fn new(key: &StoreKey, label: &[u8]) -> Self {
        let unbound = UnboundKey::new(&aead::CHACHA20_POLY1305, &key.derive(label))
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits ChaCha20-Poly1305"));
        Self {
            aead: LessSafeKey::new(unbound),
            rng: SystemRandom::new(),
        }
    }

    /// `plain` sealed under a fresh random nonce and bound to `aad`.
    pub fn seal(&self, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.fill_nonces(&mut nonce)?;
        seal_sealed(&self.aead, nonce, aad, plain)
    }

    /// Fills `nonces` (several nonces of [`NONCE_LEN`] bytes, one after the other) from the
    /// system's generator in one call: a writer that seals many records draws their nonces
    /// together, then seals each with [`RecordCipher::seal_with`].
    pub fn fill_nonces(&self, nonces: &mut [u8]) -> Result<(), StoreError> {
        self.rng
            .fill(nonces)
            .map_err(|_| StoreError::Io("the system random generator failed".into()))
    }

    /// `plain` sealed under `nonce` (fresh random bytes from [`RecordCipher::fill_nonces`],
    /// never used before) and bound to `aad`.
    pub fn seal_with(
        &self,
        nonce: [u8; NONCE_LEN],
        aad: &[u8],
        plain: &[u8],
    ) -> Result<Vec<u8>, StoreError> {
        seal_sealed(&self.aead, nonce, aad, plain)
    }

    /// The plain record, or `None` when `sealed` does not open (another key, altered bytes,
    /// another `aad`).
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        open_sealed(&self.aead, aad, sealed)
    }
}

/// `VERSION ‖ nonce ‖ ciphertext ‖ tag` of `plain` bound to `aad` (store values and audit
/// records alike; docs/at-rest.md).
fn seal_sealed(
    aead: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(plain.len() + OVERHEAD);
    out.push(VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plain);
    let tag = aead
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| StoreError::Io("encrypting a value failed".into()))?;
    out.extend_from_slice(tag.as_ref());
    Ok(out)
}

/// The plain bytes of a [`seal_sealed`] output, or `None` when it does not open under `aead`
/// and `aad` (another key, altered bytes, another `aad`).
fn open_sealed(aead: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD || sealed[0] != VERSION {
        return None;
    }
    let nonce = Nonce::try_assume_unique_for_key(&sealed[1..=NONCE_LEN]).ok()?;
    let mut buf = sealed[1 + NONCE_LEN..].to_vec();
    let n = aead
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .ok()?
        .len();
    buf.truncate(n);
    Some(buf)
}

#[cfg(test)]
#[path = "cipher_tests.rs"]
mod tests;
