//! A real Mosquitto for the MQTT tests: its own config, persistence directory and free port,
//! killed when dropped. `scripts/test` installs Mosquitto when it is missing.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A Mosquitto process; killed when dropped.
pub struct Mosquitto {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    extra: String,
}

/// A TCP port nothing listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn bin() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "")
    }

    /// `extra` is appended to the config (more listeners, TLS files, `max_inflight_messages`).
    pub fn start_with(dir: &Path, extra: &str) -> Mosquitto {
        let mut m = Mosquitto {
            child: None,
            port: free_port(),
            dir: dir.to_path_buf(),
            extra: extra.to_string(),
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("broker dir");
        let conf = self.dir.join("mosquitto.conf");
        let text = format!(
            "listener {} 127.0.0.1\nallow_anonymous true\nuser root\npersistence true\n\
             persistence_location {}/\nmax_queued_messages 1000000\nlog_dest file {}\n{}\n",
            self.port,
            self.dir.display(),
            self.dir.join("broker.log").display(),
            self.extra
        );
        std::fs::write(&conf, text).expect("broker config");
        let child = Command::new(bin())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto is not installed: run scripts/test, which installs it");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < until, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// SIGTERM (Mosquitto saves its persistence file), wait, start again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(c.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = c.wait();
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
