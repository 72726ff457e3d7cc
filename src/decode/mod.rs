//! Decode: a device's bytes → device messages. Pure, bounded, no I/O.
//!
//! Receives the raw bytes a transport delivered (a serial read, an MQTT payload, an MLLP frame)
//! and emits [`DecodeEvent`]s in order: device messages in the device's own units, or errors
//! with a reason. A decoder owns its framing state (a bounded buffer), resynchronises after
//! garbage, and never panics or grows without bound on any input. Mapping to LOINC/MDC codes,
//! UCUM canonical units, plausibility and ids is `normalize`'s job, not the decoder's.
//!
//! One file per wire format; [`registry`] lists the drivers and builds decoders from options.
//! The message types, option specs, code table and units decoders use come from
//! [`crate::model`] (re-exported here under their old paths); decode names no other stage.

pub mod barcode;
pub mod ble_gatt;
pub mod framing;
pub mod hl7v2;
pub mod ieee11073;
pub mod json;
pub mod lines;
pub mod masimo;
pub mod nonin_ascii;
pub mod nonin_binary;
pub mod openbci;
pub mod polar_ecg;
pub mod registry;
pub mod suntech;
pub mod suretemp;

pub use crate::model::message::{
    DecodeError, DecodeEvent, DeviceMessage, DeviceTime, DeviceValue, Measured,
};
pub use crate::model::options::{OptionError, Options};
pub use crate::model::samples;
// The redaction of parser messages is the model's (the store's rejected payloads use it too).
pub use crate::model::redact;
pub use registry::{build, driver_info, drivers, DriverInfo, MqttPayload, TopicInput, Transport};
pub use samples::{ChunkLead, SampleChunk};

/// A device's bytes → events. Implementations are pure state machines over a bounded buffer.
pub trait Decoder: Send {
    /// Feeds bytes exactly as they arrived; appends the events they complete to `out`.
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>);

    /// The stream ended (EOF, disconnect, end of `decode` input): emit or drop what is
    /// buffered. A trailing partial frame is reported as an error.
    fn finish(&mut self, out: &mut Vec<DecodeEvent>);

    /// Bytes the host must send right after the port opens (format select, clock set).
    fn on_connect(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// For host-polled devices: how often the host must ask for data while connected.
    fn poll_every(&self) -> Option<std::time::Duration> {
        None
    }

    /// The bytes of one poll, sent every [`Decoder::poll_every`] while connected.
    fn poll(&mut self) -> Vec<u8> {
        Vec::new()
    }

    /// The MQTT topic of the message the next [`Decoder::feed`] carries. The MQTT source calls
    /// it only for drivers whose registry entry declares [`registry::TopicInput`].
    fn set_topic(&mut self, _topic: &str) {}
}

/// Fuzzing entry point shared by the `fuzz/` targets: builds `driver` with `options` and feeds it
/// `data`, split into chunks whose sizes come from the data itself, then finishes the stream.
/// Panics only when a decoder misbehaves (which is what the fuzzer looks for).
pub fn fuzz_decoder(driver: &str, options: &[(&str, &str)], data: &[u8]) {
    let opts: Options = options
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    let Ok(mut decoder) = build(driver, &opts) else {
        panic!("fuzz target names an unknown driver or bad options: {driver}");
    };
    let mut out = Vec::new();
    let mut rest = data;
    while let Some((&n, tail)) = rest.split_first() {
        let take = usize::from(n % 64).min(tail.len()).max(1).min(tail.len());
        if take == 0 {
            break;
        }
        let (chunk, after) = tail.split_at(take);
        decoder.feed(chunk, &mut out);
        out.clear();
        rest = after;
    }
    decoder.finish(&mut out);
}
