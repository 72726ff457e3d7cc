//! Arbitrary bytes into the `openbci` ECG decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffers must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder("openbci", &[], data);
});
