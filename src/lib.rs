//! vitalsd: vital signs from exam-room devices into the patient's record.
//!
//! Bytes arrive from devices (serial ports, MQTT), are decoded from each device's real wire
//! format, normalised into canonical [`reading::Reading`]s with standard codes and units, stored
//! durably in a sled queue before anything is acknowledged, and forwarded to the clinic's record
//! system with retries, idempotency and a dead-letter place.
//!
//! # Layout
//! - [`config`]: the TOML file → a validated configuration, every problem reported at once.
//! - [`reading`]: the canonical reading and its small types.
//! - [`source`]: transports (serial) → raw bytes with device id and receipt time.
//! - [`model`]: the device message, code table, units, option specs and time rules that
//!   decode, ecg and normalize share (none of those three imports another).
//! - [`decode`]: one pure decoder per wire format → device messages.
//! - [`ecg`]: waveform samples → strips, R peaks (Pan–Tompkins) and heart rate.
//! - [`normalize`]: device messages → readings (codes, units, plausibility, times).
//! - [`queue`]: the durable store (sled behind a trait), per-sink pending and dead-letter.
//! - [`sink`]: encoders and the delivery loop (file outbox, FHIR).
//! - [`context`]: room patient contexts, held-reading decisions, audit types.
//! - [`admin`]: the loopback HTTP admin API.
//! - [`net`]: CIDR allow lists and the loopback test behind the transport-security checks.
//! - [`app`]: wires the stages, owns shutdown.
//! - [`demo`], [`simulate`]: simulated devices on pseudo-terminals.

pub mod admin;
pub mod alloc;
pub mod app;
pub mod audit;
pub mod cli;
pub mod config;
pub mod context;
pub mod decode;
pub mod demo;
pub mod ecg;
pub mod ingest;
pub mod model;
pub mod net;
pub mod normalize;
pub mod queue;
pub mod reading;
pub mod simulate;
pub mod sink;
pub mod source;
pub mod status;
pub mod tls;
