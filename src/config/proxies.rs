//! `[syncserver] trusted_proxies`: the client addresses allowed to say, with
//! `X-Forwarded-Proto`, which scheme the original request used.
//!
//! We are a FastCGI responder: our peer is the web server, and `REMOTE_ADDR`
//! is the address of the HTTP client that web server talked to. A header such
//! as `X-Forwarded-Proto` is only worth believing when that client is a
//! reverse proxy of the operator's (say a TLS terminator in front of nginx);
//! from anyone else it is just client input. So the list names those proxies,
//! as single addresses or networks (`10.0.0.0/8`), and is empty by default.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A parsed, non-empty-or-empty list of addresses and networks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Net>);

/// One address with a prefix length (32 or 128 for a single address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    fn parse(text: &str) -> Result<Net, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{text:?} is not an IP address or network (write e.g. 10.1.2.3, 10.0.0.0/8 or \
                 2001:db8::/32; host names are not looked up)"
            )
        })?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{text:?}: the prefix length must be 0 to {max}")),
            },
        };
        Ok(Net { addr, prefix }.canonical())
    }

    /// IPv4-mapped IPv6 (`::ffff:10.1.2.3`, as dual-stack sockets report IPv4
    /// clients) is written as the IPv4 address it is.
    fn canonical(self) -> Net {
        match self.addr {
            IpAddr::V6(v6) if self.prefix >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => Net {
                    addr: IpAddr::V4(v4),
                    prefix: self.prefix - 96,
                },
                None => self,
            },
            _ => self,
        }
    }

    fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }

    /// The network address (host bits cleared), for display.
    fn network(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }
}

impl TrustedProxies {
    /// Parses entries separated by commas, spaces or newlines (an ini list).
    /// The error names the first bad entry.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|e| !e.is_empty())
            .map(Net::parse)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// No proxy is trusted (the default).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `addr` (the web server's `REMOTE_ADDR`) is one of the proxies.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(addr))
    }
}

impl fmt::Display for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            let full = if n.addr.is_ipv4() { 32 } else { 128 };
            if n.prefix == full {
                write!(f, "{}", n.addr)?;
            } else {
                write!(f, "{}/{}", n.network(), n.prefix)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_networks() {
        let t = TrustedProxies::parse("10.1.2.3, 192.168.7.9/16\n 2001:db8::/32 ::ffff:172.16.0.1")
            .unwrap();
        assert_eq!(
            t.to_string(),
            "10.1.2.3, 192.168.0.0/16, 2001:db8::/32, 172.16.0.1"
        );
        for yes in [
            "10.1.2.3",
            "::ffff:10.1.2.3",
            "192.168.255.1",
            "2001:db8:1::5",
            "172.16.0.1",
        ] {
            assert!(t.contains(ip(yes)), "{yes}");
        }
        for no in ["10.1.2.4", "192.169.0.1", "2001:db9::1", "::1", "127.0.0.1"] {
            assert!(!t.contains(ip(no)), "{no}");
        }
        let all = TrustedProxies::parse("0.0.0.0/0").unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }

    #[test]
    fn bad_entries_are_named() {
        for (text, bad) in [
            ("10.0.0.1, proxy.example", "proxy.example"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            ("::/129", "::/129"),
            ("10.0.0.0/x", "10.0.0.0/x"),
        ] {
            let err = TrustedProxies::parse(text).unwrap_err();
            assert!(err.contains(bad), "{text}: {err}");
        }
    }
}
