//! The net/protocol layer shared by sources and sinks (docs/ingest.md#the-net-layer): address
//! rules, the one reconnect [`backoff`], the MQTT broker connection ([`mqtt`]), HL7 MLLP
//! framing, the ER7 reader and ACK building and reading ([`hl7`]), and the FHIR server's HTTP
//! client ([`http`]) with its credentials ([`oauth`], [`jwt`]) that the FHIR sink and the
//! patient lookup share. Sources, sinks and the patient context import transports from here,
//! never from each other; this layer names none of them, nor the decoders.
//!
//! This file holds the address rules shared by the config checks and the MLLP listener
//! (docs/network-security.md).
//!
//! Receives CIDR text from the config (`allow = ["10.20.0.0/16", "192.168.1.7"]`) and host names
//! from URLs and `host:port` addresses. Promises: [`Cidr::contains`] compares IPv4 peers that
//! arrive as IPv4-mapped IPv6 (`::ffff:10.20.1.5`, as on a dual-stack socket) with IPv4 networks
//! and the reverse; [`is_loopback_host`] is true only for `localhost` and loopback addresses, so
//! any other name counts as "on the network".

pub mod backoff;
pub mod hl7;
pub mod http;
pub mod jwt;
pub mod mqtt;
pub mod oauth;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// One network: an address and a prefix length. The address is stored masked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// Why a CIDR text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("`{0}` is not an address or network like \"10.20.0.0/16\" or \"fd00::/8\"")]
    Syntax(String),
    #[error("`{0}`: the prefix length is longer than the address")]
    Prefix(String),
}

impl Cidr {
    /// Loopback networks: `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> [Cidr; 2] {
        [
            Cidr {
                addr: IpAddr::V4(Ipv4Addr::new(127, 0, 0, 0)),
                prefix: 8,
            },
            Cidr {
                addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }

    /// Whether `ip` lies in this network. IPv4-mapped IPv6 addresses are compared as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, unmap(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask32(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask128(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `v6/n`, or a bare address (a single host: /32 or /128). An IPv4-mapped
    /// IPv6 network is stored as its IPv4 network.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let syntax = || CidrError::Syntax(s.to_string());
        let addr: IpAddr = addr.parse().map_err(|_| syntax())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let mut prefix = match prefix {
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .map_err(|_| CidrError::Prefix(s.to_string()))?,
            Some(_) => return Err(syntax()),
            None => max,
        };
        if prefix > max {
            return Err(CidrError::Prefix(s.to_string()));
        }
        let mut addr = addr;
        if let IpAddr::V6(v6) = addr {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                addr = IpAddr::V4(v4);
                prefix -= 96;
            }
        }
        let addr = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(mask32(u32::from(a), prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(mask128(u128::from(a), prefix))),
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// An IPv4-mapped IPv6 address as IPv4; anything else unchanged.
pub fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn mask32(v: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask128(v: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(prefix)))
    }
}

/// Whether a host (a name, an IPv4 address or an IPv6 address with or without brackets) is
/// this machine: `localhost`, `*.localhost`, `127.0.0.0/8`, `::1` or a mapped loopback.
pub fn is_loopback_host(host: &str) -> bool {
    let h = host.trim().trim_matches(['[', ']']).trim_end_matches('.');
    let lower = h.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    h.parse::<IpAddr>().is_ok_and(|ip| unmap(ip).is_loopback())
}

/// The host of `host:port` (`[v6]:port` too); `None` without a port separator.
pub fn host_of_address(address: &str) -> Option<&str> {
    let (host, _) = address.rsplit_once(':')?;
    Some(host.trim_matches(['[', ']']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn net(s: &str) -> Cidr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_networks_match_by_prefix() {
        let n = net("10.20.0.0/16");
        assert!(n.contains(ip("10.20.0.1")));
        assert!(n.contains(ip("10.20.255.255")));
        assert!(!n.contains(ip("10.21.0.1")));
        assert!(!n.contains(ip("11.20.0.1")));
        // Host bits in the text are masked away.
        assert_eq!(net("192.168.1.77/24"), net("192.168.1.0/24"));
        assert_eq!(net("192.168.1.77/24").to_string(), "192.168.1.0/24");
        let host = net("192.168.1.7");
        assert!(host.contains(ip("192.168.1.7")));
        assert!(!host.contains(ip("192.168.1.8")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::1")));
        assert!(net("127.0.0.1/32").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1/32").contains(ip("127.0.0.2")));
    }

    #[test]
    fn ipv6_networks_match_by_prefix() {
        let n = net("fd00:1234::/32");
        assert!(n.contains(ip("fd00:1234::5")));
        assert!(n.contains(ip("fd00:1234:ffff::1")));
        assert!(!n.contains(ip("fd00:1235::5")));
        assert!(!n.contains(ip("10.0.0.1")));
        assert!(net("::1").contains(ip("::1")));
        assert!(!net("::1").contains(ip("::2")));
        assert!(net("fe80::/10").contains(ip("febf::1")));
        assert!(!net("fe80::/10").contains(ip("fec0::1")));
    }

    #[test]
    fn v4_mapped_v6_peers_and_networks_compare_as_ipv4() {
        let n = net("10.20.0.0/16");
        assert!(n.contains(ip("::ffff:10.20.3.4")));
        assert!(!n.contains(ip("::ffff:10.21.3.4")));
        let mapped = net("::ffff:192.168.1.0/120");
        assert_eq!(mapped, net("192.168.1.0/24"));
        assert!(mapped.contains(ip("192.168.1.9")));
        assert!(mapped.contains(ip("::ffff:192.168.1.9")));
        assert!(Cidr::loopback()
            .iter()
            .any(|c| c.contains(ip("::ffff:127.0.0.1"))));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0/8",
            "10.0.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/-1",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!(matches!(
            "10.0.0.0/40".parse::<Cidr>(),
            Err(CidrError::Prefix(_))
        ));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.9.9.9",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "ehr.clinic.example",
            "10.0.0.5",
            "0.0.0.0",
            "::",
            "fd00::1",
            "localhost.example.com",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert_eq!(host_of_address("engine:2575"), Some("engine"));
        assert_eq!(host_of_address("[::1]:2575"), Some("::1"));
        assert_eq!(host_of_address("engine"), None);
    }
}
