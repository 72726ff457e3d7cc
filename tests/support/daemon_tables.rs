//! The `[[device]]` and `[[sink]]` tables of the test daemon builder (daemon_builder.rs).
//!
//! Receives: a device's id, driver, room and transport (serial path, MQTT topic, MLLP listen
//! address, and more keys of that inline table) with its options and extra lines; a sink's id and kind (file, FHIR, MLLP, MQTT)
//! with extra lines and sub-tables.
//! Promises: `toml()` writes each as one TOML table the config validator accepts.

use std::path::{Path, PathBuf};

/// How a device is reached.
#[derive(Debug, Clone)]
enum Transport {
    Serial(PathBuf),
    Mqtt { topic: String, payload: String },
    Mllp { listen: String },
}

/// One `[[device]]`.
#[derive(Debug, Clone)]
pub struct Device {
    id: String,
    driver: String,
    room: String,
    transport: Transport,
    transport_keys: String,
    options: String,
    lines: Vec<String>,
}

impl Device {
    fn new(id: &str, driver: &str, room: &str, transport: Transport) -> Device {
        Device {
            id: id.into(),
            driver: driver.into(),
            room: room.into(),
            transport,
            transport_keys: String::new(),
            options: String::new(),
            lines: Vec::new(),
        }
    }

    /// A device on a serial port at `path`.
    pub fn serial(id: &str, driver: &str, room: &str, path: &Path) -> Device {
        Self::new(id, driver, room, Transport::Serial(path.to_path_buf()))
    }

    /// A device whose payloads arrive on an MQTT `topic` (`payload`: `binary`, `hex`, `json`).
    pub fn mqtt(id: &str, driver: &str, room: &str, topic: &str, payload: &str) -> Device {
        Self::new(
            id,
            driver,
            room,
            Transport::Mqtt {
                topic: topic.into(),
                payload: payload.into(),
            },
        )
    }

    /// A device that sends HL7 v2 over MLLP to a listener on `listen` (`127.0.0.1:0`: any port).
    pub fn mllp(id: &str, driver: &str, room: &str, listen: &str) -> Device {
        Self::new(
            id,
            driver,
            room,
            Transport::Mllp {
                listen: listen.into(),
            },
        )
    }

    /// More keys of the transport's inline table after its first (`path`, `topic`, `listen`),
    /// e.g. `allow = ["127.0.0.1/32"], max_connections_per_peer = 2` for an MLLP listener.
    pub fn transport_keys(mut self, keys: &str) -> Device {
        self.transport_keys = keys.into();
        self
    }

    /// The body of the inline `options` table, e.g. `report = "every"`.
    pub fn options(mut self, options: &str) -> Device {
        self.options = options.into();
        self
    }

    /// One more `key = value` line of the device's table.
    pub fn line(mut self, line: &str) -> Device {
        self.lines.push(line.into());
        self
    }

    pub(super) fn toml(&self) -> String {
        let mut s = format!(
            "[[device]]\nid = {:?}\ndriver = {:?}\nroom = {:?}\n",
            self.id, self.driver, self.room
        );
        let more = if self.transport_keys.is_empty() {
            String::new()
        } else {
            format!(", {}", self.transport_keys)
        };
        match &self.transport {
            Transport::Serial(path) => {
                s.push_str(&format!("serial = {{ path = {path:?}{more} }}\n"));
            }
            Transport::Mqtt { topic, payload } => s.push_str(&format!(
                "mqtt = {{ topic = {topic:?}, payload = {payload:?}{more} }}\n"
            )),
            Transport::Mllp { listen } => {
                s.push_str(&format!("mllp = {{ listen = {listen:?}{more} }}\n"));
            }
        }
        if !self.options.is_empty() {
            s.push_str(&format!("options = {{ {} }}\n", self.options));
        }
        push_lines(&mut s, &self.lines);
        s
    }
}

/// What kind of record system a sink forwards to.
#[derive(Debug, Clone)]
enum SinkKind {
    File { dir: PathBuf, format: String },
    Fhir { base_url: String },
    Mllp { addr: String },
    Mqtt { url: String, topic: String },
}

/// One `[[sink]]`.
#[derive(Debug, Clone)]
pub struct Sink {
    id: String,
    kind: SinkKind,
    lines: Vec<String>,
    tables: Vec<String>,
}

impl Sink {
    fn new(id: &str, kind: SinkKind) -> Sink {
        Sink {
            id: id.into(),
            kind,
            lines: Vec::new(),
            tables: Vec::new(),
        }
    }

    /// A file outbox in `dir`, lines in `format` (`reading`, `fhir`, `hl7`).
    pub fn file(id: &str, dir: &Path, format: &str) -> Sink {
        Self::new(
            id,
            SinkKind::File {
                dir: dir.to_path_buf(),
                format: format.into(),
            },
        )
    }

    /// A FHIR R4 server at `base_url`.
    pub fn fhir(id: &str, base_url: &str) -> Sink {
        Self::new(
            id,
            SinkKind::Fhir {
                base_url: base_url.into(),
            },
        )
    }

    /// An HL7 v2 receiver over MLLP at `addr` (`host:port`).
    pub fn mllp(id: &str, addr: &str) -> Sink {
        Self::new(id, SinkKind::Mllp { addr: addr.into() })
    }

    /// An MQTT broker at `url`, publishing on `topic`.
    pub fn mqtt(id: &str, url: &str, topic: &str) -> Sink {
        Self::new(
            id,
            SinkKind::Mqtt {
                url: url.into(),
                topic: topic.into(),
            },
        )
    }

    /// The directory of a file sink.
    pub fn file_dir(&self) -> Option<&Path> {
        match &self.kind {
            SinkKind::File { dir, .. } => Some(dir),
            _ => None,
        }
    }

    /// One more `key = value` line of the sink's table (`batch_size = 2`, `timeout = "5s"`).
    pub fn line(mut self, line: &str) -> Sink {
        self.lines.push(line.into());
        self
    }

    /// A sub-table of this sink, written after its lines (e.g. `[sink.oauth]\n...`).
    pub fn table(mut self, text: &str) -> Sink {
        self.tables.push(text.into());
        self
    }

    pub(super) fn toml(&self) -> String {
        let mut s = format!("[[sink]]\nid = {:?}\n", self.id);
        match &self.kind {
            SinkKind::File { dir, format } => s.push_str(&format!(
                "type = \"file\"\ndir = {dir:?}\nformat = {format:?}\n"
            )),
            SinkKind::Fhir { base_url } => {
                s.push_str(&format!("type = \"fhir\"\nbase_url = {base_url:?}\n"));
            }
            SinkKind::Mllp { addr } => {
                s.push_str(&format!("type = \"hl7-mllp\"\naddress = {addr:?}\n"))
            }
            SinkKind::Mqtt { url, topic } => s.push_str(&format!(
                "type = \"mqtt\"\nurl = {url:?}\ntopic = {topic:?}\n"
            )),
        }
        push_lines(&mut s, &self.lines);
        for t in &self.tables {
            s.push('\n');
            s.push_str(t.trim_end());
            s.push('\n');
        }
        s
    }
}

pub(super) fn push_lines(s: &mut String, lines: &[String]) {
    for l in lines {
        s.push_str(l.trim_end());
        s.push('\n');
    }
}
