//! `ble-gatt`: Bluetooth SIG health measurements forwarded by a BLE→MQTT gateway
//! (docs/devices/ble-gatt.md, docs/fhir-codes.md#worked-example-ble-bytes-to-fhir, docs/fhir-codes.md#missing-and-special-values).
//!
//! On a serial port (a gateway writing one value per line) see [`serial`]; otherwise it
//! receives one characteristic value per `feed` (one MQTT message), as raw bytes (`payload =
//! binary`, the default), hex or base64 text (whitespace ignored; each non-blank line is one
//! value), or the JSON envelope of §1.1 (`payload = json`: `chr` names the characteristic,
//! `data_hex` holds the value, `rx_time` is the gateway's receipt time; other envelope fields
//! are ignored; several envelopes may follow each other). The characteristic comes from the
//! option `characteristic`, else from the envelope's `chr` (when both are given they must
//! agree), else, over MQTT, from the topic's last level (`gw/exam3/AA:BB/2A1C`): the driver's
//! [`TopicInput`], told each message's topic through [`Decoder::set_topic`].
//!
//! Emits, per value, in the device's own units (normalize converts):
//! - 0x2A35 blood pressure → a `blood_pressure` message (`systolic`, `diastolic`, `mean` in
//!   `mm[Hg]` or `kPa`) and, when flagged, a `heart_rate` message with MDC 149546 (cuff pulse).
//! - 0x2A1C temperature → `body_temperature` (`Cel` or `[degF]`, FLOAT) with the site of the
//!   Temperature Type field.
//! - 0x2A37 heart rate → `heart_rate` (energy expended and RR intervals are checked for length
//!   but not forwarded: no reading kind carries them).
//! - 0x2A5E / 0x2A5F pulse oximetry → `spo2` (MDC 150456) and `heart_rate` (MDC 149530).
//! - 0x2A9D weight → `body_weight` (`kg` at 0.005 kg, scale 3, or `[lb_av]` at 0.01 lb) and,
//!   when flagged, `bmi` (`kg/m2`, 0.1). The height sent with the BMI is the user's profile
//!   height stored in the scale, not a measurement: it is never forwarded.
//!   0xFFFF in any of these fields is "measurement unsuccessful" → absent.
//! - 0x2A36 / 0x2A1E (intermediate cuff pressure / temperature) are checked and then reported as
//!   [`DecodeEvent::Idle`]: a measurement is in progress, nothing is forwarded (docs/devices/ble-gatt.md#0x2a35-blood-pressure).
//!
//! Rules shared by all characteristics:
//! - SFLOAT/FLOAT specials are `Measured::Absent` (docs/fhir-codes.md#missing-and-special-values); when every value of a payload is
//!   absent (a failed measurement) the result is `Idle { episode_end: true }`.
//! - A payload whose flags promise a field it lacks is rejected whole with
//!   [`DecodeError::Malformed`] naming the field. Bytes after the last promised field are
//!   accepted and ignored: newer versions of the specifications append fields.
//! - Time stamps become [`DeviceTime::Local`]; a "not known" date, or PLX flag bit 4 ("device
//!   clock is not set"), is [`DeviceTime::ClockNotSet`]. A payload without a time stamp takes
//!   the envelope's `rx_time` as an absolute device time, as the `json` driver does with
//!   `observed_at`; normalize still applies the clock-skew check.
//! - Status bits become `device:<what>` flags on every message of the payload (BP: body
//!   movement, cuff loose, irregular pulse, pulse-rate range, improper position; PLX: see
//!   [`PLX_MEASUREMENT_FLAGS`] and [`PLX_SENSOR_FLAGS`]; HR: `device:no_sensor_contact`); a
//!   user ID other than 0xFF becomes `device:user:<n>`.
//! - PLX readings marked demonstration (bit 10), testing (bit 11) or invalid (bit 15) data are
//!   dropped as [`DecodeError::Unsupported`] with the reason, so operators see why a reading
//!   never arrived; "measurement unavailable" (bit 13) is the device's "no reading":
//!   `Idle { episode_end: true }`.

use base64::Engine as _;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::registry::{DriverInfo, MqttPayload, OptionSpec, SerialDefaults, TopicInput, Transport};
use super::{DecodeError, DecodeEvent, Decoder, OptionError, Options};
use crate::reading::Kind;

