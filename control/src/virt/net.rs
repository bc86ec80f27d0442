//! The cluster network on the host: one Linux bridge per cluster (the host holds the subnet's
//! first address on it), and per board a network namespace joined to the bridge by a veth pair.
//! Partition and heal flip the host-side veth; a power cut downs it before killing the board.

use std::path::Path;

use serde::Deserialize;

use super::cidr::Ipv4Net;
use super::cmd::{run, CommandLine};
use super::error::{Target, VirtError};
use super::names::{board_mac, bridge_mac, bridge_name, host_veth_name, netns_name, BOARD_IFACE};
use super::spec::{VirtualBoardSpec, VirtualClusterSpec};

/// `IFF_UP` in `/sys/class/net/<dev>/flags`.
const IFF_UP: u32 = 0x1;

/// Whether a network interface of that name exists in the host's namespace.
pub(crate) fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Whether the interface exists and is administratively up.
pub(crate) fn link_is_up(name: &str) -> bool {
    std::fs::read_to_string(Path::new("/sys/class/net").join(name).join("flags"))
        .ok()
        .and_then(|text| parse_flags(&text))
        .is_some_and(|flags| flags & IFF_UP != 0)
}

/// Whether the named network namespace exists (`ip netns add` pins it under /run/netns).
pub(crate) fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Parse `/sys/class/net/<dev>/flags` (`0x1003`).
fn parse_flags(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().trim_start_matches("0x"), 16).ok()
}

/// Create the cluster bridge if missing (refusing a subnet routed elsewhere), give the host
/// its gateway address on it and bring it up. Idempotent.
pub(crate) fn ensure_bridge(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    let target = Target::cluster(&spec.cluster);
    let bridge = bridge_name(&spec.cluster);
    let args = ["-j", "-4", "route", "show", "table", "main"];
    let routes = run(&target, "ip", &args)?;
    let conflict = conflicting_route(&routes, &spec.net(), &bridge).map_err(|source| {
        VirtError::UnexpectedOutput {
            target: target.clone(),
            command: CommandLine::new("ip", args).display(),
            source,
        }
    })?;
    if let Some(route) = conflict {
        return Err(VirtError::SubnetInUse {
            target,
            subnet: spec.net().to_string(),
            route,
        });
    }
    if !link_exists(&bridge) {
        let mac = bridge_mac(&spec.cluster);
        run(
            &target,
            "ip",
            &["link", "add", &bridge, "address", &mac, "type", "bridge"],
        )?;
    }
    let gateway = format!("{}/{}", spec.gateway(), spec.prefix_len);
    run(
        &target,
        "ip",
        &["addr", "replace", &gateway, "dev", &bridge],
    )?;
    run(&target, "ip", &["link", "set", &bridge, "up"])?;
    Ok(())
}

/// The bridge `board` plugs into: its data center's, or the cluster's.
pub(crate) fn board_bridge(spec: &VirtualClusterSpec, board: &str) -> String {
    let dc = spec
        .boards
        .iter()
        .find(|b| b.name == board)
        .and_then(|b| b.dc.as_deref());
    match dc {
        Some(dc) if spec.remote_dcs().contains(&dc) => {
            super::names::dc_bridge_name(&spec.cluster, dc)
        }
        _ => bridge_name(&spec.cluster),
    }
}

/// Delete the cluster bridge if present.
pub(crate) fn remove_bridge(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    let bridge = bridge_name(&spec.cluster);
    if link_exists(&bridge) {
        run(
            &Target::cluster(&spec.cluster),
            "ip",
            &["link", "del", &bridge],
        )?;
    }
    Ok(())
}

/// Give the board a fresh network: whatever was left of the old one is deleted first (so no
/// socket of a previous boot survives), then a new namespace, a veth pair with the board's end
/// named `eth0` inside it (with the board's stable MAC), its address, loopback, a default route via the host, and the host
/// end enslaved to the bridge and brought up last.
pub(crate) fn create_board_link(
    spec: &VirtualClusterSpec,
    board: &VirtualBoardSpec,
) -> Result<(), VirtError> {
    remove_board_link(spec, &board.name)?;
    let target = Target::board(&spec.cluster, &board.name);
    let ns = netns_name(&spec.cluster, &board.name);
    let veth = host_veth_name(&spec.cluster, &board.name);
    let bridge = board_bridge(spec, &board.name);
    let address = format!("{}/{}", board.address, spec.prefix_len);
    let gateway = spec.gateway().to_string();
    let mac = board_mac(&spec.cluster, &board.name);
    run(&target, "ip", &["netns", "add", &ns])?;
    run(
        &target,
        "ip",
        &[
            "link",
            "add",
            &veth,
            "type",
            "veth",
            "peer",
            "name",
            BOARD_IFACE,
            "address",
            &mac,
            "netns",
            &ns,
        ],
    )?;
    run(&target, "ip", &["link", "set", &veth, "master", &bridge])?;
    let in_ns: [&[&str]; 4] = [
        &["addr", "add", &address, "dev", BOARD_IFACE],
        &["link", "set", BOARD_IFACE, "up"],
        &["link", "set", "lo", "up"],
        &["route", "add", "default", "via", &gateway],
    ];
    for args in in_ns {
        let full: Vec<&str> = ["-n", ns.as_str()]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        run(&target, "ip", &full)?;
    }
    run(&target, "ip", &["link", "set", &veth, "up"])?;
    Ok(())
}

