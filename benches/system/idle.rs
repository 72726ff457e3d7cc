//! Idle cost: the daemon with N serial devices on pseudo-terminals that stay silent and a FHIR
//! sink with nothing to send. RSS after settling and CPU (utime + stime) over a window.

use std::path::Path;
use std::time::{Duration, Instant};

use tokio::runtime::Runtime;

use crate::listener::Listener;
use crate::proc::{self, Daemon, Pty};

pub struct Idle {
    pub devices: usize,
    pub rss: u64,
    pub hwm: u64,
    pub cpu_pct: f64,
    pub window: Duration,
}

pub fn run(rt: &Runtime, tmp: &Path, devices: usize, settle: Duration, window: Duration) -> Idle {
    let listener = rt.block_on(Listener::start());
    let ptys: Vec<Pty> = (0..devices).map(|_| Pty::new()).collect();
    let tables: String = ptys
        .iter()
        .enumerate()
        .map(|(i, p)| {
            proc::serial_device(
                &format!("exam{i}-oximeter"),
                "nonin-ascii",
                &format!("exam-{i}"),
                &p.path,
                "report = \"spot\"",
            )
        })
        .collect();
    let name = format!("idle{devices}");
    let cfg = tmp.join(format!("{name}.toml"));
    let text = proc::config(
        &tmp.join(format!("{name}-data")),
        &tables,
        &listener.base_url(),
        "",
    );
    std::fs::write(&cfg, text).expect("config");
    let mut d = Daemon::start(&cfg, &tmp.join(format!("{name}.log")));
    let (addr, _) = d.wait_ready(Duration::from_secs(30));
    // Every device's port open before the clock starts.
    proc::wait_connected(&addr, devices, Duration::from_secs(30));
    std::thread::sleep(settle);
    let (rss, hwm) = proc::rss(d.pid());
    let ticks0 = proc::cpu_ticks(d.pid());
    let t0 = Instant::now();
    std::thread::sleep(window);
    #[allow(clippy::cast_precision_loss)]
    let cpu_pct = (proc::cpu_ticks(d.pid()) - ticks0) as f64
        / proc::clock_ticks()
        / t0.elapsed().as_secs_f64()
        * 100.0;
    d.stop();
    drop(ptys);
    Idle {
        devices,
        rss,
        hwm,
        cpu_pct,
        window,
    }
}