mod serial;
mod values;

pub use serial::SerialLines;

use values::{chr_name, malformed};
pub use values::{
    decode_value, BLOOD_PRESSURE, HEART_RATE, INTERMEDIATE_CUFF_PRESSURE, INTERMEDIATE_TEMPERATURE,
    MAX_VALUE, PLX_CONTINUOUS, PLX_MEASUREMENT_FLAGS, PLX_SENSOR_FLAGS, PLX_SPOT_CHECK, SUPPORTED,
    TEMPERATURE, WEIGHT,
};

/// Largest text payload (hex, base64, JSON envelopes) accepted in one `feed`.
pub const MAX_TEXT: usize = 1024 * 1024;

/// How a payload carries the characteristic value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PayloadFormat {
    Binary,
    Hex,
    Base64,
    Json,
}

impl PayloadFormat {
    pub fn parse(v: &str) -> Result<Self, String> {
        match v.trim().to_ascii_lowercase().as_str() {
            "binary" => Ok(Self::Binary),
            "hex" => Ok(Self::Hex),
            "base64" => Ok(Self::Base64),
            "json" => Ok(Self::Json),
            _ => Err(format!("`{v}` is not one of: binary, hex, base64, json")),
        }
    }
}

/// Parses a characteristic UUID: `2A35`, `0x2a35`, or the 128-bit Bluetooth base form
/// `00002a35-0000-1000-8000-00805f9b34fb`. Only the characteristics in [`SUPPORTED`] pass.
pub fn parse_characteristic(v: &str) -> Result<u16, String> {
    let t = v.trim().to_ascii_lowercase();
    let short = t.strip_prefix("0x").unwrap_or(&t);
    let short = match short.strip_suffix("-0000-1000-8000-00805f9b34fb") {
        Some(head) => head.strip_prefix("0000").unwrap_or("?"),
        None => short,
    };
    let chr = (short.len() == 4)
        .then(|| u16::from_str_radix(short, 16).ok())
        .flatten()
        .ok_or_else(|| format!("`{v}` is not a 16-bit characteristic UUID like 2A35"))?;
    if chr_name(chr).is_none() {
        let names: Vec<String> = SUPPORTED.iter().map(|(c, _)| format!("{c:04X}")).collect();
        return Err(format!(
            "characteristic {chr:04X} is not supported; supported: {}",
            names.join(", ")
        ));
    }
    Ok(chr)
}

/// The characteristic an MQTT topic names in its last level (`gw/exam3/AA:BB/2A1C` → 0x2A1C);
/// `None` when that level is not a supported characteristic.
pub fn topic_characteristic(topic: &str) -> Option<u16> {
    let last = topic.rsplit('/').next()?;
    parse_characteristic(last).ok()
}

/// The `ble-gatt` decoder. See the module docs.
#[derive(Debug, Clone)]
pub struct BleGatt {
    characteristic: Option<u16>,
    /// The option `characteristic`: it wins over the topic.
    configured: Option<u16>,
    payload: PayloadFormat,
}

impl BleGatt {
    pub fn new(characteristic: Option<u16>, payload: PayloadFormat) -> Self {
        Self {
            characteristic,
            configured: characteristic,
            payload,
        }
    }

    /// Sets the characteristic for the following payloads (e.g. from an MQTT topic's last
    /// segment).
    pub fn set_characteristic(&mut self, chr: Option<u16>) {
        self.characteristic = chr;
    }

    pub fn characteristic(&self) -> Option<u16> {
        self.characteristic
    }

    fn value(&self, value: &[u8], out: &mut Vec<DecodeEvent>) {
        match self.characteristic {
            Some(chr) => decode_value(chr, value, None, out),
            None => out.push(DecodeEvent::Error(DecodeError::Unsupported(
                "ble-gatt: no characteristic: set the option `characteristic` or send the JSON \
                 envelope with `chr`"
                    .into(),
            ))),
        }
    }

