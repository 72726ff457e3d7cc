//! Sources: transports only. A source opens its device, reads bytes, reconnects with backoff
//! when the device goes away, and emits [`SourceEvent`]s stamped with the device id and the
//! time of receipt. It knows nothing of wire formats: framing and decoding happen downstream.
//! Bytes the host must send to the device (format select, polls) come back through the
//! source's writer channel.

pub mod mllp;
pub mod mqtt;
pub mod serial;
pub mod usb;

use time::OffsetDateTime;

/// What a source reports to its device pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceEvent {
    /// The port is open; the pipeline may send the decoder's connect bytes.
    Connected,
    /// Bytes as they arrived.
    Bytes {
        data: Vec<u8>,
        received_at: OffsetDateTime,
    },
    /// The port closed or failed, or stayed silent past the inactivity timeout; the source
    /// reopens it with backoff. Buffered partial frames must be dropped.
    Disconnected { reason: String },
}

/// The time of receipt, to the millisecond (finer digits only add noise to records).
pub fn now_utc_ms() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_millisecond(t.millisecond()).unwrap_or(t)
}
