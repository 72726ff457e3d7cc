use super::*;
use crate::queue::tests::reading;
use crate::queue::{Queue, QueueOptions, Settle};
use crate::reading::SinkId;
use std::sync::Arc;

fn opts() -> QueueOptions {
    QueueOptions::new(vec![SinkId::new("ehr")])
}

fn key() -> StoreKey {
    StoreKey::from_bytes([5; 32], "test key")
}

fn open(dir: &Path) -> Queue {
    let store = Sealed::open(SledStore::open(dir, 8 << 20).unwrap(), &key()).unwrap();
    Queue::with_store(Arc::new(store), opts()).unwrap()
}

#[tokio::test]
async fn compaction_gives_space_back_and_keeps_every_pending_entry() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("queue");
    let sink = SinkId::new("ehr");
    let kept = {
        let q = open(&dir);
        let all: Vec<_> = (0..3000).map(|n| reading("cuff", n)).collect();
        q.enqueue(all.clone()).await.unwrap();
        let delivered = all[..2990]
            .iter()
            .map(|r| (r.id.unwrap(), Settle::Delivered))
            .collect();
        q.settle(&sink, delivered).await.unwrap();
        q.close().await.unwrap();
        all[2990..].to_vec()
    };
    let report = compact(&dir, 8 << 20, &key()).unwrap();
    assert!(report.bytes_after < report.bytes_before, "{report:?}");
    assert!(!sibling(&dir).exists());
    let q = open(&dir);
    assert_eq!(q.stats().unwrap().sinks[0].pending, 10);
    let far = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let left: Vec<_> = q
        .pending(&sink, 100, far)
        .unwrap()
        .into_iter()
        .map(|p| p.reading)
        .collect();
    assert_eq!(left, kept);
    // Dedupe keys survive: the delivered readings are still known.
    let again = q.enqueue(vec![reading("cuff", 5)]).await.unwrap();
    assert!(matches!(
        again[0],
        crate::queue::EnqueueOutcome::Duplicate(_)
    ));
}

#[test]
fn compaction_refuses_a_directory_without_a_store_and_removes_leftovers() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("queue");
    assert!(compact(&dir, 8 << 20, &key()).is_err());
    std::fs::create_dir_all(sibling(&dir)).unwrap();
    drop(SledStore::open(&dir, 8 << 20).unwrap());
    compact(&dir, 8 << 20, &key()).unwrap();
    assert!(!sibling(&dir).exists());
    assert!(dir.join("db").exists());
}

#[test]
fn compaction_refuses_another_key_and_keeps_the_store_modes() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("queue");
    drop(Sealed::open(SledStore::open(&dir, 8 << 20).unwrap(), &key()).unwrap());
    let other = StoreKey::from_bytes([6; 32], "other key");
    let err = compact(&dir, 8 << 20, &other).unwrap_err().to_string();
    assert!(err.contains("another key"), "{err}");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(dir.join("db"), std::fs::Permissions::from_mode(0o600)).unwrap();
    compact(&dir, 8 << 20, &key()).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("db")), 0o600);
    assert_eq!(mode(&dir.join("conf")), 0o600);
    drop(Sealed::open(SledStore::open(&dir, 8 << 20).unwrap(), &key()).unwrap());
}