    fn text_lines(&self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let mut any = false;
        for line in bytes.split(|b| *b == b'\n') {
            let clean: Vec<u8> = line
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            if clean.is_empty() {
                continue;
            }
            any = true;
            let decoded = match self.payload {
                PayloadFormat::Base64 => base64_engine()
                    .decode(&clean)
                    .map_err(|e| format!("payload is not base64: {e}")),
                _ => hex::decode(&clean).map_err(|e| format!("payload is not hex: {e}")),
            };
            match decoded {
                Ok(v) => self.value(&v, out),
                Err(e) => out.push(malformed(format!("ble-gatt: {e}"))),
            }
        }
        if !any {
            out.push(malformed("ble-gatt: empty payload: no flags byte".into()));
        }
    }

    fn envelopes(&self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let mut rest = bytes;
        loop {
            if rest.iter().all(u8::is_ascii_whitespace) {
                if rest.len() == bytes.len() {
                    out.push(DecodeEvent::Idle { episode_end: false });
                }
                return;
            }
            rest = rest.trim_ascii_start();
            let mut stream = serde_json::Deserializer::from_slice(rest).into_iter::<Envelope>();
            match stream.next() {
                Some(Ok(env)) => {
                    self.envelope(env, out);
                    rest = rest.get(stream.byte_offset()..).unwrap_or_default();
                }
                Some(Err(e)) => {
                    out.push(malformed(format!("ble-gatt: JSON envelope: {e}")));
                    // Resynchronise after the line that failed.
                    match rest.iter().position(|b| *b == b'\n') {
                        Some(nl) => rest = rest.get(nl + 1..).unwrap_or_default(),
                        None => return,
                    }
                }
                None => return,
            }
        }
    }

    fn envelope(&self, env: Envelope, out: &mut Vec<DecodeEvent>) {
        match self.open_envelope(env) {
            Ok((chr, value, rx)) => decode_value(chr, &value, rx, out),
            Err(e) => out.push(DecodeEvent::Error(e)),
        }
    }

    fn open_envelope(
        &self,
        env: Envelope,
    ) -> Result<(u16, Vec<u8>, Option<OffsetDateTime>), DecodeError> {
        let bad = |m: String| DecodeError::Malformed(format!("ble-gatt: JSON envelope: {m}"));
        let from_env = env
            .chr
            .as_deref()
            .map(parse_characteristic)
            .transpose()
            .map_err(|e| DecodeError::Unsupported(format!("ble-gatt: chr: {e}")))?;
        let chr = match (self.characteristic, from_env) {
            (Some(c), Some(e)) if c != e => {
                return Err(bad(format!(
                    "chr {e:04X} differs from the configured characteristic {c:04X}"
                )))
            }
            (Some(c), _) | (None, Some(c)) => c,
            (None, None) => return Err(bad("no `chr` and no configured characteristic".into())),
        };
        let hex_text = env
            .data_hex
            .ok_or_else(|| bad("missing `data_hex`".into()))?;
        let clean: String = hex_text.chars().filter(|c| !c.is_whitespace()).collect();
        if clean.len() > 2 * MAX_VALUE {
            return Err(DecodeError::Oversized(MAX_VALUE));
        }
        let value = hex::decode(&clean).map_err(|e| bad(format!("data_hex: {e}")))?;
        let rx = env
            .rx_time
            .map(|t| OffsetDateTime::parse(&t, &Rfc3339).map_err(|e| bad(format!("rx_time: {e}"))))
            .transpose()?;
        Ok((chr, value, rx))
    }
}

/// The envelope fields vitalsd reads; others (`gw`, `mac`, `svc`, `op`, `seq`) are ignored.
#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    chr: Option<String>,
    #[serde(default)]
    rx_time: Option<String>,
    #[serde(default)]
    data_hex: Option<String>,
}

/// Standard base64; padding optional (gateways differ).
fn base64_engine() -> base64::engine::GeneralPurpose {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
}

