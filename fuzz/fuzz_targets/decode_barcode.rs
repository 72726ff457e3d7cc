//! Arbitrary bytes into the `barcode` decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffer must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder(
        "barcode",
        &[("system", r"urn:oid:1.2.3"), ("pattern", r"^MRN\d{7}$")],
        data,
    );
});
