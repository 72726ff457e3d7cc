//! Arbitrary bytes into the `nonin-7` decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffer must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder("nonin-7", &[], data);
});
