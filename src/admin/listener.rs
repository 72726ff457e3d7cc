//! The admin listener: a cap on open connections and a deadline on each, so idle or slow
//! clients cannot hold the admin API (slowloris).
//!
//! Receives the bound TCP listener. Promises:
//! - at most [`MAX_CONNECTIONS`] connections are open at once; further ones wait in the
//!   kernel's backlog until one closes;
//! - a connection that has not received a response within [`IDLE_TIMEOUT`] of being accepted
//!   (or of its last response) while the server waits for its bytes is closed: idle keep-alive
//!   connections, requests whose head or body trickles in, and clients that connect and say
//!   nothing are all cut after that long.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The most admin connections open at once.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a connection may wait for the client's bytes without a response going out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// A [`TcpListener`] with the connection cap and the per-connection deadline.
pub struct Capped {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle: Duration,
}

impl Capped {
    pub fn new(inner: TcpListener, max: usize, idle: Duration) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max)),
            idle,
        }
    }
}

impl axum::serve::Listener for Capped {
    type Io = Guarded;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Guarded, SocketAddr) {
        // Only closed by dropping the semaphore, which this listener owns.
        let permit = loop {
            if let Ok(p) = self.permits.clone().acquire_owned().await {
                break p;
            }
        };
        loop {
            match self.inner.accept().await {
                Ok((io, addr)) => return (Guarded::new(io, permit, self.idle), addr),
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a moment.
                    tracing::debug!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// One accepted connection: holds its slot under the cap and enforces the deadline.
pub struct Guarded {
    io: TcpStream,
    _permit: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    idle: Duration,
}

impl Guarded {
    fn new(io: TcpStream, permit: OwnedSemaphorePermit, idle: Duration) -> Self {
        Self {
            io,
            _permit: permit,
            deadline: Box::pin(tokio::time::sleep(idle)),
            idle,
        }
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending => {
                if this.deadline.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "admin connection idle or too slow",
                    )))
                } else {
                    Poll::Pending
                }
            }
            done => done,
        }
    }
}

impl Guarded {
    fn wrote(&mut self, n: usize) {
        if n > 0 {
            let next = Instant::now() + self.idle;
            self.deadline.as_mut().reset(next);
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            this.wrote(n);
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            this.wrote(n);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::serve::Listener as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_silent_connection_is_cut_and_frees_its_slot() {
        let inner = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut l = Capped::new(inner, 1, Duration::from_millis(200));
        let addr = l.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut io, _) = l.accept().await;
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    // A silent client: the read fails once the deadline passes.
                    let r = io.read(&mut buf).await;
                    assert!(r.is_err(), "{r:?}");
                });
            }
        });
        let t0 = std::time::Instant::now();
        let _first = TcpStream::connect(addr).await.unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        // The second waits for the first's slot, then for its own deadline.
        let mut buf = [0u8; 1];
        let n = second.read(&mut buf).await.unwrap_or(0);
        assert_eq!(n, 0, "closed without data");
        assert!(
            t0.elapsed() >= Duration::from_millis(400),
            "{:?}",
            t0.elapsed()
        );
        let _ = second.write_all(b"x").await;
        server.await.unwrap();
    }
}
