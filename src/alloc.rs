//! The allocator setting the store needs, applied from inside the program.
//!
//! Receives: one call to [`tune`], first thing in `main` (and in the benches that drive the
//! store in their own process), before the store allocates anything.
//!
//! Promises: glibc's mmap threshold is fixed at [`MMAP_THRESHOLD`] bytes for the life of the
//! process, as `MALLOC_MMAP_THRESHOLD_=131072` in the environment would fix it, so `vitalsd run`
//! started by hand, by systemd or by a container runtime has the same memory figures. A
//! threshold the operator set in the environment is left as glibc read it. [`outcome`] says
//! which of the two happened, for the start-up log; [`mmapped`] reports glibc's own count of
//! mmapped blocks (what the tests and benches check). [`Trimmer`] trims the heap on its own
//! thread when asked, so whoever asks (the store's sync, the online rewrite) does not wait for it.
//!
//! Why (docs/store-bounds.md, "Memory: the allocator setting"): sled writes its log through
//! 512 KiB buffers, allocated and freed over and over. glibc serves a block that large with
//! `mmap` at first, but every `free` of an mmapped block raises its threshold to that block's
//! size, so from then on the buffers come from the heap, whose holes are not returned to the
//! system: a draining backlog's RSS grows with the bytes written. A fixed threshold also stops
//! glibc from adjusting it.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Blocks of at least this many bytes are mmapped (and unmapped when freed).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// The environment variable by which an operator sets the threshold instead.
pub const ENV_VAR: &str = "MALLOC_MMAP_THRESHOLD_";

/// `VITALSD_MALLOC=glibc-default` leaves glibc's own defaults (to measure what the setting
/// does; not for production).
pub const SWITCH_VAR: &str = "VITALSD_MALLOC";

/// What [`tune`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tuning {
    /// vitalsd fixed the threshold at [`MMAP_THRESHOLD`].
    Applied,
    /// The environment sets it (glibc applied that value at start); left alone.
    FromEnvironment,
    /// glibc refused the setting; the process runs with its default.
    Refused,
    /// `VITALSD_MALLOC=glibc-default`: left at glibc's defaults on purpose.
    Default,
}

static OUTCOME: OnceLock<Tuning> = OnceLock::new();

/// Fixes glibc's mmap threshold unless the environment sets one. Idempotent: later calls
/// return what the first one did.
pub fn tune() -> Tuning {
    *OUTCOME.get_or_init(|| {
        if std::env::var_os(ENV_VAR).is_some() {
            return Tuning::FromEnvironment;
        }
        if std::env::var_os(SWITCH_VAR).is_some_and(|v| v == "glibc-default") {
            return Tuning::Default;
        }
        if set_mmap_threshold(MMAP_THRESHOLD) {
            Tuning::Applied
        } else {
            Tuning::Refused
        }
    })
}

/// What [`tune`] did, if it was called.
pub fn outcome() -> Option<Tuning> {
    OUTCOME.get().copied()
}

/// glibc's count of blocks currently mmapped by malloc and their bytes.
pub fn mmapped() -> (usize, usize) {
    let info = mallinfo();
    (info.0, info.1)
}

/// glibc's view of the heap (`mallinfo2`), in bytes: what the soak bench prints every
/// simulated day to tell the allocator's share of RSS from the program's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heap {
    /// Bytes obtained for the heaps of all arenas (`arena`).
    pub arena: usize,
    /// Bytes in blocks served by `mmap` (`hblkhd`).
    pub mmapped: usize,
    /// Bytes allocated and not yet freed, heap and mmapped blocks (`uordblks` + `hblkhd`).
    pub in_use: usize,
    /// Bytes freed but still held by the arenas (`fordblks`): resident as far as touched.
    pub free: usize,
    /// Of `free`, the bytes at the top of the main heap that a trim can give back by moving
    /// the break (`keepcost`).
    pub top_free: usize,
}

/// glibc's counters now (all zero where glibc is not the allocator).
#[allow(unsafe_code)]
pub fn heap() -> Heap {
    // SAFETY: mallinfo2 only reads malloc's counters and returns them by value.
    let info = unsafe { libc::mallinfo2() };
    Heap {
        arena: info.arena,
        mmapped: info.hblkhd,
        in_use: info.uordblks + info.hblkhd,
        free: info.fordblks,
        top_free: info.keepcost,
    }
}

/// The process's resident memory by kind (`/proc/self/status`), in bytes: what tells heap
/// memory from pages of mapped files.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resident {
    /// All resident pages (`VmRSS`): the sum of the three below.
    pub total: u64,
    /// Anonymous pages (`RssAnon`): the heap, mmapped blocks, stacks.
    pub anon: u64,
    /// Pages of mapped files (`RssFile`): the program's own code and libraries.
    pub file: u64,
    /// Shared memory (`RssShmem`).
    pub shmem: u64,
}

/// The process's resident memory now (all zero where `/proc` is not there).
pub fn resident() -> Resident {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    parse_resident(&status)
}

fn parse_resident(status: &str) -> Resident {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Resident {
        total: field("VmRSS:"),
        anon: field("RssAnon:"),
        file: field("RssFile:"),
        shmem: field("RssShmem:"),
    }
}

