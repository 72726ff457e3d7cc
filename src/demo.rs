//! `vitalsd demo`: the whole pipeline with no configuration and no hardware.
//!
//! Creates a pseudo-terminal per simulated device, plays each device's real wire format into
//! it and runs the daemon on those ports through the devices' real drivers: a wristband scanner
//! per room (`barcode`, scanned first), a Nonin pulse oximeter in ASCII mode (`nonin-ascii`),
//! and three Bluetooth devices behind serial BLE gateways (`ble-gatt`, one JSON envelope per
//! line carrying the characteristic's IEEE 11073 bytes): a blood-pressure cuff (0x2A35), a
//! thermometer (0x2A1C) and a scale (0x2A9D). Deliveries go to a FHIR NDJSON outbox in
//! `DIR/outbox`; every delivered reading is printed as one readable line ([`describe`]). No
//! config file, device or broker is needed.
//!
//! Each room has one simulated patient at a time ([`crate::simulate::patient`]): a baseline
//! height, weight, pulse, SpO2, temperature (and site) and blood pressure that all of the room's
//! devices measure with small jitter, so one patient's readings agree with each other and no
//! data-quality flag fires on a normal demo reading. A later wristband scan brings the next
//! patient in.
//!
//! A fourth room, exam-4, has a thermometer but no scanner: no wristband is ever scanned
//! there, so its readings are held until someone assigns them on the status page. The status
//! page (admin API) listens on `127.0.0.1:9750` (a free port when that one is taken) with a
//! fresh admin token in `DIR/admin.token`; both are printed. `--review` turns on
//! `[patient] review`: nothing is filed until confirmed on the page (docs/review.md).

mod devices;
mod directory;

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::{
    Config, DaemonConfig, DeviceConfig, DeviceTransport, FileSinkConfig, FlowControl, LogFormat,
    OutboxFormat, Parity, PatientConfig, PatientMode, SerialSettings, SinkConfig,
};
use crate::decode::Options;
use crate::reading::{DeviceId, Reading, SinkId};
use crate::simulate;
use devices::{simulators, DEVICES, WRISTBAND_SYSTEM};

/// The demo's patient lookup: its own in-process directory of made-up patients, asked through
/// the same FHIR client as a real record system, so every room shows its patient's name.
async fn directory_lookup(
    cancel: &CancellationToken,
) -> anyhow::Result<crate::config::LookupConfig> {
    let base_url = directory::start(WRISTBAND_SYSTEM, cancel.clone())
        .await
        .context("cannot start the demo's patient directory")?;
    let server = crate::config::FhirSinkConfig {
        id: SinkId::new("directory"),
        base_url,
        auth: crate::config::FhirAuth::None,
        ca_file: None,
        batch_size: 1,
        timeout: Duration::from_secs(5),
        concurrency: 1,
    };
    Ok(crate::config::LookupConfig {
        sink: server.id.clone(),
        unavailable: crate::config::LookupUnavailable::Hold,
        cache_ttl: Duration::from_secs(10 * 60),
        server: Some(server),
    })
}

/// A pseudo-terminal whose device side vitalsd opens like a serial port.
struct Pty {
    master: OwnedFd,
    /// Kept open so the device side never sees a hang-up before vitalsd opens it.
    _slave: OwnedFd,
    path: PathBuf,
}

fn open_pty() -> anyhow::Result<Pty> {
    let pty = nix::pty::openpty(None, None).context("cannot create a pseudo-terminal")?;
    let mut t = nix::sys::termios::tcgetattr(pty.slave.as_fd()).context("tcgetattr")?;
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
        .context("tcsetattr")?;
    let path = nix::unistd::ttyname(pty.slave.as_fd()).context("ttyname")?;
    Ok(Pty {
        master: pty.master,
        _slave: pty.slave,
        path,
    })
}

