//! Arbitrary bytes into the `lines` decoder, split into chunks at arbitrary points:
//! it must never panic, and its buffer must stay bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vitalsd::decode::fuzz_decoder(
        "lines",
        &[
            ("pattern", r"^(?P<s>[0-9]+)/(?P<d>[0-9]+)$"),
            ("kind", r"blood_pressure"),
            ("value.s", r"systolic:mm[Hg]"),
            ("value.d", r"diastolic:mm[Hg]"),
        ],
        data,
    );
});
