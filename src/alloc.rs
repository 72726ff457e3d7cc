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
//! mmapped blocks (what the tests and benches check).
//!
//! Why (docs/store-bounds.md, "Memory: the allocator setting"): sled writes its log through
//! 512 KiB buffers, allocated and freed over and over. glibc serves a block that large with
//! `mmap` at first, but every `free` of an mmapped block raises its threshold to that block's
//! size, so from then on the buffers come from the heap, whose holes are not returned to the
//! system: a draining backlog's RSS grows with the bytes written. A fixed threshold also stops
//! glibc from adjusting it.

use std::sync::OnceLock;

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