/// The largest heap bytes in use (glibc's count) sampled while `f` runs, above those in
/// use when it started.
fn peak_heap_during(f: impl FnOnce()) -> usize {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let base = crate::alloc::heap().in_use;
    let peak = Arc::new(AtomicUsize::new(base));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (Arc::clone(&peak), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(crate::alloc::heap().in_use, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    f();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    peak.load(Ordering::Relaxed).saturating_sub(base)
}

/// A store in `dir` of `mib` MiB of 4 KiB values (the size of the dedupe chunks that make
/// up most of a store at a high rate), with 256 keys a MiB.
fn store_of(dir: &Path, mib: usize) -> SledStore {
    let store = SledStore::open(dir, 1 << 20).unwrap();
    for page in 0..mib {
        let mut b = Batch::new();
        for i in 0..256usize {
            let n = page * 256 + i;
            b.put(format!("k{n:08}").into_bytes(), copied_value(n));
        }
        store.apply(b).unwrap();
        store.sync().unwrap();
    }
    store
}

#[test]
fn the_copy_holds_a_bounded_part_of_the_store_in_memory() {
    let parent = tempfile::tempdir().unwrap();
    let from = parent.path().join("from");
    let live = 96usize;
    drop(store_of(&from, live));
    let copy = |name: &str, bytes: u64| {
        let to = parent.path().join(name);
        let window = Window {
            cache_capacity: 1 << 20,
            bytes,
        };
        let started = Instant::now();
        let peak = peak_heap_during(|| {
            assert_eq!(
                copy_and_check(&from, &to, window).unwrap(),
                256 * live as u64
            );
        });
        (peak >> 20, started.elapsed())
    };
    // Measured (debug build): 143–175 MiB through one opening, 33 MiB in windows of 4 MiB and
    // 57 MiB in windows of 16 MiB (about 25 of it sled's own per opening of a store). The
    // bound, three quarters of the live bytes: through one opening (as the copy was before the
    // windows) sled keeps most of both stores in memory and goes far above it.
    let bound = live * 3 / 4;
    let (whole, whole_took) = copy("whole", u64::MAX);
    // The heap is the process's, and the other tests of this binary run at the same time:
    // their allocations can only raise a peak, so the windowed copy is measured up to three
    // times and its lowest peak is the one judged.
    let (mut windowed, mut windowed_took) = (usize::MAX, Duration::ZERO);
    for attempt in 0..3 {
        let (peak, took) = copy(&format!("windowed-{attempt}"), WINDOW_BYTES);
        if peak < windowed {
            (windowed, windowed_took) = (peak, took);
        }
        if windowed < bound {
            break;
        }
    }
    eprintln!(
        "heap in use above the start while copying and checking {live} MiB: {whole} MiB \
         through one opening of each store ({whole_took:?}), {windowed} MiB through a \
         fresh opening every {} MiB ({windowed_took:?})",
        WINDOW_BYTES >> 20
    );
    assert!(
        windowed < bound && whole > bound,
        "windows of {} MiB: {windowed} MiB at the peak; one opening: {whole} MiB",
        WINDOW_BYTES >> 20
    );
}

#[test]
fn a_copy_that_differs_from_the_store_or_misses_a_key_is_refused() {
    let parent = tempfile::tempdir().unwrap();
    let from = parent.path().join("from");
    drop(store_of(&from, 3));
    let to = parent.path().join("to");
    // Windows of 1 MiB: the copy and the read-back each open the stores three times.
    let window = Window {
        cache_capacity: 1 << 20,
        bytes: 1 << 20,
    };
    let copied = copy_windows(&from, &to, window).unwrap();
    assert_eq!(copied.keys, 768);
    assert_eq!(
        verify(&copied, &read_back(&to, window).unwrap()).unwrap(),
        768
    );
    let tamper = |f: &dyn Fn(&mut Batch)| {
        let store = SledStore::open(&to, 1 << 20).unwrap();
        let mut b = Batch::new();
        f(&mut b);
        store.apply(b).unwrap();
        store.sync().unwrap();
    };
    // One value changed, same length: same keys and bytes, another digest.
    tamper(&|b| b.put(b"k00000500".to_vec(), vec![0; 4096]));
    let err = verify(&copied, &read_back(&to, window).unwrap()).unwrap_err();
    assert!(err.to_string().contains("digests differ"), "{err}");
    // One key missing (the copy cut short).
    tamper(&|b| b.put(b"k00000500".to_vec(), copied_value(500)));
    assert_eq!(
        verify(&copied, &read_back(&to, window).unwrap()).unwrap(),
        768
    );
    tamper(&|b| b.remove(b"k00000767".to_vec()));
    let err = verify(&copied, &read_back(&to, window).unwrap()).unwrap_err();
    assert!(err.to_string().contains("767 keys"), "{err}");
    // A key more than the store has.
    tamper(&|b| {
        b.put(b"k00000767".to_vec(), copied_value(767));
        b.put(b"zz".to_vec(), vec![1]);
    });
    assert!(verify(&copied, &read_back(&to, window).unwrap()).is_err());
}

/// The value [`store_of`] stores under key number `n`.
fn copied_value(n: usize) -> Vec<u8> {
    (0..4096)
        .map(|j| u8::try_from((n * 31 + j * 7) % 251).unwrap())
        .collect()
}
