//! The `vitalsd` command line: parses arguments and hands over to the library. Nothing else
//! lives here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use vitalsd::cli;

#[derive(Parser)]
#[command(
    name = "vitalsd",
    version,
    about = "Vital signs from exam-room devices into the patient's record"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        #[arg(long, short, default_value = vitalsd::config::DEFAULT_PATH, env = "VITALSD_CONFIG")]
        config: PathBuf,
    },
    /// Validate a config file; print every problem as `key.path (line N): why`.
    CheckConfig {
        #[arg(long, short, default_value = vitalsd::config::DEFAULT_PATH, env = "VITALSD_CONFIG")]
        config: PathBuf,
    },
    /// Zero-config demo: simulated devices on pseudo-terminals → full pipeline → FHIR outbox.
    Demo {
        /// Stop after this long (e.g. "30s"); without it, run until Ctrl-C.
        #[arg(long = "for", value_parser = parse_duration)]
        for_: Option<Duration>,
        /// Working directory for the store and the outbox.
        #[arg(long, default_value = "./vitalsd-demo")]
        dir: PathBuf,
        /// Review mode: readings wait on the status page until someone confirms them.
        #[arg(long)]
        review: bool,
    },
    /// Emit a device's real wire format to a serial port or an MQTT broker, for test rigs.
    Simulate {
        /// Driver whose device to imitate (see `vitalsd drivers`).
        driver: String,
        /// Serial port (or pseudo-terminal) to write to.
        #[arg(long, required_unless_present = "mqtt", conflicts_with = "mqtt")]
        serial: Option<PathBuf>,
        /// MQTT broker to publish to (mqtt://host:port or mqtts://...), with --topic.
        #[arg(long, requires = "topic")]
        mqtt: Option<String>,
        /// Topic to publish on; for ble-gatt the characteristic becomes its last segment
        /// (`gw/exam3/+` → `gw/exam3/2A35`).
        #[arg(long, requires = "mqtt")]
        topic: Option<String>,
        /// Time between measurements.
        #[arg(long, value_parser = parse_duration, default_value = "20s")]
        every: Duration,
        /// Stop after this many measurements (default: run until Ctrl-C).
        #[arg(long)]
        count: Option<u64>,
        /// ECG simulators (polar-ecg, openbci): heart rate in beats per minute, 30 to 240
        /// (default: one from 58 to 92).
        #[arg(long, value_parser = vitalsd::simulate::ecg::parse_hr)]
        hr: Option<u32>,
        /// ECG simulators: sample rate in Hz, 130, 250 or 500 (default: the device's, 130 for
        /// polar-ecg, 250 for openbci); the device's `sample_rate` option must match.
        #[arg(long, value_parser = vitalsd::simulate::ecg::parse_fs)]
        fs: Option<u32>,
    },
    /// Decode bytes as a device sends them; print canonical readings as JSON lines.
    Decode {
        driver: String,
        /// Driver option, as in the config's `options` table.
        #[arg(long = "opt", value_name = "K=V")]
        opts: Vec<String>,
        /// Input as hex (spaces allowed) instead of stdin.
        #[arg(long, conflicts_with = "file")]
        hex: Option<String>,
        /// Input file instead of stdin.
        #[arg(long)]
        file: Option<PathBuf>,
    },
    /// List the drivers: name, devices, transports, reading kinds, framing.
    Drivers,
    /// The audit trail: patient contexts, assignments, discards, deliveries (JSON lines).
    /// Read from the audit files (`<data_dir>/audit`) whether the daemon runs or not;
    /// `audit verify` checks their hash chain.
    Audit {
        #[command(subcommand)]
        action: Option<AuditAction>,
        /// Only entries from this time on: RFC 3339 (`2026-11-27T12:00:00Z`) or a duration
        /// back from now (`2h`).
        #[arg(long)]
        since: Option<String>,
        /// Only entries that name this room (patient contexts, held readings).
        #[arg(long)]
        room: Option<String>,
        #[arg(long, default_value_t = 10_000)]
        limit: usize,
        /// Oldest entries first (by default the newest come first: what just happened).
        #[arg(long, conflicts_with = "newest")]
        oldest: bool,
        /// Newest entries first (the default; accepted for scripts that name it).
        #[arg(long)]
        newest: bool,
        #[arg(long, short, default_value = vitalsd::config::DEFAULT_PATH, env = "VITALSD_CONFIG", global = true)]
        config: PathBuf,
    },
    /// Inspect and repair the queue: stats, dead, retry, purge-dead, held, quarantine, release
    /// and discard go through the admin API while the daemon runs and open the store when it
    /// is stopped; verify, compact and salvage need it stopped.
    Queue {
        #[command(subcommand)]
        action: QueueAction,
        #[arg(long, short, default_value = vitalsd::config::DEFAULT_PATH, env = "VITALSD_CONFIG", global = true)]
        config: PathBuf,
    },
    /// A terse summary of the running daemon (readiness, queue, held and quarantined readings,
    /// devices, sinks) from its admin API; exits 1 when it is not ready or does not answer.
    Status {
        #[arg(long, short, default_value = vitalsd::config::DEFAULT_PATH, env = "VITALSD_CONFIG")]
        config: PathBuf,
    },
    /// Print the shell completion script (e.g. `vitalsd completions bash >
    /// /usr/share/bash-completion/completions/vitalsd`).
    Completions {
        #[arg(value_enum)]
        shell: cli::Shell,
    },
    /// Print the man page (roff; `vitalsd man | man -l -`).
    Man,
}

