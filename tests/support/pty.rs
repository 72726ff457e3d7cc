//! A pseudo-terminal standing in for a serial device: the harness writes device bytes to
//! `master`; vitalsd opens `path`. Shared by the black-box tests and `benches/system.rs`.
//!
//! `path` is a link of this Pty's own (`<temp dir>/tty`) to the terminal (`tty`,
//! `/dev/pts/N`), removed with the Pty. The kernel hands a freed `/dev/pts/N` to the next
//! pseudo-terminal anyone opens; a daemon that outlives its test (a killed test run) and
//! keeps reopening its port would open that one and lock out the daemon it belongs to. Through
//! the link it finds nothing instead.
#![allow(dead_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

pub struct Pty {
    pub master: std::fs::File,
    slave: OwnedFd,
    /// What a config names: the link to [`tty`](Self::tty).
    pub path: PathBuf,
    /// The terminal itself (`/dev/pts/N`).
    pub tty: PathBuf,
    _link_dir: tempfile::TempDir,
}

impl Pty {
    pub fn new() -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = nix::sys::termios::tcgetattr(pty.slave.as_fd()).expect("tcgetattr");
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
            .expect("tcsetattr");
        let tty = nix::unistd::ttyname(pty.slave.as_fd()).expect("ttyname");
        let link_dir = tempfile::Builder::new()
            .prefix("vitalsd-test-pty")
            .tempdir()
            .expect("pty link dir");
        let path = link_dir.path().join("tty");
        std::os::unix::fs::symlink(&tty, &path).expect("pty link");
        // openpty does not set close-on-exec: without it every daemon the tests start would
        // inherit the device side's master, and an "unplugged" port would never hang up.
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            )
            .expect("FD_CLOEXEC");
        }
        Pty {
            master: std::fs::File::from(pty.master),
            slave: pty.slave,
            path,
            tty,
            _link_dir: link_dir,
        }
    }

    #[track_caller]
    pub fn send(&self, bytes: &[u8]) {
        let mut master = &self.master;
        master.write_all(bytes).expect("write to pty");
        master.flush().expect("flush pty");
    }

    /// Discards what the device wrote and nobody read. Unlike a real UART, a PTY keeps it;
    /// the wire would lose it while the daemon is dead.
    pub fn drop_unread(&self) {
        nix::sys::termios::tcflush(self.slave.as_fd(), nix::sys::termios::FlushArg::TCIFLUSH)
            .expect("tcflush");
    }
}
