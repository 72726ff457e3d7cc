//! A pseudo-terminal standing in for a serial device: the harness writes device bytes to
//! `master`; vitalsd opens `path`. Shared by the black-box tests and `benches/system.rs`.
#![allow(dead_code)]

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;

pub struct Pty {
    pub master: std::fs::File,
    slave: OwnedFd,
    pub path: PathBuf,
}

impl Pty {
    pub fn new() -> Pty {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        let mut t = nix::sys::termios::tcgetattr(pty.slave.as_fd()).expect("tcgetattr");
        nix::sys::termios::cfmakeraw(&mut t);
        nix::sys::termios::tcsetattr(pty.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t)
            .expect("tcsetattr");
        let path = nix::unistd::ttyname(pty.slave.as_fd()).expect("ttyname");
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
