//! The one test store with hooks: a [`MemoryStore`] (or any boxed store) that tests and the
//! pipeline bench wrap to watch or disturb what the queue asks of its store.
//!
//! Receives: the store to delegate to ([`HookedStore::new`] for a memory store,
//! [`HookedStore::over`] for any other), a predicate naming the scans to count, and, while the
//! test runs, switches: fail every `apply`, fail every `sync` (as a full disk does), hold every
//! `sync` at a gate until released, hold every read (`get`, `scan_prefix`) at another.
//! Promises: every call reaches the inner store unless a switch makes it fail first (then the
//! inner store is not touched); a held `sync` marks that it was entered, then waits for
//! [`HookedStore::release_syncs`] before it fails or syncs; it records how many entries the
//! widest scan returned, how many scans matched the predicate and how long each inner `sync`
//! took.
//!
//! Compiled only for tests (`queue::test_store`) and, by `#[path]`, into the pipeline bench; it
//! names the store types through `super::`, so the module that includes it must have `Batch`,
//! `Entry`, `MemoryStore`, `Store` and `StoreError` in scope.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{Batch, Entry, MemoryStore, Store, StoreError};

/// A store that delegates to an inner store, with the hooks of the module doc.
pub struct HookedStore {
    inner: Box<dyn Store>,
    counted: Option<fn(&[u8]) -> bool>,
    counted_scans: AtomicU64,
    counted_entries: AtomicU64,
    gets: AtomicU64,
    widest_scan: AtomicUsize,
    fail_applies: AtomicBool,
    fail_syncs: AtomicBool,
    syncs_held: Mutex<bool>,
    gate: Condvar,
    sync_entered: AtomicBool,
    sync_times: Mutex<Vec<Duration>>,
    reads_held: Mutex<bool>,
    read_gate: Condvar,
    read_entered: AtomicBool,
}

/// How long a held read waits at most before it fails (a test that never releases it ends).
const READ_HOLD_MAX: Duration = Duration::from_secs(10);

impl Default for HookedStore {
    fn default() -> Self {
        Self::new()
    }
}

impl HookedStore {
    /// Hooks over a new [`MemoryStore`], every switch off.
    pub fn new() -> HookedStore {
        Self::over(Box::new(MemoryStore::new()))
    }

    /// Hooks over `inner`, every switch off.
    pub fn over(inner: Box<dyn Store>) -> HookedStore {
        HookedStore {
            inner,
            counted: None,
            counted_scans: AtomicU64::new(0),
            counted_entries: AtomicU64::new(0),
            gets: AtomicU64::new(0),
            widest_scan: AtomicUsize::new(0),
            fail_applies: AtomicBool::new(false),
            fail_syncs: AtomicBool::new(false),
            syncs_held: Mutex::new(false),
            gate: Condvar::new(),
            sync_entered: AtomicBool::new(false),
            sync_times: Mutex::new(Vec::new()),
            reads_held: Mutex::new(false),
            read_gate: Condvar::new(),
            read_entered: AtomicBool::new(false),
        }
    }

    /// Counts the scans whose prefix `which` accepts (read with [`counted_scans`](Self::counted_scans)).
    pub fn count_scans(mut self, which: fn(&[u8]) -> bool) -> HookedStore {
        self.counted = Some(which);
        self
    }

    /// How many scans the [`count_scans`](Self::count_scans) predicate accepted.
    pub fn counted_scans(&self) -> u64 {
        self.counted_scans.load(Ordering::SeqCst)
    }

    /// The entries the scans [`count_scans`](Self::count_scans) accepted returned.
    pub fn counted_entries(&self) -> u64 {
        self.counted_entries.load(Ordering::SeqCst)
    }

