//! FHIR R4 encoding of readings: one Observation per reading and the transaction
//! Bundle a FHIR sink posts (docs/fhir.md).
//!
//! Receives canonical [`crate::reading::Reading`]s; emits typed, serialise-only FHIR values
//! ([`model`]) whose JSON keeps every number exactly as the device reported it. Pure: the same
//! reading always encodes to the same bytes, so a redelivery is byte-identical.

#[cfg(test)]
mod conformance_tests;
mod ecg;
#[cfg(test)]
mod golden_tests;
pub mod http;
mod json;
pub mod model;
pub mod observation;
pub mod response;
mod table;
#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use http::{FhirSink, FhirSinkError};
pub use model::{Bundle, Observation};
pub use observation::{observation, transaction_bundle, write_transaction_bundle};
