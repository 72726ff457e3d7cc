//! A typed builder for whole-daemon tests.
//!
//! Receives: a test's temp dir and what the daemon should have there: the admin listener (off,
//! on without a token, on with the [`TOKEN`](super::TOKEN) file), `[daemon]`, `[patient]` and
//! `[mqtt]` settings, devices (serial over a [`Pty`] the builder makes, MQTT topics, MLLP
//! listeners), sinks (file outbox, FHIR, MLLP, MQTT) and, for what has no setter, raw TOML.
//!
//! Promises: [`DaemonBuilder::toml`] is the config text (data dir `<dir>/data`, a 5 s shutdown
//! timeout unless set); [`DaemonBuilder::write`] writes it to `<dir>/vitalsd.toml` (and the
//! token file); [`DaemonBuilder::start`] starts the real binary with it, logging to
//! `<dir>/log`, and returns a [`Running`] handle that dereferences to the [`Daemon`] and knows
//! the config, the outbox, the token, the pseudo-terminals and the admin address. The configs
//! pass `vitalsd check-config` (tests/cli.rs checks every shape the builder writes).

use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::daemon_tables::push_lines;
pub use super::daemon_tables::{Device, Sink};
use super::{Daemon, Pty, TOKEN};

/// How the admin API listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// `admin_listen = ""`: no admin API.
    Off,
    /// On `127.0.0.1:0` with no token file: only the unprotected routes answer.
    Open,
    /// On `127.0.0.1:0` with a token file (mode 0600) holding [`TOKEN`] (or the text of
    /// [`DaemonBuilder::token`]).
    Token,
}

/// The config of a whole-daemon test, and the pseudo-terminals of its serial devices.
pub struct DaemonBuilder {
    dir: PathBuf,
    data: PathBuf,
    admin: Admin,
    admin_listen: String,
    token_dir: PathBuf,
    token: &'static str,
    shutdown_timeout: String,
    daemon_lines: Vec<String>,
    patient_mode: Option<String>,
    patient_lines: Vec<String>,
    mqtt: Option<(String, String)>,
    mqtt_lines: Vec<String>,
    devices: Vec<Device>,
    sinks: Vec<Sink>,
    tables: Vec<String>,
    ptys: Vec<(String, Pty)>,
}

impl DaemonBuilder {
    /// A daemon with its data in `<dir>/data`, no admin API, no devices and no sinks.
    pub fn new(dir: &Path) -> DaemonBuilder {
        DaemonBuilder {
            dir: dir.to_path_buf(),
            data: dir.join("data"),
            admin: Admin::Off,
            admin_listen: "127.0.0.1:0".into(),
            token_dir: dir.to_path_buf(),
            token: TOKEN,
            shutdown_timeout: "5s".into(),
            daemon_lines: Vec::new(),
            patient_mode: None,
            patient_lines: Vec::new(),
            mqtt: None,
            mqtt_lines: Vec::new(),
            devices: Vec::new(),
            sinks: Vec::new(),
            tables: Vec::new(),
            ptys: Vec::new(),
        }
    }

    /// Another data dir than `<dir>/data`.
    pub fn data_dir(mut self, data: &Path) -> Self {
        self.data = data.to_path_buf();
        self
    }

    /// How the admin API listens (default [`Admin::Off`]).
    pub fn admin(mut self, admin: Admin) -> Self {
        self.admin = admin;
        self
    }

    /// The admin API's address when it is on (default `127.0.0.1:0`).
    pub fn admin_listen(mut self, addr: &str) -> Self {
        self.admin_listen = addr.into();
        self
    }

    /// Where the token file goes (default: the test's dir), for tests that make that dir
    /// unwritable.
    pub fn token_dir(mut self, dir: &Path) -> Self {
        self.token_dir = dir.to_path_buf();
        self
    }

    /// The text of the token file with [`Admin::Token`] (default [`TOKEN`]), e.g. a wrong
    /// token for a second config that a CLI call reads.
    pub fn token(mut self, token: &'static str) -> Self {
        self.token = token;
        self
    }

