//! Arbitrary bytes into the `ble-gatt` decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffer must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder("ble-gatt", &[("characteristic", r"2A35")], data);
});
