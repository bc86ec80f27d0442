//! Data centers of a virtual cluster (`dc = "west"` on boards, `[virtual] wan_delay`): the
//! control plane's data center (the first board's) keeps the cluster bridge; every other one
//! gets its own bridge, joined to the main one by a WAN link with a shaper that adds half of
//! `wan_delay` each way (a round trip across is `wan_delay` slower). Two data centers that
//! are not the control plane's are two WAN links apart.
//!
//! `lab partition --dc D` downs D's WAN port on the main bridge (the control plane's data
//! center: every WAN port), so D's boards still reach each other but nothing across.
//! Each WAN link's shaper runs from `<state>/virtual/.dc/<dc>/`.

use std::fs;
use std::path::PathBuf;

use super::{offloads_off, quiet_shaper_end, start_shaper, stop_shaper, LinkProfile};
use crate::virt::cmd::run;
use crate::virt::error::{Target, VirtError};
use crate::virt::names::{bridge_name, dc_bridge_name, wan_veth_names};
use crate::virt::net::{link_exists, link_is_up};
use crate::virt::spec::VirtualClusterSpec;

/// Where a data center's WAN shaper keeps its PID and log.
pub fn dc_dir(spec: &VirtualClusterSpec, dc: &str) -> PathBuf {
    spec.virtual_dir().join(".dc").join(dc)
}

/// Create what is missing of every remote data center (bridge, WAN pairs) and start each WAN
/// shaper afresh (a changed `wan_delay` applies). Idempotent.
pub(crate) fn ensure(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    let profile = LinkProfile {
        delay: spec.wan_delay,
        ..LinkProfile::default()
    };
    for dc in spec.remote_dcs() {
        let target = Target::cluster(&spec.cluster);
        let bridge = dc_bridge_name(&spec.cluster, dc);
        let [main_port, main_end, dc_end, dc_port] = wan_veth_names(&spec.cluster, dc);
        if !link_exists(&bridge) {
            run(&target, "ip", &["link", "add", &bridge, "type", "bridge"])?;
        }
        for (port, end) in [(&main_port, &main_end), (&dc_port, &dc_end)] {
            if !link_exists(port) {
                run(
                    &target,
                    "ip",
                    &["link", "add", port, "type", "veth", "peer", "name", end],
                )?;
            }
            quiet_shaper_end(&target, end)?;
            offloads_off(&target, None, port)?;
        }
        run(
            &target,
            "ip",
            &[
                "link",
                "set",
                &main_port,
                "master",
                &bridge_name(&spec.cluster),
            ],
        )?;
        run(&target, "ip", &["link", "set", &dc_port, "master", &bridge])?;
        for device in [&bridge, &main_end, &dc_end, &dc_port] {
            run(&target, "ip", &["link", "set", device, "up"])?;
        }
        // A partitioned data center stays cut across `lab up`.
        if !dc_dir(spec, dc).join(CUT_MARK).exists() {
            run(&target, "ip", &["link", "set", &main_port, "up"])?;
        }
        start_shaper(
            spec,
            &target,
            &dc_dir(spec, dc),
            (&main_end, &dc_end),
            &profile.per_direction(),
        )?;
    }
    Ok(())
}

/// Marks a data center cut by `lab partition --dc` (so `lab up` does not heal it).
const CUT_MARK: &str = "cut";

/// Cut (`true`) or restore the WAN links of `dc`: its own, or every one when `dc` is the
/// control plane's data center.
pub(crate) fn set_cut(spec: &VirtualClusterSpec, dc: &str, cut: bool) -> Result<(), VirtError> {
    let target = Target::cluster(&spec.cluster);
    if !spec.dcs().contains(&dc) {
        return Err(VirtError::InvalidSpec {
            target,
            reason: format!(
                "no data center `{dc}` (the inventory has: {})",
                spec.dcs().join(", ")
            ),
        });
    }
    for d in wan_links_of(spec, dc) {
        let [main_port, ..] = wan_veth_names(&spec.cluster, d);
        if !link_exists(&main_port) {
            return Err(VirtError::NotCreated {
                target,
                device: main_port,
            });
        }
        let dir = dc_dir(spec, d);
        let mark = dir.join(CUT_MARK);
        if cut {
            fs::create_dir_all(&dir).map_err(VirtError::io(&target, "create", &dir))?;
            fs::write(&mark, "").map_err(VirtError::io(&target, "write", &mark))?;
        } else {
            crate::virt::remove_if_present(&target, &mark, |p| fs::remove_file(p))?;
        }
        let state = if cut { "down" } else { "up" };
        run(&target, "ip", &["link", "set", &main_port, state])?;
    }
    Ok(())
}

/// The data centers whose WAN link joins `dc` to the rest: its own, or every remote one when
/// `dc` is the control plane's.
fn wan_links_of<'a>(spec: &'a VirtualClusterSpec, dc: &'a str) -> Vec<&'a str> {
    let remote = spec.remote_dcs();
    if remote.contains(&dc) {
        vec![dc]
    } else {
        remote
    }
}

/// Whether `dc`'s WAN link (one of them, for the control plane's) is cut.
pub fn is_cut(spec: &VirtualClusterSpec, dc: &str) -> bool {
    wan_links_of(spec, dc).iter().any(|d| {
        let [main_port, ..] = wan_veth_names(&spec.cluster, d);
        link_exists(&main_port) && !link_is_up(&main_port)
    })
}

/// Remove every data center's WAN link and bridge: those of the spec and any left under
/// `<state>/virtual/.dc` by an earlier inventory. Tries everything, returns the first error.
pub(crate) fn remove_all(spec: &VirtualClusterSpec) -> Result<(), VirtError> {
    let target = Target::cluster(&spec.cluster);
    let mut dcs: Vec<String> = spec.remote_dcs().into_iter().map(str::to_owned).collect();
    if let Ok(entries) = fs::read_dir(spec.virtual_dir().join(".dc")) {
        for entry in entries.flatten() {
            if let Ok(name) = entry.file_name().into_string() {
                if !dcs.contains(&name) {
                    dcs.push(name);
                }
            }
        }
    }
    let mut first = None;
    for dc in &dcs {
        let mut note = |r: Result<(), VirtError>| {
            if let Err(e) = r {
                first.get_or_insert(e);
            }
        };
        let dir = dc_dir(spec, dc);
        note(stop_shaper(&target, &dir));
        let [main_port, _, _, dc_port] = wan_veth_names(&spec.cluster, dc);
        let bridge = dc_bridge_name(&spec.cluster, dc);
        for device in [main_port, dc_port, bridge] {
            if link_exists(&device) {
                note(run(&target, "ip", &["link", "del", &device]).map(drop));
            }
        }
        let _ = fs::remove_file(dir.join(CUT_MARK));
    }
    first.map_or(Ok(()), Err)
}
