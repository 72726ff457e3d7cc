//! Whole-prefix scans a page at a time, for counting at open and for the offline tools.
//!
//! Receives a [`Store`] and a key prefix. Promises: never holds more than one page in memory.

use super::store::Store;
use super::types::QueueError;

/// Calls `each` with every key and value under `prefix`, a page at a time.
pub(super) fn scan_values(
    store: &dyn Store,
    prefix: &[u8],
    mut each: impl FnMut(&[u8], &[u8]),
) -> Result<(), QueueError> {
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_prefix(prefix, after.as_deref(), 1024)?;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        let last = last.clone();
        for (k, v) in &page {
            each(k, v);
        }
        after = Some(last);
    }
}

/// Counts the keys under `prefix`, a page at a time, calling `each` with every key.
pub(super) fn count_prefix(
    store: &dyn Store,
    prefix: &[u8],
    mut each: impl FnMut(&[u8]),
) -> Result<u64, QueueError> {
    let mut n = 0;
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.scan_prefix(prefix, after.as_deref(), 4096)?;
        let Some((last, _)) = page.last() else {
            return Ok(n);
        };
        let last = last.clone();
        for (k, _) in &page {
            each(k);
            n += 1;
        }
        after = Some(last);
    }
}
