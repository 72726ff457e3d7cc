//! Serial source: one configured port, opened with its line settings, read until it fails.
//!
//! An unplugged USB adapter makes reads return EOF or an error (and a cable fault gives only
//! silence), so every EOF, error, and `inactivity_timeout` of silence closes the port, which is
//! reopened with capped exponential backoff, never in a hot loop. The source stops when its
//! cancellation token fires.
//!
//! The log tells state changes once: INFO when the port opens after being closed, INFO when
//! the device is lost (end of file, read or write error), INFO once when a device that was
//! sending falls silent. Reopening a port that stayed silent, or failing again to open one that
//! is missing, logs at DEBUG: a spot-check device idle between patients, or an unplugged one,
//! does not fill the journal. Spot-check drivers have no inactivity timeout by default
//! ([`crate::config::default_silence`]).
//!
//! A port given as `serial.usb` (the adapter's USB ids) is looked up again before every open
//! ([`super::usb`]): a replugged adapter may come back as another `ttyUSBn`. No match is the
//! same as a missing port (backoff, "not connected"); two matches are never guessed between.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_serial::{SerialPortBuilderExt, SerialStream};
use tokio_util::sync::CancellationToken;

use super::SourceEvent;
use crate::config::{FlowControl, Parity, SerialSettings};
use crate::net::backoff::Backoff;
use crate::reading::DeviceId;
use crate::status::DeviceStatus;

/// Reads from one serial device and reports [`SourceEvent`]s to `events`; writes whatever
/// arrives on `writes` to the device while it is connected.
pub struct SerialSource {
    pub device: DeviceId,
    pub settings: SerialSettings,
    /// `Duration::ZERO` disables the inactivity check.
    pub inactivity_timeout: Duration,
    /// Where the port in use is shown (the status page, `/api/status`).
    pub status: Option<Arc<DeviceStatus>>,
}

/// Why a connection ended.
enum End {
    Cancelled,
    /// End of file, a read or a write error: the device or its adapter is gone.
    Lost(String),
    /// Nothing arrived for the inactivity timeout; `sent` when bytes came before the silence.
    Silent {
        sent: bool,
    },
}

