//! IPv4 networks in CIDR notation: parse, contain, overlap. Pure arithmetic.

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 network (`addr` may have host bits set; [`Ipv4Net::network`] clears them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Net {
    /// An address in the network.
    pub addr: Ipv4Addr,
    /// Prefix length, 0..=32.
    pub prefix_len: u8,
}

impl Ipv4Net {
    /// Parse `a.b.c.d/len` or a bare address (a /32).
    pub fn parse(text: &str) -> Option<Self> {
        let (addr, len) = match text.split_once('/') {
            Some((addr, len)) => (addr, len.parse().ok()?),
            None => (text, 32),
        };
        if len > 32 {
            return None;
        }
        Some(Self {
            addr: addr.parse().ok()?,
            prefix_len: len,
        })
    }

    fn mask(&self) -> u32 {
        match self.prefix_len {
            0 => 0,
            n => u32::MAX << (32 - u32::from(n.min(32))),
        }
    }

    /// The network address.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Whether the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        let common = Ipv4Net {
            addr: self.addr,
            prefix_len: self.prefix_len.min(other.prefix_len),
        };
        common.contains(other.addr)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).expect("valid cidr")
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(net("10.77.0.9/24").to_string(), "10.77.0.0/24");
        assert_eq!(net("10.77.0.9").to_string(), "10.77.0.9/32");
        assert_eq!(net("0.0.0.0/0").broadcast(), Ipv4Addr::BROADCAST);
        assert!(Ipv4Net::parse("10.0.0.0/33").is_none());
        assert!(Ipv4Net::parse("default").is_none());
    }

    #[test]
    fn contains_and_broadcast() {
        let n = net("10.77.0.0/28");
        assert!(n.contains(Ipv4Addr::new(10, 77, 0, 15)));
        assert!(!n.contains(Ipv4Addr::new(10, 77, 0, 16)));
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 77, 0, 15));
    }

    #[test]
    fn overlap_is_symmetric() {
        let cases = [
            ("10.77.0.0/24", "10.77.0.128/25", true),
            ("10.77.0.0/24", "10.77.1.0/24", false),
            ("10.0.0.0/8", "10.77.0.0/24", true),
            ("10.77.0.5/32", "10.77.0.0/24", true),
            ("192.168.0.0/16", "10.77.0.0/24", false),
        ];
        for (a, b, want) in cases {
            assert_eq!(net(a).overlaps(&net(b)), want, "{a} vs {b}");
            assert_eq!(net(b).overlaps(&net(a)), want, "{b} vs {a}");
        }
    }
}
