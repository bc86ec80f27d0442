//! Names of a cluster's kernel objects. Interface names are limited to 15 bytes, so bridges
//! and veths get a short hash of (cluster, board); namespaces can use the readable names.
//! Pure functions: the same spec always maps to the same names, and different clusters or
//! boards (e.g. parallel tests) get different ones.

use sha2::{Digest, Sha256};

/// Name of the board's end of its veth, inside its network namespace.
pub const BOARD_IFACE: &str = "eth0";

/// The cluster's bridge on the host: `lb` + 8 hex digits.
pub fn bridge_name(cluster: &str) -> String {
    format!("lb{}", short_hash(&["bridge", cluster]))
}

/// The host-side end of a board's veth (a port of the bridge): `lv` + 8 hex digits.
pub fn host_veth_name(cluster: &str, board: &str) -> String {
    format!("lv{}", short_hash(&["veth", cluster, board]))
}

/// A shaped board link (`lab link`): the shaper's end of the extra veth pair, and the end
/// that is the bridge's port in place of the board's own veth.
pub fn link_veth_names(cluster: &str, board: &str) -> (String, String) {
    (
        format!("ls{}", short_hash(&["link-shaper", cluster, board])),
        format!("lt{}", short_hash(&["link-port", cluster, board])),
    )
}

/// A data center's own bridge (every data center but the control plane's).
pub fn dc_bridge_name(cluster: &str, dc: &str) -> String {
    format!("lx{}", short_hash(&["dc-bridge", cluster, dc]))
}

/// The WAN link between the control plane's bridge and data center `dc`'s: two veth pairs,
/// (main bridge port, shaper end) and (shaper end, dc bridge port), the shaper between.
pub fn wan_veth_names(cluster: &str, dc: &str) -> [String; 4] {
    ["a", "b", "c", "d"].map(|end| format!("lw{end}{}", short_hash(&["wan", end, cluster, dc])))
}

/// The board's network namespace, as listed by `ip netns list`. `_` cannot occur in cluster
/// or board names, so the mapping is unambiguous.
pub fn netns_name(cluster: &str, board: &str) -> String {
    format!("lab-{cluster}_{board}")
}

/// The MAC address of a board's `eth0`: stable across boots, as a real board's is, so
/// neighbours' ARP caches stay right after a restart. Locally administered unicast (`02:...`).
pub fn board_mac(cluster: &str, board: &str) -> String {
    local_mac(&["board-mac", cluster, board])
}

/// The MAC address of the cluster bridge. Set explicitly so it never changes as ports come and
/// go (a bridge otherwise takes the lowest MAC of its ports).
pub fn bridge_mac(cluster: &str) -> String {
    local_mac(&["bridge-mac", cluster])
}

fn local_mac(parts: &[&str]) -> String {
    let digest = digest(parts);
    let tail: Vec<String> = digest[..5].iter().map(|b| format!("{b:02x}")).collect();
    format!("02:{}", tail.join(":"))
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher.finalize().into()
}

/// First 4 bytes of SHA-256 over the NUL-separated parts, in hex.
fn short_hash(parts: &[&str]) -> String {
    hex::encode(&digest(parts)[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit() {
        let long = "a".repeat(63);
        for name in [
            bridge_name(&long),
            host_veth_name(&long, &long),
            BOARD_IFACE.to_owned(),
            link_veth_names(&long, &long).0,
            link_veth_names(&long, &long).1,
            dc_bridge_name(&long, &long),
        ]
        .into_iter()
        .chain(wan_veth_names(&long, &long))
        {
            assert!(name.len() <= 15, "{name}");
            assert!(name.bytes().all(|b| b.is_ascii_alphanumeric()), "{name}");
        }
    }

    #[test]
    fn names_are_stable_and_distinct() {
        assert_eq!(bridge_name("demo"), bridge_name("demo"));
        assert_ne!(bridge_name("demo"), bridge_name("demo2"));
        assert_ne!(host_veth_name("a", "b-c"), host_veth_name("a-b", "c"));
        assert_ne!(host_veth_name("c", "b1"), host_veth_name("c2", "b1"));
        assert_eq!(netns_name("demo", "pi-1"), "lab-demo_pi-1");
        assert_ne!(netns_name("a", "b-c"), netns_name("a-b", "c"));
    }

    #[test]
    fn macs_are_stable_local_unicast() {
        let mac = board_mac("demo", "pi-1");
        assert_eq!(mac, board_mac("demo", "pi-1"));
        assert_ne!(mac, board_mac("demo", "pi-2"));
        assert_ne!(bridge_mac("demo"), bridge_mac("demo2"));
        for mac in [mac, bridge_mac("demo")] {
            assert!(mac.starts_with("02:") && mac.len() == 17, "{mac}");
            assert_eq!(mac.split(':').count(), 6, "{mac}");
        }
    }

    #[test]
    fn names_are_pinned() {
        // Changing a derivation would orphan the kernel objects of clusters that are up: these
        // are known answers (sha256 over the NUL-separated parts, computed with sha256sum).
        assert_eq!(bridge_name("demo"), "lb4896b04b");
        assert_eq!(host_veth_name("demo", "pi-1"), "lv5516f776");
        assert_eq!(board_mac("demo", "pi-1"), "02:1a:8e:c0:9e:2a");
    }
}
