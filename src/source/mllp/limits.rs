//! The MLLP listener's connection limits and timeouts (a device's `mllp` table).

use std::time::Duration;

use crate::config::MllpListenSettings;

/// Connection limits and timeouts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MllpLimits {
    /// Connections open at once; further ones are closed right after accept.
    pub max_connections: usize,
    /// Connections open at once from one address.
    pub max_connections_per_peer: usize,
    /// Longest time from a message's first byte to its end block (monitors and interface engines
    /// send a whole message in well under a second).
    pub message_timeout: Duration,
    /// Time without a complete message after which a connection is closed (senders reconnect
    /// when they have data).
    pub idle_timeout: Duration,
    /// Longest wait for the peer to take an ACK.
    pub write_timeout: Duration,
}

impl Default for MllpLimits {
    fn default() -> Self {
        Self {
            max_connections: 64,
            max_connections_per_peer: 4,
            message_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
        }
    }
}

impl MllpLimits {
    /// The limits a device's `mllp` table sets.
    pub fn from_settings(s: &MllpListenSettings) -> Self {
        Self {
            max_connections: s.max_connections,
            max_connections_per_peer: s.max_connections_per_peer,
            message_timeout: s.message_timeout,
            idle_timeout: s.idle_timeout,
            ..Self::default()
        }
    }
}