/// Delete the board's veth pair and network namespace, whichever exist.
pub(crate) fn remove_board_link(spec: &VirtualClusterSpec, board: &str) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    super::link::unplumb_board(spec, board)?;
    let veth = host_veth_name(&spec.cluster, board);
    if link_exists(&veth) {
        // Deleting one end deletes the pair, even if the namespace lingers.
        run(&target, "ip", &["link", "del", &veth])?;
    }
    let ns = netns_name(&spec.cluster, board);
    if netns_exists(&ns) {
        run(&target, "ip", &["netns", "del", &ns])?;
    }
    Ok(())
}

/// Bring the host end of the board's veth up (`true`) or down (`false`).
pub(crate) fn set_board_link(
    spec: &VirtualClusterSpec,
    board: &str,
    up: bool,
) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    let veth = host_veth_name(&spec.cluster, board);
    if !link_exists(&veth) {
        return Err(VirtError::NotCreated {
            target,
            device: veth,
        });
    }
    let state = if up { "up" } else { "down" };
    run(&target, "ip", &["link", "set", &veth, state])?;
    Ok(())
}

/// Cut (`true`) or restore (`false`) the board's path to the host, where the control plane
/// runs, and nothing else: a blackhole route to the gateway address inside the board's
/// namespace drops every packet the board sends to the host (the host's SYNs arrive, its
/// answers never leave), while the other boards, on the same link, are reached as before.
pub(crate) fn set_control_plane_route(
    spec: &VirtualClusterSpec,
    board: &str,
    cut: bool,
) -> Result<(), VirtError> {
    let target = Target::board(&spec.cluster, board);
    let ns = netns_name(&spec.cluster, board);
    if !netns_exists(&ns) {
        return Err(VirtError::NotCreated { target, device: ns });
    }
    let gateway = format!("{}/32", spec.gateway());
    if cut {
        run(
            &target,
            "ip",
            &["-n", &ns, "route", "replace", "blackhole", &gateway],
        )?;
    } else if control_plane_cut(spec, board) {
        run(
            &target,
            "ip",
            &["-n", &ns, "route", "del", "blackhole", &gateway],
        )?;
    }
    Ok(())
}

/// Whether the board's namespace holds the blackhole route of [`set_control_plane_route`].
pub(crate) fn control_plane_cut(spec: &VirtualClusterSpec, board: &str) -> bool {
    let ns = netns_name(&spec.cluster, board);
    let gateway = spec.gateway().to_string();
    std::process::Command::new("ip")
        .args(["-n", &ns, "route", "show", "type", "blackhole", &gateway])
        .output()
        .is_ok_and(|out| out.status.success() && !out.stdout.trim_ascii().is_empty())
}

#[derive(Debug, Deserialize)]
struct Route {
    dst: String,
    dev: Option<String>,
}

/// The first route (as `dst dev X`) in `ip -j -4 route` output that overlaps `net` and does
/// not go through `own_dev`. The default route is not a conflict.
fn conflicting_route(
    ip_json: &str,
    net: &Ipv4Net,
    own_dev: &str,
) -> Result<Option<String>, serde_json::Error> {
    let routes: Vec<Route> = serde_json::from_str(ip_json)?;
    Ok(routes
        .into_iter()
        .filter(|r| r.dst != "default" && r.dev.as_deref() != Some(own_dev))
        .find(|r| Ipv4Net::parse(&r.dst).is_some_and(|dst| dst.overlaps(net)))
        .map(|r| match r.dev {
            Some(dev) => format!("{} dev {dev}", r.dst),
            None => r.dst,
        }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str = r#"[{"dst":"default","gateway":"192.0.2.1","dev":"eth0","flags":[]},
        {"dst":"192.0.2.0/24","dev":"eth0","protocol":"kernel","scope":"link","prefsrc":"192.0.2.2","flags":[]},
        {"dst":"10.77.0.0/24","dev":"lb0123abcd","protocol":"kernel","scope":"link","flags":[]},
        {"dst":"10.99.0.0/16","dev":"docker0","flags":[]},
        {"dst":"10.55.0.7","gateway":"192.0.2.9","dev":"eth0","flags":[]}]"#;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).expect("cidr")
    }

    #[test]
    fn own_bridge_and_default_route_are_not_conflicts() {
        assert_eq!(
            conflicting_route(ROUTES, &net("10.77.0.0/24"), "lb0123abcd").ok(),
            Some(None)
        );
        assert_eq!(
            conflicting_route(ROUTES, &net("10.78.0.0/24"), "lbx").ok(),
            Some(None)
        );
        assert!(conflicting_route("not json", &net("10.78.0.0/24"), "lbx").is_err());
    }

    #[test]
    fn foreign_routes_conflict() {
        assert_eq!(
            conflicting_route(ROUTES, &net("10.77.0.0/24"), "lbother00")
                .ok()
                .flatten(),
            Some("10.77.0.0/24 dev lb0123abcd".to_owned())
        );
        assert_eq!(
            conflicting_route(ROUTES, &net("10.99.3.0/24"), "lbx")
                .ok()
                .flatten(),
            Some("10.99.0.0/16 dev docker0".to_owned())
        );
        assert_eq!(
            conflicting_route(ROUTES, &net("10.55.0.0/24"), "lbx")
                .ok()
                .flatten(),
            Some("10.55.0.7 dev eth0".to_owned())
        );
    }

    #[test]
    fn sysfs_flags_parse() {
        assert_eq!(parse_flags("0x1003\n"), Some(0x1003));
        assert_eq!(parse_flags("0x1002"), Some(0x1002));
        assert_eq!(parse_flags("junk"), None);
    }
}
