//! What `lab load` aims at: the cluster's load balancer (the first board of the inventory
//! whose planned roles include `lb`, `roles = "auto"` resolved as `lab plan` does) on port 80,
//! or any plain `http://` URL given with `--url`. The name is resolved once, before anything
//! is sent; every connection goes to that address.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use hyper::header::HeaderValue;
use lab_api::Role;
use ssh2_config::SshConfig;

use crate::inventory::Inventory;
use crate::plan::{planned_roles, topology::Topology};
use crate::ssh::target::agent_host;

/// Port the LB listens on.
pub const LB_PORT: u16 = 80;

/// A checked `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUrl {
    /// As the user reads it back.
    pub text: String,
    /// Host as written (brackets of an IPv6 literal removed).
    pub host: String,
    pub port: u16,
    /// `host[:port]`, as the `Host` header carries it.
    pub authority: String,
    /// Path and query, at least "/".
    pub path: String,
}

/// Where the requests go, resolved.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: TargetUrl,
    pub addr: SocketAddr,
    pub host_header: HeaderValue,
    /// Where to go when `addr` cannot be reached (other regions' edges), in order.
    pub alternates: Vec<SocketAddr>,
    /// Which of `addr` + `alternates` every connection uses now (shared by the workers).
    pub current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Target {
    /// The address new connections go to now.
    pub fn now(&self) -> SocketAddr {
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        match i {
            0 => self.addr,
            i => self.alternates.get(i - 1).copied().unwrap_or(self.addr),
        }
    }

    /// `addr` could not be reached: the next address, for every worker (once per failure,
    /// however many workers saw it).
    pub fn failed(&self, addr: SocketAddr) {
        let count = 1 + self.alternates.len();
        if count == 1 {
            return;
        }
        let i = self.current.load(std::sync::atomic::Ordering::Relaxed);
        if self.now() == addr {
            let _ = self.current.compare_exchange(
                i,
                (i + 1) % count,
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
    }

    /// The path of an app endpoint under the URL's path (`/api/posts` under `/` is itself).
    pub fn app_path(&self, endpoint: &str) -> String {
        let base = self.url.path.split('?').next().unwrap_or("/");
        format!("{}{endpoint}", base.trim_end_matches('/'))
    }
}

/// Check `text` is a plain-HTTP URL this client can load.
pub fn parse_url(text: &str) -> anyhow::Result<TargetUrl> {
    let uri: hyper::Uri = text
        .parse()
        .with_context(|| format!("`{text}` is not a URL (example: http://10.77.0.10/)"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("`{text}`: only http:// is supported (not {other}://)"),
        None => bail!("`{text}` has no scheme: write http://{text}"),
    }
    let Some(authority) = uri.authority() else {
        bail!("`{text}` names no host");
    };
    if authority.as_str().contains('@') {
        bail!("`{text}`: user names in the URL are not supported");
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    if host.is_empty() {
        bail!("`{text}` names no host");
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(TargetUrl {
        text: text.to_string(),
        host: host.to_string(),
        port: authority.port_u16().unwrap_or(80),
        authority: authority.as_str().to_string(),
        path,
    })
}

/// The URL of the cluster's load balancer: the lb boards' floating address when they share
/// one, else the first board (inventory order) that plays `lb`, at the host its agent is
/// reached on (an `~/.ssh/config` alias resolved to its `HostName`).
pub fn lb_url(inv: &Inventory, ssh_config: Option<&SshConfig>) -> anyhow::Result<String> {
    let roles = planned_roles(inv, &Topology::default());
    let board = inv
        .boards
        .iter()
        .find(|b| roles.get(&b.name).is_some_and(|r| r.contains(&Role::Lb)))
        .with_context(|| {
            format!(
                "no board of {} plays the lb role: give one `roles = [\"lb\"]`, or aim at a server with --url http://HOST/",
                inv.path.display()
            )
        })?;
    // Several lb boards sharing a floating address: that address, whichever board holds it.
    let floating = roles.values().any(|r| r.contains(&Role::Vip));
    let address = match (floating, inv.lb.floating_address) {
        (true, Some((address, _))) => address.to_string(),
        _ => agent_host(board, ssh_config),
    };
    let host = if address.contains(':') {
        format!("[{address}]")
    } else {
        address
    };
    Ok(format!("http://{host}:{LB_PORT}/"))
}

/// `http://<edge>:<port>/` of `region`'s CDN edge, and the other regions' edges after it (in
/// name order, wrapping), where a client goes when its own cannot be reached.
pub fn region_urls(inv: &Inventory, region: &str) -> anyhow::Result<(String, Vec<String>)> {
    let regions: Vec<(&String, &String)> = inv.cdn.regions.iter().collect();
    let Some(at) = regions.iter().position(|(name, _)| name.as_str() == region) else {
        anyhow::bail!(
            "no region `{region}` in {} (its [cdn.regions]: {})",
            inv.path.display(),
            if regions.is_empty() {
                "none".to_string()
            } else {
                regions
                    .iter()
                    .map(|(n, b)| format!("{n} = {b}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
    };
    let url = |board: &str| -> anyhow::Result<String> {
        let b = inv
            .board(board)
            .with_context(|| format!("no board `{board}`"))?;
        Ok(format!("http://{}:{}/", b.address, lab_api::spec::CDN_PORT))
    };
    let mut order = regions[at..].to_vec();
    order.extend_from_slice(&regions[..at]);
    let first = url(order[0].1)?;
    let rest = order[1..]
        .iter()
        .map(|(_, b)| url(b))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((first, rest))
}

/// Resolve the URL's host (once) to the address every connection will use.
pub async fn resolve(url: TargetUrl) -> anyhow::Result<Target> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
        .await
        .with_context(|| format!("cannot resolve `{}`", url.host))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .with_context(|| format!("`{}` resolves to no address", url.host))?;
    let host_header = HeaderValue::from_str(&url.authority)
        .with_context(|| format!("`{}` cannot be a Host header", url.authority))?;
    Ok(Target {
        url,
        addr,
        host_header,
        alternates: Vec::new(),
        current: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn urls_are_checked_and_split() {
        let u = parse_url("http://10.77.0.10").expect("plain");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("10.77.0.10", 80, "/")
        );
        let u = parse_url("http://127.0.0.1:8080/static/a.html?x=1").expect("with path");
        assert_eq!(u.port, 8080);
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path, "/static/a.html?x=1");
        let u = parse_url("http://[::1]:81/").expect("ipv6");
        assert_eq!(u.host, "::1");
        for bad in [
            "https://x/",
            "10.0.0.1",
            "ftp://x/",
            "http://",
            "http://u@x/",
            "not a url",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn app_paths_sit_under_the_url_path() {
        let t = Target {
            url: parse_url("http://h/prefix/").expect("url"),
            addr: "127.0.0.1:80".parse().expect("addr"),
            host_header: HeaderValue::from_static("h"),
            alternates: Vec::new(),
            current: Default::default(),
        };
        assert_eq!(t.app_path("/api/posts"), "/prefix/api/posts");
        let t = Target {
            url: parse_url("http://h").expect("url"),
            ..t
        };
        assert_eq!(t.app_path("/api/posts"), "/api/posts");
    }

    #[test]
    fn the_lb_is_the_first_board_that_plays_it_auto_included() {
        let text = r#"
[cluster]
name = "t"

[[board]]
name = "db-1"
address = "192.168.1.20"
roles = ["db"]

[[board]]
name = "front"
address = "192.168.1.10"
roles = ["lb", "app"]

[[board]]
name = "lb-2"
address = "192.168.1.11"
roles = ["lb"]
"#;
        let inv = crate::inventory::parse(Path::new("t.toml"), text).expect("inventory");
        assert_eq!(lb_url(&inv, None).expect("lb"), "http://192.168.1.10:80/");

        let auto = r#"
[cluster]
name = "t"

[[board]]
name = "a"
address = "192.168.1.30"
roles = "auto"
"#;
        let inv = crate::inventory::parse(Path::new("t.toml"), auto).expect("inventory");
        assert_eq!(
            lb_url(&inv, None).expect("auto lb"),
            "http://192.168.1.30:80/"
        );

        let none = r#"
[cluster]
name = "t"

[[board]]
name = "db-1"
address = "192.168.1.20"
roles = ["db"]
"#;
        let inv = crate::inventory::parse(Path::new("t.toml"), none).expect("inventory");
        let err = lb_url(&inv, None).expect_err("no lb").to_string();
        assert!(err.contains("--url"), "{err}");
    }
}
