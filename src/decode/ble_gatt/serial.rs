//! `ble-gatt` over a serial port: a gateway (an ESP32 BLE bridge, a USB dongle) that writes one
//! characteristic value per line instead of publishing it to MQTT.
//!
//! Each line (LF, a trailing CR dropped, at most [`MAX_LINE`] bytes) is one payload for the
//! MQTT decoder: a JSON envelope (`payload = json`, the default on serial) or hex text
//! (`payload = hex`). Blank lines are ignored. Raw `binary` cannot be framed by lines and is
//! refused when the driver is built; `base64` is accepted like hex.

use super::{BleGatt, PayloadFormat};
use crate::decode::framing::LineFramer;
use crate::decode::{DecodeEvent, Decoder, OptionError};

/// Longest line accepted: a JSON envelope with a 512-byte value fits many times over.
pub const MAX_LINE: usize = 8 * 1024;

/// The line-framed decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct SerialLines {
    framer: LineFramer,
    inner: BleGatt,
}

impl SerialLines {
    /// The serial decoder; `payload` defaults to `json`, `binary` is refused.
    pub fn new(
        characteristic: Option<u16>,
        payload: Option<PayloadFormat>,
    ) -> Result<Self, Vec<OptionError>> {
        let payload = payload.unwrap_or(PayloadFormat::Json);
        if payload == PayloadFormat::Binary {
            return Err(vec![OptionError {
                key: "payload".into(),
                reason: "`binary` cannot be read line by line on a serial port; use json or hex"
                    .into(),
            }]);
        }
        Ok(Self {
            framer: LineFramer::new(MAX_LINE),
            inner: BleGatt::new(characteristic, payload),
        })
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<DecodeEvent>) {
        if !line.iter().all(u8::is_ascii_whitespace) {
            self.inner.feed(line, out);
        }
    }
}

impl Decoder for SerialLines {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let mut lines = Vec::new();
        self.framer.feed(bytes, &mut lines);
        for l in lines {
            match l {
                Ok(line) => self.line(&line, out),
                Err(e) => out.push(DecodeEvent::Error(e)),
            }
        }
    }

    /// A last line without its LF (a gateway unplugged mid-line) is dropped: it may be cut.
    fn finish(&mut self, _out: &mut Vec<DecodeEvent>) {
        self.framer = LineFramer::new(MAX_LINE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::DeviceMessage;
    use crate::reading::Kind;

    fn messages(out: &[DecodeEvent]) -> Vec<&DeviceMessage> {
        out.iter()
            .filter_map(|e| match e {
                DecodeEvent::Message(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn json_envelopes_split_across_reads_decode_one_per_line() {
        // 0x2A35: flags 0x00 (mmHg, no time stamp), 120/80/93 as SFLOAT.
        let line = b"{\"chr\":\"2A35\",\"data_hex\":\"00 7800 5000 5D00\"}\r\n";
        let mut d = SerialLines::new(None, None).unwrap();
        let mut out = Vec::new();
        let (a, b) = line.split_at(17);
        d.feed(a, &mut out);
        assert!(out.is_empty(), "{out:?}");
        d.feed(b, &mut out);
        d.feed(b"\r\n", &mut out);
        d.feed(line, &mut out);
        let m = messages(&out);
        assert_eq!(m.len(), 2, "{out:?}");
        assert_eq!(m[0].kind, Kind::BloodPressure);
    }

    #[test]
    fn binary_payloads_are_refused_on_a_serial_port() {
        let e = SerialLines::new(None, Some(PayloadFormat::Binary)).unwrap_err();
        assert_eq!(e[0].key, "payload");
    }
}
