//! Sinks: encode readings and deliver them to a receiver, with one shared delivery loop.
//!
//! Receives readings the queue holds for a sink; emits them to the receiver (a file outbox,
//! later a FHIR server or an HL7 engine) and reports one [`Outcome`] per reading. The loop in
//! [`delivery`] turns outcomes into queue decisions (settle / retry with backoff / dead-letter)
//! so every sink gets the same guarantees: nothing is dropped, a down receiver only grows the
//! queue, one bad reading never blocks the rest.
//!
//! # Layout
//! - [`outcome`]: `Delivered | Retry | Rejected` and the pure classifiers (HTTP status, ...).
//! - [`retry`]: capped exponential backoff with jitter.
//! - [`delivery`]: the loop that drives one sink from the queue.
//! - [`fhir`]: reading → FHIR R4 Observation / transaction Bundle.
//! - [`file`]: the NDJSON file outbox (one file per UTC day, fsync before delivered).
//! - [`hl7`]: reading → HL7 v2.6 ORU^R01; [`mllp`]: the HL7 sink over MLLP (TCP or TLS).

pub mod delivery;
pub mod fhir;
pub mod file;
pub mod hl7;
pub mod mllp;
pub mod mqtt;
pub mod outcome;
pub mod retry;

#[cfg(test)]
mod delivery_fake;
#[cfg(test)]
mod e2e_tests;

use std::future::Future;
use std::pin::Pin;

use crate::reading::{Reading, SinkId};

pub use delivery::{run_delivery, DeliveryEvent};
pub use file::{FileFormat, FileSink, FileSinkError};
pub use outcome::{classify_http, Outcome};
pub use retry::RetryPolicy;

/// The future a sink's [`Sink::deliver`] returns.
pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Vec<Outcome>> + Send + 'a>>;

/// A receiver of readings. Implementations encode and send; they never touch the queue.
pub trait Sink: Send {
    /// The configured `[[sink]] id`.
    fn id(&self) -> &SinkId;

    /// The most readings one [`Sink::deliver`] call takes (the FHIR Bundle size, 1 for MLLP).
    fn max_batch(&self) -> usize;

    /// Sends a batch and returns exactly one outcome per reading, in the same order. A sink
    /// reports `Delivered` only once the receiver holds the reading durably.
    fn deliver<'a>(&'a mut self, batch: &'a [Reading]) -> DeliverFuture<'a>;

    /// How long the receiver asked to be left alone after the last [`Sink::deliver`] (an
    /// HTTP `Retry-After`), taken once: the loop schedules no retry of that batch sooner.
    fn retry_after(&mut self) -> Option<std::time::Duration> {
        None
    }

    /// How many batches the delivery loop may have in flight at once (the sink's
    /// `concurrency`); 1 sends one batch at a time, in order.
    fn concurrency(&self) -> usize {
        1
    }

    /// Another handle on the same receiver (sharing its client and credentials) for one more
    /// batch in flight; `None` when batches must go one at a time.
    fn pipeline(&self) -> Option<Box<dyn Sink>> {
        None
    }
}