    /// `shutdown_timeout` (default `5s`).
    pub fn shutdown_timeout(mut self, t: &str) -> Self {
        self.shutdown_timeout = t.into();
        self
    }

    /// One more `key = value` line of `[daemon]`.
    pub fn daemon(mut self, line: &str) -> Self {
        self.daemon_lines.push(line.into());
        self
    }

    /// `[patient] mode` (`location`, `hold`, `review`, ...).
    pub fn patient_mode(mut self, mode: &str) -> Self {
        self.patient_mode = Some(mode.into());
        self
    }

    /// One more `key = value` line of `[patient]`.
    pub fn patient(mut self, line: &str) -> Self {
        self.patient_lines.push(line.into());
        self
    }

    /// The `[mqtt]` broker of the MQTT devices.
    pub fn mqtt(mut self, url: &str, client_id: &str) -> Self {
        self.mqtt = Some((url.into(), client_id.into()));
        self
    }

    /// One more `key = value` line of `[mqtt]`.
    pub fn mqtt_line(mut self, line: &str) -> Self {
        self.mqtt_lines.push(line.into());
        self
    }

    pub fn device(mut self, device: Device) -> Self {
        self.devices.push(device);
        self
    }

    /// A serial device on a new pseudo-terminal, reached later with [`Running::pty`];
    /// `options` is the body of its `options` table (may be empty).
    pub fn serial_device(mut self, id: &str, driver: &str, room: &str, options: &str) -> Self {
        let pty = Pty::new();
        self.devices
            .push(Device::serial(id, driver, room, &pty.path).options(options));
        self.ptys.push((id.into(), pty));
        self
    }

    pub fn sink(mut self, sink: Sink) -> Self {
        self.sinks.push(sink);
        self
    }

    /// A file sink `outbox` in `<dir>/outbox` with lines in `format`.
    pub fn outbox(self, format: &str) -> Self {
        let dir = self.dir.join("outbox");
        self.sink(Sink::file("outbox", &dir, format))
    }