pub async fn run(for_: Option<Duration>, dir: &Path, review: bool) -> anyhow::Result<()> {
    let outbox = dir.join("outbox");
    let cancel = crate::cli::shutdown_on_signals()?;
    let sims = CancellationToken::new();
    let mut devices = Vec::new();
    let mut ptys = Vec::new();
    for ((i, d), mut sim) in DEVICES.iter().enumerate().zip(simulators()?) {
        let pty = open_pty()?;
        let mut master = tokio::fs::File::from_std(std::fs::File::from(pty.master.try_clone()?));
        let (every, token) = (d.every, sims.clone());
        tokio::spawn(async move {
            // Give the daemon a moment to open its ports.
            tokio::time::sleep(Duration::from_millis(300 + 700 * i as u64)).await;
            let _ = simulate::play(sim.as_mut(), &mut master, every, None, &token).await;
        });
        devices.push(DeviceConfig {
            id: DeviceId::new(d.id),
            driver: d.driver.to_string(),
            room: d.room.to_string(),
            transport: DeviceTransport::Serial(SerialSettings {
                path: pty.path.clone(),
                usb: None,
                baud: 9600,
                data_bits: 8,
                parity: Parity::None,
                stop_bits: 1,
                flow_control: FlowControl::None,
            }),
            options: d
                .options
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect::<Options>(),
            // As a config file would: spot-check devices are silent between patients.
            inactivity_timeout: crate::config::default_silence(d.driver),
        });
        ptys.push(pty);
    }
    // The demo's store is encrypted like a real one, with a key kept next to its data_dir.
    let key_file = dir.join("store.key");
    std::fs::create_dir_all(dir)?;
    crate::queue::cipher::ensure_key_file(&key_file)?;
    let admin = status_page(dir)?;
    let cfg = Config {
        daemon: DaemonConfig {
            data_dir: dir.join("data"),
            admin_listen: Some(admin.listen),
            admin_token_file: Some(admin.token_file.clone()),
            admin_hosts: Vec::new(),
            queue_max_bytes: 256 * 1024 * 1024,
            history_max_bytes: 64 * 1024 * 1024,
            cache_size: 8 * 1024 * 1024,
            // The simulated devices' clocks are the host's (whole seconds): a small tolerance
            // keeps each first reading's window after its room's scan (docs/patient-attribution.md).
            clock_skew_tolerance: Duration::from_millis(1500),
            shutdown_timeout: Duration::from_secs(5),
            audit_retention: Duration::from_secs(24 * 3600),
            store: crate::config::StoreConfig::default(),
            log_format: LogFormat::Text,
            store_key_file: crate::queue::cipher::KeySource::File(key_file),
        },
        patient: PatientConfig {
            mode: PatientMode::Hold,
            context_ttl: Duration::from_secs(20 * 60),
            hold_for: Duration::from_secs(24 * 3600),
            review,
            lookup: Some(directory_lookup(&cancel).await?),
        },
        mqtt: None,
        devices,
        sinks: vec![SinkConfig::File(FileSinkConfig {
            id: SinkId::new("outbox"),
            dir: outbox.clone(),
            format: OutboxFormat::Fhir,
            waveform: false,
        })],
        warnings: Vec::new(),
    };

    println!(
        "vitalsd demo: {} simulated devices on pseudo-terminals",
        DEVICES.len()
    );
    for (d, p) in DEVICES.iter().zip(&ptys) {
        println!(
            "  {:<20} {:<12} {:<7} {}",
            d.id,
            d.driver,
            d.room,
            p.path.display()
        );
    }
    println!("FHIR outbox: {}", outbox.display());
    admin.announce(review);
    match for_ {
        Some(t) => println!(
            "running for {} (Ctrl-C stops earlier)\n",
            humantime::format_duration(t)
        ),
        None => println!("running until Ctrl-C\n"),
    }

    let (tx, mut rx) = broadcast::channel::<crate::sink::DeliveryEvent>(1024);
    let printer = tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            match rx.recv().await {
                Ok(ev) => {
                    n += 1;
                    println!("{}", describe(&ev.reading));
                }
                Err(broadcast::error::RecvError::Lagged(k)) => n += k,
                Err(broadcast::error::RecvError::Closed) => return n,
            }
        }
    });
    if let Some(t) = for_ {
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(t).await;
            c.cancel();
        });
    }
    let hooks = crate::app::Hooks {
        deliveries: Some(tx),
        config_path: None,
    };
    let result = crate::app::run(cfg, cancel, hooks).await;
    sims.cancel();
    let delivered = printer.await.unwrap_or(0);
    result?;
    println!(
        "\n{delivered} reading{} delivered to {}",
        if delivered == 1 { "" } else { "s" },
        outbox.display()
    );
    Ok(())
}

/// The demo's status page: where it listens and how to sign in.
struct StatusPage {
    listen: std::net::SocketAddr,
    token_file: PathBuf,
    token: String,
}

/// The status page on `127.0.0.1:9750` (the daemon's default), or on a free port when that one
/// is taken, with a new random admin token in `DIR/admin.token` (0600) to sign in with.
fn status_page(dir: &Path) -> anyhow::Result<StatusPage> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let usual: std::net::SocketAddr = ([127, 0, 0, 1], 9750).into();
    let listen = match std::net::TcpListener::bind(usual) {
        Ok(l) => l.local_addr()?,
        Err(_) => std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("no free port for the status page")?
            .local_addr()?,
    };
    let token = hex::encode(crate::reading::mask::random_key().context("no random source")?);
    let token_file = dir.join("admin.token");
    let _ = std::fs::remove_file(&token_file);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&token_file)
        .with_context(|| format!("cannot write {}", token_file.display()))?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())?;
    Ok(StatusPage {
        listen,
        token_file,
        token,
    })
}

impl StatusPage {
    fn announce(&self, review: bool) {
        println!("Status page: http://{}/", self.listen);
        println!(
            "  sign in with the demo's admin token {} (also in {})",
            self.token,
            self.token_file.display()
        );
        println!("  exam-4 has no wristband scanner: its readings wait there to be assigned");
        if review {
            println!("  review mode: nothing is filed until you confirm it on the page");
        }
    }
}

/// One readable line per reading: time, room, masked patient, kind, value and unit, device.
pub fn describe(r: &Reading) -> String {
    let value = |name: &str| {
        r.values
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value)
            .map_or_else(|| "--".to_string(), |d| d.to_string())
    };
    let shown = if r.values.iter().any(|v| v.name == "systolic") {
        let unit = r.values.first().map(|v| v.unit.as_str()).unwrap_or("");
        format!(
            "{}/{} ({}) {unit}",
            value("systolic"),
            value("diastolic"),
            value("mean")
        )
    } else {
        r.values
            .iter()
            .map(|v| {
                let n = v.value.map_or_else(|| "--".into(), |d| d.to_string());
                format!("{n} {}", v.unit)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let t = r.observed_at.time();
    let flags = if r.flags.is_empty() {
        String::new()
    } else {
        let f: Vec<_> = r.flags.iter().map(|f| f.as_str()).collect();
        format!("  [{}]", f.join(" "))
    };
    format!(
        "{:02}:{:02}:{:02}  {:<8} #{:<12} {:<17} {:<22} {}{flags}",
        t.hour(),
        t.minute(),
        t.second(),
        r.room.as_deref().unwrap_or("-"),
        r.patient
            .as_ref()
            .map_or_else(|| "-".to_string(), |p| p.masked()),
        r.kind.as_str(),
        shown,
        r.device.id,
    )
}

#[cfg(test)]
#[path = "demo_tests.rs"]
mod tests;