    /// How many single-key reads (`get`) reached the store.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::SeqCst)
    }

    /// The most entries one scan returned since the store was made or this was last reset.
    pub fn widest_scan(&self) -> usize {
        self.widest_scan.load(Ordering::SeqCst)
    }

    pub fn reset_widest_scan(&self) {
        self.widest_scan.store(0, Ordering::SeqCst);
    }

    /// While `on`, `apply` fails with an I/O error and applies nothing.
    pub fn fail_applies(&self, on: bool) {
        self.fail_applies.store(on, Ordering::SeqCst);
    }

    /// While `on`, `sync` fails with the I/O error of a full disk and syncs nothing.
    pub fn fail_syncs(&self, on: bool) {
        self.fail_syncs.store(on, Ordering::SeqCst);
    }

    /// Every `sync` from now on waits until [`release_syncs`](Self::release_syncs).
    pub fn hold_syncs(&self) {
        *self.syncs_held.lock().expect("gate") = true;
    }

    /// Lets held and later syncs through.
    pub fn release_syncs(&self) {
        *self.syncs_held.lock().expect("gate") = false;
        self.gate.notify_all();
    }

    /// Whether a `sync` was entered since the store was made or
    /// [`forget_sync_entered`](Self::forget_sync_entered) was called.
    pub fn sync_entered(&self) -> bool {
        self.sync_entered.load(Ordering::SeqCst)
    }

    pub fn forget_sync_entered(&self) {
        self.sync_entered.store(false, Ordering::SeqCst);
    }

    /// Every read (`get`, `scan_prefix`) from now on waits until
    /// [`release_reads`](Self::release_reads), and fails after waiting 10 s.
    pub fn hold_reads(&self) {
        *self.reads_held.lock().expect("gate") = true;
    }

    /// Lets held and later reads through.
    pub fn release_reads(&self) {
        *self.reads_held.lock().expect("gate") = false;
        self.read_gate.notify_all();
    }

    /// Whether a read reached the gate while reads were held.
    pub fn read_entered(&self) -> bool {
        self.read_entered.load(Ordering::SeqCst)
    }

    /// The read gate: waits while reads are held.
    fn gate_read(&self) -> Result<(), StoreError> {
        let mut held = self.reads_held.lock().expect("gate");
        if !*held {
            return Ok(());
        }
        self.read_entered.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + READ_HOLD_MAX;
        while *held {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(StoreError::Io("read held at the test gate too long".into()));
            }
            held = self.read_gate.wait_timeout(held, left).expect("gate").0;
        }
        Ok(())
    }

    /// How long each inner `sync` took, in order (the gate's wait not included).
    pub fn sync_times(&self) -> Vec<Duration> {
        self.sync_times.lock().expect("sync times").clone()
    }
}

impl Store for HookedStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.gate_read()?;
        self.inner.get(key)
    }

    fn scan_prefix(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        self.gate_read()?;
        let counted = self.counted.is_some_and(|which| which(prefix));
        if counted {
            self.counted_scans.fetch_add(1, Ordering::SeqCst);
        }
        let page = self.inner.scan_prefix(prefix, after, limit)?;
        if counted {
            self.counted_entries
                .fetch_add(page.len() as u64, Ordering::SeqCst);
        }
        self.widest_scan.fetch_max(page.len(), Ordering::SeqCst);
        Ok(page)
    }

    fn last_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.last_key(prefix)
    }

    fn apply(&self, batch: Batch) -> Result<(), StoreError> {
        if self.fail_applies.load(Ordering::SeqCst) {
            return Err(StoreError::Io("injected apply failure".into()));
        }
        self.inner.apply(batch)
    }

    fn sync(&self) -> Result<(), StoreError> {
        self.sync_entered.store(true, Ordering::SeqCst);
        let mut held = self.syncs_held.lock().expect("gate");
        while *held {
            held = self.gate.wait(held).expect("gate");
        }
        drop(held);
        if self.fail_syncs.load(Ordering::SeqCst) {
            return Err(StoreError::Io("No space left on device".into()));
        }
        let started = Instant::now();
        let synced = self.inner.sync();
        self.sync_times
            .lock()
            .expect("sync times")
            .push(started.elapsed());
        synced
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.inner.size_on_disk()
    }

    fn sync_count(&self) -> u64 {
        self.inner.sync_count()
    }
}

/// Points a background job passes ([`Gate::pass`]) where a test can hold it ([`Gate::hold`]):
/// the job marks each point reached and, while that point is held, waits (at most
/// [`GATE_MAX`], so a test that never releases it ends) until [`Gate::release`].
pub struct Gate<T> {
    state: Mutex<GateState<T>>,
    cv: Condvar,
}

