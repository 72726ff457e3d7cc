//! The allocator setting is made by the program itself: after `vitalsd::alloc::tune()`, a
//! block of sled's log-buffer size is mmapped every time it is allocated, also after one was
//! freed (glibc's default raises its threshold at that free and serves the next from the heap).
//! One test in this binary: nothing else allocates large blocks meanwhile.

use std::hint::black_box;

use vitalsd::alloc::{mmapped, tune, Tuning};

/// sled's log buffer.
const BUFFER: usize = 512 * 1024;

fn allocate_and_count() -> usize {
    let before = mmapped().0;
    let block = black_box(vec![1u8; BUFFER]);
    let during = mmapped().0;
    drop(black_box(block));
    during.saturating_sub(before)
}

#[test]
fn sleds_buffers_stay_mmapped_after_one_was_freed() {
    assert!(
        std::env::var_os(vitalsd::alloc::ENV_VAR).is_none(),
        "run this test without {} in the environment",
        vitalsd::alloc::ENV_VAR
    );
    assert_eq!(tune(), Tuning::Applied);
    assert_eq!(tune(), Tuning::Applied, "a second call reports the first");
    for round in 0..4 {
        assert_eq!(
            allocate_and_count(),
            1,
            "round {round}: a {BUFFER}-byte block came from the heap, not from mmap"
        );
    }
}