    /// Raw TOML appended after everything else (tables the builder has no setter for).
    pub fn toml_tail(mut self, text: &str) -> Self {
        self.tables.push(text.into());
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data dir (`<dir>/data` unless [`data_dir`](Self::data_dir) set another).
    pub fn data(&self) -> &Path {
        &self.data
    }

    /// The path of the token file (written by [`write`](Self::write) with [`Admin::Token`]).
    pub fn token_file(&self) -> PathBuf {
        self.token_dir.join("admin.token")
    }

    /// The config text.
    pub fn toml(&self) -> String {
        let listen = if self.admin == Admin::Off {
            ""
        } else {
            self.admin_listen.as_str()
        };
        let mut s = format!(
            "[daemon]\ndata_dir = {:?}\nadmin_listen = {listen:?}\nshutdown_timeout = {:?}\n",
            self.data, self.shutdown_timeout
        );
        if self.admin == Admin::Token {
            s.push_str(&format!("admin_token_file = {:?}\n", self.token_file()));
        }
        push_lines(&mut s, &self.daemon_lines);
        if self.patient_mode.is_some() || !self.patient_lines.is_empty() {
            s.push_str("\n[patient]\n");
            if let Some(mode) = &self.patient_mode {
                s.push_str(&format!("mode = {mode:?}\n"));
            }
            push_lines(&mut s, &self.patient_lines);
        }
        if let Some((url, client_id)) = &self.mqtt {
            s.push_str(&format!(
                "\n[mqtt]\nurl = {url:?}\nclient_id = {client_id:?}\n"
            ));
            push_lines(&mut s, &self.mqtt_lines);
        }
        for d in &self.devices {
            s.push('\n');
            s.push_str(&d.toml());
        }
        for k in &self.sinks {
            s.push('\n');
            s.push_str(&k.toml());
        }
        for t in &self.tables {
            s.push('\n');
            s.push_str(t.trim_end());
            s.push('\n');
        }
        s
    }

    /// Writes the config to `<dir>/vitalsd.toml` (and, with [`Admin::Token`], the token file);
    /// returns the config's path.
    pub fn write(&self) -> PathBuf {
        self.write_as("vitalsd.toml")
    }

    /// [`write`](Self::write) under another file name in the test's dir.
    pub fn write_as(&self, name: &str) -> PathBuf {
        if self.admin == Admin::Token {
            write_token_file(&self.token_file(), self.token);
        }
        let path = self.dir.join(name);
        std::fs::write(&path, self.toml()).expect("write the config");
        path
    }

    /// Writes the config and starts the daemon, logging to `<dir>/log`.
    pub fn start(self) -> Running {
        self.start_with_env(&[])
    }

    /// [`start`](Self::start) with more environment variables ([`Daemon::start_with_env`]).
    pub fn start_with_env(self, env: &[(&str, &str)]) -> Running {
        let config = self.write();
        let log = self.dir.join("log");
        let daemon = Daemon::start_with_env(&config, &log, env);
        let outbox = self
            .sinks
            .iter()
            .find_map(|s| s.file_dir().map(Path::to_path_buf));
        Running {
            daemon: Some(daemon),
            dir: self.dir,
            config,
            data: self.data,
            outbox,
            token: (self.admin == Admin::Token).then_some(self.token),
            ptys: self.ptys,
            admin: std::cell::OnceCell::new(),
        }
    }
}

/// Writes `token` to `path` with mode 0600.
pub fn write_token_file(path: &Path, token: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, format!("{token}\n")).expect("token file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// A daemon a [`DaemonBuilder`] started, and what a test needs to talk to it.
pub struct Running {
    daemon: Option<Daemon>,
    /// The test's dir (config, log, outbox, token file).
    pub dir: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    /// The first file sink's directory.
    pub outbox: Option<PathBuf>,
    /// The admin token, with [`Admin::Token`].
    pub token: Option<&'static str>,
    ptys: Vec<(String, Pty)>,
    admin: std::cell::OnceCell<String>,
}

impl Running {
    /// The pseudo-terminal of serial device `id`.
    #[track_caller]
    pub fn pty(&self, id: &str) -> &Pty {
        self.ptys
            .iter()
            .find(|(d, _)| d == id)
            .map(|(_, p)| p)
            .unwrap_or_else(|| panic!("no serial device {id} on a pseudo-terminal"))
    }

    /// The admin API's address (read from the log once).
    #[track_caller]
    pub fn admin(&self) -> String {
        self.admin
            .get_or_init(|| self.daemon().admin_addr())
            .clone()
    }

    /// The first file sink's directory.
    #[track_caller]
    pub fn outbox(&self) -> &Path {
        self.outbox.as_deref().expect("the config has a file sink")
    }

    #[track_caller]
    pub fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon was stopped")
    }

    /// SIGTERM; the exit status and how long the stop took.
    pub fn stop(&mut self) -> (ExitStatus, Duration) {
        self.admin = std::cell::OnceCell::new();
        self.daemon
            .take()
            .expect("the daemon was stopped already")
            .stop()
    }

    /// Kills the daemon (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        self.admin = std::cell::OnceCell::new();
        drop(self.daemon.take());
    }

    /// Starts the daemon again on the same config (after [`stop`](Self::stop) or
    /// [`kill`](Self::kill)), logging to `<dir>/<log>`.
    pub fn restart(&mut self, log: &str) {
        assert!(self.daemon.is_none(), "the daemon is still running");
        self.admin = std::cell::OnceCell::new();
        self.daemon = Some(Daemon::start(&self.config, &self.dir.join(log)));
    }
}

impl std::ops::Deref for Running {
    type Target = Daemon;
    fn deref(&self) -> &Daemon {
        self.daemon()
    }
}