/// Gives the free pages inside the heap back to the system (glibc's `malloc_trim`). glibc
/// returns freed memory only from the top of a heap by itself; after a burst of allocations
/// that are all freed again (the store's online rewrite copies every live key through two
/// page caches) the holes stay resident until this is called. Returns whether any memory was
/// released.
#[allow(unsafe_code)]
pub fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and only releases memory malloc holds free.
    unsafe { libc::malloc_trim(0) == 1 }
}

/// A thread that trims the heap ([`trim`]) when asked: [`Trimmer::request`] only marks a
/// trim as wanted and wakes the thread, so the caller goes on at once (a trim took up to
/// 87 ms on a loaded machine, docs/store-bounds.md). Requests made while a trim runs are
/// answered by one more trim after it. [`Trimmer::global`] is the process's one trimmer
/// (`malloc_trim` works on the whole process, so one thread is enough); tests make their own
/// with [`Trimmer::with`] to observe or slow the trim.
pub struct Trimmer {
    shared: Arc<TrimShared>,
}

type TrimFn = Box<dyn Fn() -> bool + Send + Sync>;

struct TrimShared {
    state: Mutex<TrimState>,
    wake: Condvar,
    trim: TrimFn,
}

#[derive(Default)]
struct TrimState {
    pending: bool,
    closed: bool,
    /// Trims finished so far.
    done: u64,
    /// The longest trim since [`Trimmer::take_longest`] was last called.
    longest: Duration,
    /// No thread could be started: requests trim on the caller's thread.
    inline: bool,
}

impl std::fmt::Debug for Trimmer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trimmer")
            .field("done", &self.done())
            .finish_non_exhaustive()
    }
}

impl TrimShared {
    fn lock(&self) -> MutexGuard<'_, TrimState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn serve(&self) {
        let mut g = self.lock();
        loop {
            while !g.pending && !g.closed {
                g = self.wake.wait(g).unwrap_or_else(|e| e.into_inner());
            }
            if g.closed {
                return;
            }
            g.pending = false;
            drop(g);
            let started = Instant::now();
            (self.trim)();
            let took = started.elapsed();
            g = self.lock();
            g.done += 1;
            g.longest = g.longest.max(took);
            self.wake.notify_all();
        }
    }
}

impl Trimmer {
    /// The process's trimmer (glibc's `malloc_trim`), its thread started on first use.
    pub fn global() -> &'static Trimmer {
        static GLOBAL: OnceLock<Trimmer> = OnceLock::new();
        GLOBAL.get_or_init(|| Trimmer::with(trim))
    }

    /// A trimmer calling `trim` on its own thread (stopped when the trimmer is dropped).
    pub fn with(trim: impl Fn() -> bool + Send + Sync + 'static) -> Trimmer {
        let shared = Arc::new(TrimShared {
            state: Mutex::new(TrimState::default()),
            wake: Condvar::new(),
            trim: Box::new(trim),
        });
        let worker = Arc::clone(&shared);
        let started = std::thread::Builder::new()
            .name("vitalsd-trim".into())
            .spawn(move || worker.serve());
        if started.is_err() {
            shared.lock().inline = true;
        }
        Trimmer { shared }
    }

    /// Asks for a trim and returns without waiting for it.
    pub fn request(&self) {
        let mut g = self.shared.lock();
        if g.inline {
            drop(g);
            (self.shared.trim)();
            self.shared.lock().done += 1;
            return;
        }
        g.pending = true;
        self.shared.wake.notify_all();
    }

    /// Trims finished so far.
    pub fn done(&self) -> u64 {
        self.shared.lock().done
    }

    /// The longest trim since the last call (the soak bench reports it every simulated day).
    pub fn take_longest(&self) -> Duration {
        std::mem::take(&mut self.shared.lock().longest)
    }

    /// Waits until at least `n` trims have finished, at most `timeout`; whether they had.
    pub fn wait_done(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.lock();
        while g.done < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            g = self
                .shared
                .wake
                .wait_timeout(g, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

impl Drop for Trimmer {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_all();
    }
}

#[allow(unsafe_code)]
fn set_mmap_threshold(bytes: usize) -> bool {
    let Ok(value) = libc::c_int::try_from(bytes) else {
        return false;
    };
    // SAFETY: mallopt only changes a malloc parameter; it takes no pointers.
    unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, value) == 1 }
}

#[allow(unsafe_code)]
fn mallinfo() -> (usize, usize) {
    // SAFETY: mallinfo2 only reads malloc's counters and returns them by value.
    let info = unsafe { libc::mallinfo2() };
    (info.hblks, info.hblkhd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_by_kind() {
        let status = "Name:\tvitalsd\nVmHWM:\t  9000 kB\nVmRSS:\t    5000 kB\nRssAnon:\t    3000 kB\nRssFile:\t    1900 kB\nRssShmem:\t     100 kB\n";
        let r = parse_resident(status);
        assert_eq!(
            r,
            Resident {
                total: 5000 << 10,
                anon: 3000 << 10,
                file: 1900 << 10,
                shmem: 100 << 10,
            }
        );
        let now = resident();
        assert!(now.anon > 0 && now.total >= now.anon, "{now:?}");
    }
}