impl Decoder for BleGatt {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<DecodeEvent>) {
        let limit = match self.payload {
            PayloadFormat::Binary => MAX_VALUE,
            _ => MAX_TEXT,
        };
        if bytes.len() > limit {
            out.push(DecodeEvent::Error(DecodeError::Oversized(limit)));
            return;
        }
        match self.payload {
            PayloadFormat::Binary => self.value(bytes, out),
            PayloadFormat::Hex | PayloadFormat::Base64 => self.text_lines(bytes, out),
            PayloadFormat::Json => self.envelopes(bytes, out),
        }
    }

    /// Every `feed` is one whole payload: nothing is buffered.
    fn finish(&mut self, _out: &mut Vec<DecodeEvent>) {}

    /// Without the option `characteristic`, the topic's last level names the characteristic
    /// of the next payload; a JSON envelope names its own, so the topic is not read.
    fn set_topic(&mut self, topic: &str) {
        if self.configured.is_none() && self.payload != PayloadFormat::Json {
            self.characteristic = topic_characteristic(topic);
        }
    }
}

/// The options of an MQTT `ble-gatt` decoder: the source decodes hex and base64 payloads itself
/// (the decoder reads binary), `json` payloads are gateway envelopes; payloads passed as
/// received keep the option `payload` (text inside a binary payload).
fn mqtt_options(opts: &Options, payload: MqttPayload) -> Options {
    let mut opts = opts.clone();
    match payload {
        MqttPayload::Json => {
            opts.insert("payload".into(), "json".into());
        }
        MqttPayload::DecodedText => {
            opts.insert("payload".into(), "binary".into());
        }
        MqttPayload::AsReceived => {}
    }
    opts
}

fn check_characteristic(v: &str) -> Result<(), String> {
    parse_characteristic(v).map(|_| ())
}

fn check_payload(v: &str) -> Result<(), String> {
    PayloadFormat::parse(v).map(|_| ())
}

/// Builds the decoder from validated options.
pub fn build(transport: Transport, opts: &Options) -> Result<Box<dyn Decoder>, Vec<OptionError>> {
    let err = |key: &'static str| {
        move |reason| {
            vec![OptionError {
                key: key.into(),
                reason,
            }]
        }
    };
    let chr = opts
        .get("characteristic")
        .map(|v| parse_characteristic(v))
        .transpose()
        .map_err(err("characteristic"))?;
    let payload = opts
        .get("payload")
        .map(|v| PayloadFormat::parse(v))
        .transpose()
        .map_err(err("payload"))?;
    if transport == Transport::Serial {
        return Ok(Box::new(SerialLines::new(chr, payload)?));
    }
    Ok(Box::new(BleGatt::new(
        chr,
        payload.unwrap_or(PayloadFormat::Binary),
    )))
}

/// A serial gateway's line settings (ESP32 bridges and USB dongles default to 115200 8N1).
const SERIAL_115200_8N1: SerialDefaults = SerialDefaults {
    baud: 115_200,
    ..super::registry::SERIAL_9600_8N1
};

/// The `ble-gatt` driver entry for the registry.
pub static INFO: DriverInfo = DriverInfo {
    name: "ble-gatt",
    devices: "any Bluetooth SIG health device via a BLE→MQTT gateway: BP 0x2A35, thermometer \
              0x2A1C, HR 0x2A37, pulse-ox 0x2A5E/0x2A5F, scale 0x2A9D",
    transports: &[Transport::Mqtt, Transport::Serial],
    kinds: &[
        Kind::BloodPressure,
        Kind::HeartRate,
        Kind::BodyTemperature,
        Kind::Spo2,
        Kind::BodyWeight,
        Kind::Bmi,
    ],
    framing: "one characteristic value per MQTT message: binary, hex, base64 or JSON envelope; \
              serial gateways: one JSON envelope (or hex value) per line",
    experimental: false,
    continuous: false,
    patient_ids: crate::decode::registry::PatientIds::None,
    serial: Some(SERIAL_115200_8N1),
    mqtt_topic: Some(TopicInput {
        takes: "the characteristic: the topic's last level (gw/exam3/AA:BB/2A1C), unless the \
                option `characteristic` names one or the payload is a JSON envelope",
        options: mqtt_options,
    }),
    options: &[
        OptionSpec {
            key: "characteristic",
            help: "characteristic UUID (2A35, 0x2A1C, ...); default: the JSON envelope's `chr`",
            check: check_characteristic,
        },
        OptionSpec {
            key: "payload",
            help: "`binary` (default), `hex`, `base64` or `json` (the gateway envelope)",
            check: check_payload,
        },
    ],
    build,
};

#[cfg(test)]
#[path = "ble_gatt_tests.rs"]
mod tests;