impl SerialSource {
    pub async fn run(
        self,
        events: mpsc::Sender<SourceEvent>,
        mut writes: mpsc::Receiver<Vec<u8>>,
        cancel: CancellationToken,
    ) {
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut last_error = String::new();
        // Whether "serial port open" was logged since the port was last lost.
        let mut open_logged = false;
        loop {
            let path = match self.port_path() {
                Ok(p) => p,
                Err(msg) => {
                    if msg != last_error {
                        tracing::warn!(device = %self.device, error = %msg, "serial port not found; retrying with backoff");
                        last_error = msg;
                    }
                    if !self.pause(&mut backoff, &cancel).await {
                        return;
                    }
                    continue;
                }
            };
            match open(&self.settings, &path) {
                Ok(port) => {
                    if open_logged {
                        tracing::debug!(device = %self.device, path = %path.display(), "serial port reopened");
                    } else {
                        tracing::info!(device = %self.device, path = %path.display(), "serial port open");
                        open_logged = true;
                    }
                    last_error.clear();
                    if events.send(SourceEvent::Connected).await.is_err() {
                        return;
                    }
                    let opened = tokio::time::Instant::now();
                    let end = self.connected(port, &events, &mut writes, &cancel).await;
                    let reason = match end {
                        End::Cancelled => return,
                        End::Lost(reason) => {
                            tracing::info!(device = %self.device, %reason, "serial device disconnected; reopening with backoff");
                            open_logged = false;
                            reason
                        }
                        End::Silent { sent } => {
                            let reason = format!(
                                "no data for {}",
                                humantime::format_duration(self.inactivity_timeout)
                            );
                            if sent {
                                tracing::info!(device = %self.device, %reason, "serial device fell silent; reopening the port until it sends again");
                            } else {
                                tracing::debug!(device = %self.device, %reason, "serial device still silent; port reopened");
                            }
                            reason
                        }
                    };
                    if events
                        .send(SourceEvent::Disconnected { reason })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if opened.elapsed() > Duration::from_secs(10) {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    if msg != last_error {
                        tracing::warn!(device = %self.device, path = %path.display(), error = %msg, "cannot open serial port; check the cable, the path and permissions (retrying with backoff)");
                        last_error = msg;
                    }
                    open_logged = false;
                }
            }
            if !self.pause(&mut backoff, &cancel).await {
                return;
            }
        }
    }

    /// The path to open now: the configured one, or where the `usb` ids resolve to (recorded
    /// in the status either way).
    fn port_path(&self) -> Result<PathBuf, String> {
        let path = match &self.settings.usb {
            None => self.settings.path.clone(),
            Some(want) => match super::usb::find(want) {
                Ok(p) => PathBuf::from(p),
                Err(why) => {
                    if let Some(st) = &self.status {
                        st.set_port(None);
                    }
                    return Err(why.to_string());
                }
            },
        };
        if let Some(st) = &self.status {
            st.set_port(Some(path.display().to_string()));
        }
        Ok(path)
    }

    /// Waits the next backoff delay; false when cancelled.
    async fn pause(&self, backoff: &mut Backoff, cancel: &CancellationToken) -> bool {
        let wait = backoff.next_delay();
        tokio::select! {
            () = cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    async fn connected(
        &self,
        mut port: SerialStream,
        events: &mpsc::Sender<SourceEvent>,
        writes: &mut mpsc::Receiver<Vec<u8>>,
        cancel: &CancellationToken,
    ) -> End {
        let mut buf = vec![0u8; 4096];
        let mut sent = false;
        let silence = if self.inactivity_timeout.is_zero() {
            Duration::from_secs(365 * 24 * 3600)
        } else {
            self.inactivity_timeout
        };
        loop {
            tokio::select! {
                () = cancel.cancelled() => return End::Cancelled,
                r = tokio::time::timeout(silence, port.read(&mut buf)) => match r {
                    Err(_) => return End::Silent { sent },
                    Ok(Ok(0)) => return End::Lost("end of file (device unplugged?)".into()),
                    Ok(Ok(n)) => {
                        sent = true;
                        let ev = SourceEvent::Bytes { data: buf[..n].to_vec(), received_at: super::now_utc_ms() };
                        tokio::select! {
                            () = cancel.cancelled() => return End::Cancelled,
                            sent = events.send(ev) => if sent.is_err() { return End::Cancelled },
                        }
                    }
                    Ok(Err(e)) => return End::Lost(format!("read error: {e}")),
                },
                Some(bytes) = writes.recv() => {
                    if let Err(e) = port.write_all(&bytes).await {
                        return End::Lost(format!("write error: {e}"));
                    }
                }
            }
        }
    }
}

fn open(s: &SerialSettings, path: &Path) -> Result<SerialStream, OpenError> {
    if !path.exists() {
        return Err(OpenError(format!("{} does not exist", path.display())));
    }
    let data_bits = match s.data_bits {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    };
    let parity = match s.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Odd => tokio_serial::Parity::Odd,
        Parity::Even => tokio_serial::Parity::Even,
    };
    let stop_bits = if s.stop_bits == 2 {
        tokio_serial::StopBits::Two
    } else {
        tokio_serial::StopBits::One
    };
    let flow = match s.flow_control {
        FlowControl::None => tokio_serial::FlowControl::None,
        FlowControl::Software => tokio_serial::FlowControl::Software,
        FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
    };
    tokio_serial::new(path.to_string_lossy(), s.baud)
        .data_bits(data_bits)
        .parity(parity)
        .stop_bits(stop_bits)
        .flow_control(flow)
        .timeout(Duration::from_secs(1))
        .open_native_async()
        .map_err(|e| OpenError(format!("{}: {e}", path.display())))
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OpenError(String);
