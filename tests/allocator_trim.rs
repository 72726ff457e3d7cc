//! `vitalsd::alloc::trim` gives back heap memory that was freed but stays resident: a burst of
//! small blocks (like the page caches of the store's online rewrite), freed while one block
//! after them is still in use, leaves a hole glibc keeps until it is trimmed.
//! One test in this binary: nothing else allocates meanwhile.

use std::hint::black_box;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

const MIB: u64 = 1 << 20;

#[test]
fn freed_heap_holes_are_given_back_by_trim() {
    vitalsd::alloc::tune();
    let base = rss_bytes();
    // 64 MiB in 2 KiB blocks (below the mmap threshold: from the heap), then one kept.
    let burst: Vec<Vec<u8>> = (0..32 * 1024)
        .map(|i| black_box(vec![u8::try_from(i % 251).unwrap(); 2048]))
        .collect();
    let kept = black_box(vec![7u8; 2048]);
    drop(black_box(burst));
    let freed = rss_bytes();
    assert!(
        freed > base + 48 * MIB,
        "the freed burst is still resident before the trim: {} MiB over {} MiB",
        (freed.saturating_sub(base)) / MIB,
        base / MIB
    );
    assert!(vitalsd::alloc::trim(), "trim released nothing");
    let trimmed = rss_bytes();
    assert!(
        trimmed + 48 * MIB < freed,
        "trim gave back {} MiB of {} MiB",
        freed.saturating_sub(trimmed) / MIB,
        freed.saturating_sub(base) / MIB
    );
    assert_eq!(kept[0], 7);
}
