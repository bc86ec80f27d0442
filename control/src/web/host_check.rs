//! Which `Host` a request to `lab serve` may name. The API is plain HTTP without
//! authentication, so a browser on this machine (or, with `--listen` beyond loopback, on the
//! network) can read it. A web page on another site cannot read it directly (same-origin
//! policy), but it can make its own DNS name resolve to this machine and read the API as if
//! it were its own origin (DNS rebinding). Such requests carry the page's name in `Host`;
//! answering only requests whose `Host` names the address served closes that hole.
//!
//! Answered: the exact address served; `localhost`, `127.0.0.1` and `[::1]` when bound to
//! loopback or to all interfaces; any address of this host when bound to all interfaces
//! (`0.0.0.0`, `[::]`); and the names given with `--allow-host` (or the name given to
//! `--listen`). Always with the port served, unless an allowed entry names its own port
//! (a reverse proxy). Everything else gets 421 Misdirected Request with a plain-text reason.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The hosts one `lab serve` answers for.
#[derive(Debug, Clone)]
pub struct AllowedHosts {
    served: SocketAddr,
    /// Extra names, lowercase, with the port they must come with (None: the port served).
    names: Vec<(String, Option<u16>)>,
}

/// `host` and `port` of a Host header value (or an `--allow-host` entry); the port is None
/// when absent. IPv6 literals keep their brackets off: `[::1]:80` gives `::1`.
fn split_host(value: &str) -> Option<(String, Option<u16>)> {
    let value = value.trim();
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        match after {
            "" => (ip, None),
            p => (ip, Some(p.strip_prefix(':')?)),
        }
    } else {
        match value.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (value, None),
        }
    };
    if host.is_empty() || host.contains(['/', '@', ' ']) {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok()?),
        None => None,
    };
    Some((host.to_ascii_lowercase(), port))
}

