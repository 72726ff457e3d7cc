//! Arbitrary bytes into the `hl7v2` decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffer must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder("hl7v2", &[], data);
});
