//! The store contract: what the queue relies on from any [`Store`], run against every store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::{Batch, MemoryStore, SledStore, Store};

/// Runs every contract check against `store` (which must be empty).
pub fn check_store(store: Arc<dyn Store>) {
    puts_gets_and_removes(&*store);
    a_later_op_on_the_same_key_wins(&*store);
    prefix_scans_are_ordered_bounded_and_pageable(&*store);
    sync_is_counted_and_size_is_reported(&*store);
    readers_never_see_half_a_batch(store);
}

fn puts_gets_and_removes(s: &dyn Store) {
    let mut b = Batch::new();
    b.put(b"g/a".to_vec(), b"1".to_vec());
    b.put(b"g/b".to_vec(), b"2".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"g/a").unwrap(), Some(b"1".to_vec()));
    assert_eq!(s.get(b"g/b").unwrap(), Some(b"2".to_vec()));
    assert_eq!(s.get(b"g/c").unwrap(), None);
    let mut b = Batch::new();
    b.remove(b"g/a".to_vec());
    b.put(b"g/b".to_vec(), b"3".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"g/a").unwrap(), None);
    assert_eq!(s.get(b"g/b").unwrap(), Some(b"3".to_vec()));
}

fn a_later_op_on_the_same_key_wins(s: &dyn Store) {
    let mut b = Batch::new();
    b.put(b"w/x".to_vec(), b"first".to_vec());
    b.remove(b"w/x".to_vec());
    b.put(b"w/y".to_vec(), b"first".to_vec());
    b.put(b"w/y".to_vec(), b"second".to_vec());
    s.apply(b).unwrap();
    assert_eq!(s.get(b"w/x").unwrap(), None);
    assert_eq!(s.get(b"w/y").unwrap(), Some(b"second".to_vec()));
}

fn prefix_scans_are_ordered_bounded_and_pageable(s: &dyn Store) {
    let mut b = Batch::new();
    // Inserted out of order, with neighbours on both sides of the prefix.
    for k in [
        &b"s/3"[..],
        b"s/1",
        b"s/2\xff",
        b"s/2",
        b"r/9",
        b"t/0",
        b"s",
    ] {
        b.put(k.to_vec(), k.to_vec());
    }
    s.apply(b).unwrap();
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    let all = keys(s.scan_prefix(b"s/", None, usize::MAX).unwrap());
    assert_eq!(
        all,
        vec![
            b"s/1".to_vec(),
            b"s/2".to_vec(),
            b"s/2\xff".to_vec(),
            b"s/3".to_vec()
        ]
    );
    assert_eq!(
        keys(s.scan_prefix(b"s/", None, 2).unwrap()),
        all[..2].to_vec()
    );
    let rest = keys(s.scan_prefix(b"s/", Some(b"s/2"), 10).unwrap());
    assert_eq!(rest, all[2..].to_vec());
    assert!(s.scan_prefix(b"s/", Some(b"s/3"), 10).unwrap().is_empty());
    assert!(s.scan_prefix(b"nothing/", None, 10).unwrap().is_empty());
    let values = s.scan_prefix(b"s/1", None, 10).unwrap();
    assert_eq!(values, vec![(b"s/1".to_vec(), b"s/1".to_vec())]);
    // The keys alone page exactly like the entries.
    for (after, limit) in [(None, usize::MAX), (None, 2), (Some(&b"s/2"[..]), 10)] {
        assert_eq!(
            s.scan_keys(b"s/", after, limit).unwrap(),
            keys(s.scan_prefix(b"s/", after, limit).unwrap())
        );
    }
    assert!(s.scan_keys(b"s/", Some(b"s/3"), 10).unwrap().is_empty());
    assert!(s.scan_keys(b"nothing/", None, 10).unwrap().is_empty());
    assert_eq!(s.last_key(b"s/").unwrap(), Some(b"s/3".to_vec()));
    assert_eq!(s.last_key(b"s/2").unwrap(), Some(b"s/2\xff".to_vec()));
    assert_eq!(s.last_key(b"nothing/").unwrap(), None);
}

fn sync_is_counted_and_size_is_reported(s: &dyn Store) {
    let before = s.sync_count();
    s.sync().unwrap();
    s.sync().unwrap();
    assert_eq!(s.sync_count(), before + 2);
    assert!(s.size_on_disk().unwrap() > 0);
}

fn readers_never_see_half_a_batch(store: Arc<dyn Store>) {
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut checked = 0;
            while !stop.load(Ordering::Relaxed) || checked == 0 {
                let first = store.get(b"x/00").unwrap();
                let last = store.get(b"x/49").unwrap();
                // Each batch rewrites x/00..x/49 with one generation. Reading x/00 and then
                // x/49: if batches are atomic for readers, x/49 is never older than x/00.
                if let (Some(f), Some(l)) = (&first, &last) {
                    assert!(l >= f, "saw the start of a batch without its end");
                }
                checked += 1;
            }
        })
    };
    for generation in 0u32..200 {
        let mut b = Batch::new();
        for i in 0..50 {
            b.put(
                format!("x/{i:02}").into_bytes(),
                generation.to_be_bytes().to_vec(),
            );
        }
        store.apply(b).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let page = store.scan_prefix(b"x/", None, 100).unwrap();
    assert_eq!(page.len(), 50);
    assert!(page.iter().all(|(_, v)| v == &199u32.to_be_bytes()));
}

#[test]
fn memory_store_meets_the_store_contract() {
    check_store(Arc::new(MemoryStore::new()));
}

#[test]
fn sled_store_meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    check_store(Arc::new(SledStore::open(dir.path(), 1 << 20).unwrap()));
}

#[test]
fn sled_store_keeps_synced_data_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SledStore::open(dir.path(), 1 << 20).unwrap();
        let mut b = Batch::new();
        b.put(b"k/1".to_vec(), b"one".to_vec());
        b.put(b"k/2".to_vec(), b"two".to_vec());
        s.apply(b).unwrap();
        let mut b = Batch::new();
        b.remove(b"k/1".to_vec());
        s.apply(b).unwrap();
        s.sync().unwrap();
        assert_eq!(s.sync_count(), 1);
    }
    let s = SledStore::open(dir.path(), 1 << 20).unwrap();
    assert_eq!(s.get(b"k/1").unwrap(), None);
    assert_eq!(s.get(b"k/2").unwrap(), Some(b"two".to_vec()));
    assert_eq!(s.sync_count(), 0, "the counter is per open store");
}

#[test]
fn sled_store_open_names_the_path_when_another_handle_holds_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let _first = SledStore::open(dir.path(), 1 << 20).unwrap();
    let err = SledStore::open(dir.path(), 1 << 20)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&dir.path().display().to_string()), "{err}");
    assert!(err.contains("locked"), "{err}");
}

#[test]
fn sled_store_open_names_the_path_when_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"not a store").unwrap();
    let err = SledStore::open(&file, 1 << 20).unwrap_err().to_string();
    assert!(err.contains("plain-file"), "{err}");
}

#[test]
fn encrypting_sled_store_meets_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let key = super::cipher::StoreKey::from_bytes([9; 32], "test");
    let sled = SledStore::open(dir.path(), 1 << 20).unwrap();
    check_store(Arc::new(super::cipher::Sealed::open(sled, &key).unwrap()));
}