#[derive(Subcommand)]
enum AuditAction {
    /// Check the hash chain of every audit file; names the first broken link (file, line)
    /// and exits 1 when there is one.
    Verify,
}

#[derive(Subcommand)]
enum QueueAction {
    /// Readings stored, pending and dead per sink, size on disk.
    Stats,
    /// Readings held without a patient, waiting for an MA (via the admin API while the daemon
    /// runs).
    Held {
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Dead-letter entries with their reason.
    Dead {
        #[arg(long)]
        sink: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Send dead-letter entries again: one by id, or all of a sink's. Never touches the
    /// quarantine (readings that failed a hard limit): see `queue quarantine`.
    Retry {
        id: Option<String>,
        #[arg(long)]
        sink: String,
    },
    /// Readings that failed a hard plausibility limit, kept until a person releases or
    /// discards them (id, device, room, kind, limit, when; patient masked).
    Quarantine {
        #[arg(long, default_value_t = 1000)]
        limit: usize,
    },
    /// Send one quarantined reading to every sink (still flagged rejected, as preliminary);
    /// audited with who and why.
    Release {
        id: String,
        /// Who decides (recorded in the audit trail).
        #[arg(long)]
        by: String,
        /// Why it may go out (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// The patient for a reading without one (required in `[patient] mode = "hold"`).
        #[arg(long, requires = "patient_system")]
        patient_id: Option<String>,
        #[arg(long, requires = "patient_id")]
        patient_system: Option<String>,
    },
    /// Remove one quarantined reading; audited with who and why.
    Discard {
        id: String,
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Delete dead-letter entries: one by id, or a sink's, or all.
    PurgeDead {
        id: Option<String>,
        #[arg(long)]
        sink: Option<String>,
    },
    /// Check every entry of a stopped daemon's store (on a copy): exit 0 clean, 1 problems,
    /// 2 unreadable.
    Verify {
        /// The data_dir to check, instead of the config's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Rewrite a stopped daemon's store into a fresh one, giving back the disk space a
    /// drained backlog took (sled reuses freed space but never returns it).
    Compact {
        /// The data_dir to compact, instead of the config's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Export every readable reading of a damaged store into a new data_dir; what cannot be
    /// read goes to NEW_DIR/quarantine.jsonl. The old store is only read.
    Salvage {
        /// A new or empty directory: becomes a data_dir to move into place.
        #[arg(long)]
        to: PathBuf,
        /// The damaged data_dir, instead of the config's.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("`{s}`: {e} (write it like \"30s\")"))
}

fn main() -> ExitCode {
    // The allocator setting the store needs (glibc's mmap threshold), before anything else
    // allocates much: the same for `vitalsd run` from systemd, a shell or a container.
    vitalsd::alloc::tune();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => cli::run(&config),
        Command::CheckConfig { config } => cli::check_config(&config),
        Command::Demo { for_, dir, review } => cli::demo(for_, &dir, review),
        Command::Simulate {
            driver,
            serial,
            mqtt,
            topic,
            every,
            count,
            hr,
            fs,
        } => match (
            serial,
            mqtt,
            topic,
            vitalsd::simulate::EcgSettings { hr, fs },
        ) {
            (_, Some(url), Some(topic), ecg) => {
                cli::simulate_mqtt(&driver, &url, &topic, every, count, ecg)
            }
            (Some(serial), _, _, ecg) => cli::simulate(&driver, &serial, every, count, ecg),
            _ => Err(anyhow::anyhow!(
                "give --serial PATH or --mqtt URL --topic T"
            )),
        },
        Command::Decode {
            driver,
            opts,
            hex,
            file,
        } => cli::decode(&driver, &opts, hex.as_deref(), file.as_deref()),
        Command::Drivers => cli::drivers(),
        Command::Status { config } => cli::status(&config),
        Command::Completions { shell } => cli::completions(Cli::command(), shell),
        Command::Man => cli::man(Cli::command()),
        Command::Audit {
            action: Some(AuditAction::Verify),
            config,
            ..
        } => cli::audit::verify(&config),
        Command::Audit {
            action: None,
            since,
            room,
            limit,
            oldest,
            config,
            ..
        } => cli::audit::list(&config, since.as_deref(), room, limit, !oldest),
        Command::Queue { action, config } => match action {
            QueueAction::Stats => cli::queue_stats(&config),
            QueueAction::Held { limit } => cli::queue_held(&config, limit),
            QueueAction::Dead { sink, limit } => cli::queue_dead(&config, sink.as_deref(), limit),
            QueueAction::Retry { id, sink } => cli::queue_retry(&config, &sink, id.as_deref()),
            QueueAction::Quarantine { limit } => cli::queue_quarantine(&config, limit),
            QueueAction::Release {
                id,
                by,
                reason,
                patient_id,
                patient_system,
            } => cli::queue_release(
                &config,
                &cli::ReleaseArgs {
                    id: &id,
                    by: &by,
                    reason: &reason,
                    patient_id: patient_id.as_deref(),
                    patient_system: patient_system.as_deref(),
                },
            ),
            QueueAction::Discard { id, by, reason } => {
                cli::queue_discard(&config, &id, &by, &reason)
            }
            QueueAction::PurgeDead { id, sink } => {
                cli::queue_purge_dead(&config, sink.as_deref(), id.as_deref())
            }
            QueueAction::Verify { data_dir } => cli::queue_verify(&config, data_dir.as_deref()),
            QueueAction::Compact { data_dir } => cli::queue_compact(&config, data_dir.as_deref()),
            QueueAction::Salvage { to, data_dir } => {
                cli::queue_salvage(&config, data_dir.as_deref(), &to)
            }
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vitalsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}