struct GateState<T> {
    held: Vec<T>,
    reached: Vec<T>,
}

/// How long a held point waits at most, and how long [`Gate::wait_reached`] waits.
pub const GATE_MAX: Duration = Duration::from_secs(20);

impl<T: PartialEq + Clone> Default for Gate<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(GateState {
                held: Vec::new(),
                reached: Vec::new(),
            }),
            cv: Condvar::new(),
        }
    }
}

impl<T: PartialEq + Clone> Gate<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// From now on the job waits at `at` until it is released.
    pub fn hold(&self, at: T) {
        self.lock().held.push(at);
    }

    /// Lets the job go on past `at` (and pass it freely later).
    pub fn release(&self, at: &T) {
        self.lock().held.retain(|h| h != at);
        self.cv.notify_all();
    }

    /// Called by the job at `at`: marks it reached and waits while it is held.
    pub fn pass(&self, at: T) {
        let mut s = self.lock();
        s.reached.push(at.clone());
        self.cv.notify_all();
        let until = Instant::now() + GATE_MAX;
        while s.held.contains(&at) && Instant::now() < until {
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Whether the job reached `at` (waits up to [`GATE_MAX`] for it).
    pub fn wait_reached(&self, at: &T) -> bool {
        let until = Instant::now() + GATE_MAX;
        let mut s = self.lock();
        while !s.reached.contains(at) {
            if Instant::now() >= until {
                return false;
            }
            s = self
                .cv
                .wait_timeout(s, Duration::from_millis(50))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Whether the job reached `at` already.
    pub fn reached(&self, at: &T) -> bool {
        self.lock().reached.contains(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(store: &HookedStore, key: &[u8]) -> Result<(), StoreError> {
        let mut b = Batch::new();
        b.put(key.to_vec(), b"v".to_vec());
        store.apply(b)
    }

    #[test]
    fn calls_reach_the_inner_store_and_scans_are_measured() {
        let store = HookedStore::over(Box::new(MemoryStore::new())).count_scans(|p| p == b"a");
        for k in [b"a1", b"a2", b"b1"] {
            put(&store, k).unwrap();
        }
        assert_eq!(store.get(b"a2").unwrap(), Some(b"v".to_vec()));
        assert_eq!(store.last_key(b"a").unwrap(), Some(b"a2".to_vec()));
        assert_eq!(store.scan_prefix(b"a", None, 10).unwrap().len(), 2);
        assert_eq!(store.scan_prefix(b"b", None, 10).unwrap().len(), 1);
        assert_eq!(store.counted_scans(), 1, "only the scans of prefix `a`");
        assert_eq!(store.widest_scan(), 2);
        store.reset_widest_scan();
        assert_eq!(store.widest_scan(), 0);
        store.sync().unwrap();
        assert_eq!(store.sync_count(), 1);
        assert_eq!(store.sync_times().len(), 1);
    }

    #[test]
    fn a_failing_switch_fails_the_call_without_touching_the_inner_store() {
        let store = HookedStore::new();
        store.fail_applies(true);
        assert!(put(&store, b"k").is_err());
        store.fail_applies(false);
        assert_eq!(store.get(b"k").unwrap(), None);
        store.fail_syncs(true);
        assert!(store.sync().is_err());
        assert_eq!(store.sync_count(), 0);
        assert!(store.sync_times().is_empty());
        store.fail_syncs(false);
        store.sync().unwrap();
        assert_eq!(store.sync_count(), 1);
    }

    #[test]
    fn a_held_sync_is_entered_and_waits_for_the_release() {
        let store = std::sync::Arc::new(HookedStore::new());
        store.hold_syncs();
        let syncing = store.clone();
        let sync = std::thread::spawn(move || syncing.sync());
        let deadline = Instant::now() + Duration::from_secs(5);
        while !store.sync_entered() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert!(store.sync_entered());
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(store.sync_count(), 0, "held at the gate");
        store.release_syncs();
        sync.join().unwrap().unwrap();
        assert_eq!(store.sync_count(), 1);
        store.forget_sync_entered();
        assert!(!store.sync_entered());
    }
}
