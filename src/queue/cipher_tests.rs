use std::os::unix::fs::PermissionsExt;

use std::path::{Path, PathBuf};

use super::*;
use crate::queue::{MemoryStore, SledStore};

fn key(n: u8) -> StoreKey {
    StoreKey::from_bytes([n; 32], format!("test key {n}"))
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn put(s: &dyn Store, k: &[u8], v: &[u8]) {
    let mut b = Batch::new();
    b.put(k.to_vec(), v.to_vec());
    s.apply(b).unwrap();
}

/// Every raw key and value of `s`.
fn raw(s: &dyn Store) -> Vec<Entry> {
    s.scan_prefix(&[], None, usize::MAX).unwrap()
}

#[test]
fn values_and_dedupe_keys_are_unreadable_below_and_round_trip_above() {
    let s = Sealed::open(MemoryStore::new(), &key(1)).unwrap();
    put(&s, b"x101", br#"{"mrn":"MRN-4471"}"#);
    put(&s, b"k|cuff|bp|98.6", b"id-and-time");
    assert_eq!(s.get(b"x101").unwrap().unwrap(), br#"{"mrn":"MRN-4471"}"#);
    assert_eq!(s.get(b"k|cuff|bp|98.6").unwrap().unwrap(), b"id-and-time");
    for (k, v) in raw(s.inner()) {
        assert!(!contains(&v, b"MRN-4471") && !contains(&v, b"id-and-time"));
        assert!(!contains(&k, b"98.6"), "dedupe key stored in the clear");
    }
    // A scan hands back the stored dedupe key; removing by it removes the entry.
    let (dk, v) = s.scan_prefix(b"k", None, 10).unwrap().remove(0);
    assert_eq!(v, b"id-and-time");
    assert_eq!(s.get(&dk).unwrap().unwrap(), b"id-and-time");
    let mut b = Batch::new();
    b.remove(dk);
    s.apply(b).unwrap();
    assert_eq!(s.get(b"k|cuff|bp|98.6").unwrap(), None);
}

#[test]
fn a_value_moved_under_another_key_does_not_open() {
    let s = Sealed::open(MemoryStore::new(), &key(1)).unwrap();
    put(&s, b"h1", b"held one");
    let stored = s.inner().get(b"h1").unwrap().unwrap();
    put(s.inner(), b"h2", &stored);
    assert!(matches!(s.get(b"h2"), Err(StoreError::Corrupt(_))));
    assert_eq!(s.get(b"h1").unwrap().unwrap(), b"held one");
}

#[test]
fn a_keys_scan_opens_no_value_and_a_get_still_checks_it() {
    let s = Sealed::open(MemoryStore::new(), &key(1)).unwrap();
    put(&s, b"t1", b"");
    put(&s, b"t2", b"");
    // t2's value replaced by one sealed under another key: it does not open.
    let stored = s.inner().get(b"t1").unwrap().unwrap();
    put(s.inner(), b"t2", &stored);
    assert!(s.scan_prefix(b"t", None, 10).is_err());
    assert_eq!(
        s.scan_keys(b"t", None, 10).unwrap(),
        vec![b"t1".to_vec(), b"t2".to_vec()]
    );
    assert!(matches!(s.get(b"t2"), Err(StoreError::Corrupt(_))));
}

#[test]
fn another_key_is_refused_at_open_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = Sealed::open(SledStore::open(dir.path(), 1 << 20).unwrap(), &key(1)).unwrap();
        put(&s, b"x1", b"context");
        s.sync().unwrap();
    }
    let before = raw(&SledStore::open(dir.path(), 1 << 20).unwrap());
    let err = Sealed::open(SledStore::open(dir.path(), 1 << 20).unwrap(), &key(2)).unwrap_err();
    assert!(matches!(err, SealError::WrongKey { .. }), "{err}");
    assert!(err.to_string().contains("test key 2"), "{err}");
    assert!(matches!(
        Sealed::reader(SledStore::open(dir.path(), 1 << 20).unwrap(), &key(2)),
        Err(SealError::WrongKey { .. })
    ));
    assert_eq!(raw(&SledStore::open(dir.path(), 1 << 20).unwrap()), before);
    let s = Sealed::open(SledStore::open(dir.path(), 1 << 20).unwrap(), &key(1)).unwrap();
    assert_eq!(s.get(b"x1").unwrap().unwrap(), b"context");
}

#[test]
fn an_unencrypted_store_is_sealed_in_place_at_open_even_after_an_interrupted_run() {
    let plain = MemoryStore::new();
    let n = 2 * MIGRATE_PAGE + 7;
    let mut b = Batch::new();
    for i in 0..n {
        b.put(
            format!("g{i:06}").into_bytes(),
            format!("MRN-{i}").into_bytes(),
        );
    }
    b.put(b"k|dev|=120".to_vec(), b"dedupe".to_vec());
    plain.apply(b).unwrap();
    // An earlier run sealed one value, then stopped before the marker.
    let half = Sealed::new(MemoryStore::new(), &key(1), false);
    let sealed_one = half.seal(b"g000000", b"MRN-0").unwrap();
    put(&plain, b"g000000", &sealed_one);

    let s = Sealed::open(plain, &key(1)).unwrap();
    for (k, v) in raw(s.inner()) {
        assert!(!contains(&v, b"MRN-"), "{}", String::from_utf8_lossy(&k));
        assert!(!contains(&k, b"=120"));
    }
    assert_eq!(s.get(b"g000000").unwrap().unwrap(), b"MRN-0");
    assert_eq!(s.get(b"g002000").unwrap().unwrap(), b"MRN-2000");
    assert_eq!(s.get(b"k|dev|=120").unwrap().unwrap(), b"dedupe");
    assert_eq!(
        raw(s.inner()).len(),
        n + 2,
        "every value, the dedupe key and the marker"
    );
}

#[test]
fn the_reader_hands_back_values_that_do_not_open_and_writes_nothing() {
    let plain = MemoryStore::new();
    put(&plain, b"g1", b"unencrypted");
    let r = Sealed::reader(plain, &key(1)).unwrap();
    assert_eq!(r.get(b"g1").unwrap().unwrap(), b"unencrypted");
    assert_eq!(r.inner().get(KEY_CHECK).unwrap(), None);
}

fn key_file(dir: &Path, contents: &[u8], mode: u32) -> PathBuf {
    let p = dir.join("store.key");
    std::fs::write(&p, contents).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn key_files_hold_32_bytes_raw_or_hex_and_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let raw_key = key_file(dir.path(), &[7u8; 32], 0o600);
    let a = StoreKey::load(&KeySource::File(raw_key)).unwrap();
    let hex_key = key_file(
        dir.path(),
        format!("{}\n", hex::encode([7u8; 32])).as_bytes(),
        0o400,
    );
    let b = StoreKey::load(&KeySource::File(hex_key.clone())).unwrap();
    assert_eq!(a.bytes, b.bytes);
    assert!(!format!("{b:?}").contains("07"), "{b:?}");

    std::fs::set_permissions(&hex_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = StoreKey::load(&KeySource::File(hex_key.clone())).unwrap_err();
    assert!(matches!(err, KeyError::Mode { mode: 0o640, .. }), "{err}");
    assert!(err.to_string().contains("store.key"), "{err}");

    let short = key_file(dir.path(), b"too short", 0o600);
    let err = StoreKey::load(&KeySource::File(short)).unwrap_err();
    assert!(matches!(err, KeyError::Format { len: 9, .. }), "{err}");

    let missing = dir.path().join("absent.key");
    let err = StoreKey::load(&KeySource::File(missing)).unwrap_err();
    assert!(matches!(err, KeyError::Missing { .. }));
    assert!(err.to_string().contains("absent.key"), "{err}");
}

#[test]
fn key_sources_parse_paths_and_credentials() {
    assert_eq!(
        KeySource::parse("/etc/vitalsd/store.key").unwrap(),
        KeySource::File("/etc/vitalsd/store.key".into())
    );
    assert_eq!(
        KeySource::parse("credential:store.key").unwrap(),
        KeySource::Credential("store.key".into())
    );
    assert!(KeySource::parse("credential:../x").is_err());
    assert!(KeySource::parse("credential:").is_err());
    assert!(KeySource::parse("").is_err());
}

#[test]
fn every_value_of_a_batch_gets_its_own_nonce() {
    let s = Sealed::open(MemoryStore::new(), &key(1)).unwrap();
    let mut b = Batch::new();
    for i in 0..50u8 {
        b.put(vec![b'g', i], b"same value".to_vec());
    }
    s.apply(b).unwrap();
    let mut nonces: Vec<Vec<u8>> = raw(s.inner())
        .into_iter()
        .filter(|(k, _)| k[0] == b'g')
        .map(|(_, v)| v[1..=NONCE_LEN].to_vec())
        .collect();
    nonces.sort();
    nonces.dedup();
    assert_eq!(nonces.len(), 50);
    assert_eq!(s.get(&[b'g', 49]).unwrap().unwrap(), b"same value");
}