/// Whether `ip` is an address of this host: a socket can be bound to it. (With
/// `net.ipv4.ip_nonlocal_bind` set any address binds; an IP literal in `Host` cannot come
/// from DNS rebinding anyway, so that errs on the harmless side.)
pub fn is_local_ip(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

impl AllowedHosts {
    /// For a server bound to `served`, also answering `extra` names (`NAME` or `NAME:PORT`).
    /// Entries that are not host names are ignored (see [`AllowedHosts::parse_extra`]).
    pub fn new(served: SocketAddr, extra: &[String]) -> Self {
        Self {
            served,
            names: extra.iter().filter_map(|e| split_host(e)).collect(),
        }
    }

    /// Check `--allow-host` entries: each must be `NAME` or `NAME:PORT`.
    pub fn parse_extra(extra: &[String]) -> Result<(), String> {
        for e in extra {
            if split_host(e).is_none() {
                return Err(format!(
                    "--allow-host `{e}`: expected a host name or address, optionally with :PORT"
                ));
            }
        }
        Ok(())
    }

    fn bound_to_all(&self) -> bool {
        self.served.ip().is_unspecified()
    }

    fn loopback_reachable(&self) -> bool {
        self.served.ip().is_loopback() || self.bound_to_all()
    }

    /// Whether a request whose `Host` is `host` is answered; `Err` carries the reason for the
    /// refusal. `is_local` says whether an address belongs to this host.
    pub fn decide(
        &self,
        host: Option<&str>,
        is_local: impl Fn(IpAddr) -> bool,
    ) -> Result<(), String> {
        let Some(value) = host else {
            return Err(self.refusal("the request has no Host header"));
        };
        let Some((name, port)) = split_host(value) else {
            return Err(self.refusal(&format!("its Host header `{value}` is malformed")));
        };
        // Clients leave out the scheme's default port.
        let port_given = port.unwrap_or(80);
        let served_port = self.served.port();
        let extra_ok = self
            .names
            .iter()
            .any(|(n, p)| *n == name && p.unwrap_or(served_port) == port_given);
        let own_ok = port_given == served_port
            && match name.parse::<IpAddr>() {
                Ok(ip) => {
                    ip == self.served.ip()
                        || (ip.is_loopback() && self.loopback_reachable())
                        || (self.bound_to_all() && is_local(ip))
                }
                Err(_) => name == "localhost" && self.loopback_reachable(),
            };
        if extra_ok || own_ok {
            Ok(())
        } else {
            Err(self.refusal(&format!(
                "its Host `{value}` does not name this control plane"
            )))
        }
    }

    /// The hosts answered, for messages: `127.0.0.1:7480, localhost:7480, ...`.
    pub fn describe(&self) -> String {
        let port = self.served.port();
        let mut out = vec![self.served.to_string()];
        if self.bound_to_all() {
            out.push(format!("any address of this host with :{port}"));
        }
        if self.loopback_reachable() {
            for h in ["localhost", "127.0.0.1", "[::1]"] {
                let s = format!("{h}:{port}");
                if !out.contains(&s) {
                    out.push(s);
                }
            }
        }
        for (n, p) in &self.names {
            let n = if n.contains(':') {
                format!("[{n}]")
            } else {
                n.clone()
            };
            out.push(format!("{n}:{}", p.unwrap_or(port)));
        }
        out.join(", ")
    }

    fn refusal(&self, why: &str) -> String {
        format!(
            "lab serve refused this request: {why}.\n\
             It answers only requests addressed to {}, so that a web page elsewhere cannot \
             read the cluster through a browser (DNS rebinding).\n\
             To reach it under another name, start it with --allow-host NAME.\n",
            self.describe()
        )
    }
}

/// Axum middleware: answer 421 Misdirected Request unless the request's Host is allowed.
/// The authority of an absolute-form request target takes the place of `Host` (RFC 9112).
pub async fn check_host(
    State(allowed): State<Arc<AllowedHosts>>,
    req: Request,
    next: Next,
) -> Response {
    let host = match req.uri().authority() {
        Some(a) => Some(match a.port_u16() {
            Some(p) => format!("{}:{p}", a.host()),
            None => a.host().to_string(),
        }),
        None => req
            .headers()
            .get(header::HOST)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
    };
    match allowed.decide(host.as_deref(), is_local_ip) {
        Ok(()) => next.run(req).await,
        Err(reason) => (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            reason,
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Addresses this imaginary host holds.
    fn local(ip: IpAddr) -> bool {
        ip.is_loopback()
            || ip == "192.168.1.5".parse::<IpAddr>().expect("ip")
            || ip == "fd00::5".parse::<IpAddr>().expect("ip")
    }

    fn allowed(served: &str, extra: &[&str], host: Option<&str>) -> bool {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        AllowedHosts::new(served.parse().expect("addr"), &extra)
            .decide(host, local)
            .is_ok()
    }

    #[test]
    fn host_headers_by_bind_address() {
        // (bound to, Host, answered?)
        let table: &[(&str, Option<&str>, bool)] = &[
            // Loopback.
            ("127.0.0.1:7480", Some("127.0.0.1:7480"), true),
            ("127.0.0.1:7480", Some("localhost:7480"), true),
            ("127.0.0.1:7480", Some("LocalHost:7480"), true),
            ("127.0.0.1:7480", Some("[::1]:7480"), true),
            ("127.0.0.1:7480", Some("127.0.0.1:7481"), false),
            ("127.0.0.1:7480", Some("127.0.0.1"), false),
            ("127.0.0.1:7480", Some("evil.example:7480"), false),
            ("127.0.0.1:7480", Some("evil.example"), false),
            ("127.0.0.1:7480", Some("192.168.1.5:7480"), false),
            ("127.0.0.1:7480", Some("localhost.evil.example:7480"), false),
            ("127.0.0.1:7480", None, false),
            ("127.0.0.1:7480", Some(""), false),
            ("127.0.0.1:7480", Some("127.0.0.1:x"), false),
            ("127.0.0.1:7480", Some("user@127.0.0.1:7480"), false),
            ("[::1]:7480", Some("[::1]:7480"), true),
            ("[::1]:7480", Some("localhost:7480"), true),
            ("[::1]:7480", Some("::1:7480"), false),
            // Port 80: clients leave the port out.
            ("127.0.0.1:80", Some("127.0.0.1"), true),
            ("127.0.0.1:80", Some("localhost"), true),
            ("127.0.0.1:80", Some("evil.example"), false),
            // All interfaces: this host's own addresses, loopback names; nothing else.
            ("0.0.0.0:7480", Some("0.0.0.0:7480"), true),
            ("0.0.0.0:7480", Some("192.168.1.5:7480"), true),
            ("0.0.0.0:7480", Some("127.0.0.1:7480"), true),
            ("0.0.0.0:7480", Some("localhost:7480"), true),
            ("0.0.0.0:7480", Some("192.168.1.6:7480"), false),
            ("0.0.0.0:7480", Some("192.168.1.5:9999"), false),
            ("0.0.0.0:7480", Some("evil.example:7480"), false),
            ("0.0.0.0:7480", Some("mybox.lan:7480"), false),
            ("[::]:7480", Some("[fd00::5]:7480"), true),
            ("[::]:7480", Some("192.168.1.5:7480"), true),
            ("[::]:7480", Some("[fd00::6]:7480"), false),
            // One interface: that address only.
            ("192.168.1.5:7480", Some("192.168.1.5:7480"), true),
            ("192.168.1.5:7480", Some("localhost:7480"), false),
            ("192.168.1.5:7480", Some("127.0.0.1:7480"), false),
            ("192.168.1.5:7480", Some("evil.example:7480"), false),
        ];
        for (served, host, want) in table {
            assert_eq!(
                allowed(served, &[], *host),
                *want,
                "bound to {served}, Host {host:?}"
            );
        }
    }

    #[test]
    fn allow_host_adds_names() {
        let extra = ["MyBox.lan", "proxy.example:443"];
        assert!(allowed("0.0.0.0:7480", &extra, Some("mybox.lan:7480")));
        assert!(allowed("0.0.0.0:7480", &extra, Some("MYBOX.LAN:7480")));
        assert!(!allowed("0.0.0.0:7480", &extra, Some("mybox.lan:7481")));
        assert!(allowed("0.0.0.0:7480", &extra, Some("proxy.example:443")));
        assert!(!allowed("0.0.0.0:7480", &extra, Some("proxy.example:7480")));
        assert!(!allowed("0.0.0.0:7480", &extra, Some("evil.example:7480")));
        assert!(AllowedHosts::parse_extra(&["a b".to_string()]).is_err());
        assert!(AllowedHosts::parse_extra(&["mybox.lan:7480".to_string()]).is_ok());
    }

    #[test]
    fn refusal_names_the_host_and_the_fix() {
        let a = AllowedHosts::new("127.0.0.1:7480".parse().expect("addr"), &[]);
        let why = a
            .decide(Some("evil.example:7480"), local)
            .expect_err("refused");
        assert!(why.contains("`evil.example:7480`"), "{why}");
        assert!(why.contains("127.0.0.1:7480, localhost:7480"), "{why}");
        assert!(why.contains("--allow-host NAME"), "{why}");
    }

    #[test]
    fn this_hosts_loopback_is_local() {
        assert!(is_local_ip("127.0.0.1".parse().expect("ip")));
        // TEST-NET-3: documentation addresses, on no real interface.
        assert!(!is_local_ip("203.0.113.77".parse().expect("ip")));
    }
}
