//! The size a board runs under, read from the agent's own cgroup, and the host figures
//! rewritten to match, as LXCFS does for containers: a virtual board limited to 256 MiB and
//! one CPU must report 256 MiB and one CPU, not the host's figures.
//!
//! - Memory: `MemTotal` becomes the smallest memory limit of the agent's group and its
//!   parents (`memory.limit_in_bytes` / `memory.max`), capped by the host's `MemTotal`;
//!   `MemFree` = limit - usage; `MemAvailable` = `MemFree` + the group's inactive file cache
//!   (what the kernel reclaims first), capped by the limit. Swap likewise when the group's
//!   swap is limited (`memory.memsw.*` / `memory.swap.*`).
//! - CPU: `cpus` = the smallest CFS quota / period of the group and its parents
//!   (`cpu.cfs_quota_us` / `cpu.max`), capped by the CPUs online. The board shows
//!   `ceil(cpus)` cores in `node_cpu_seconds_total`: the group's CPU time (`cpuacct` /
//!   `cpu.stat`) shared evenly between them as user and system; when `cpus` is not whole,
//!   the share of the last core the quota withholds counts as `steal` (time a hypervisor did
//!   not give); the rest is idle. So `1 - rate(idle)` reads 100 % exactly when the board
//!   uses its whole quota, and the busy percentages are the board's own use over its quota.
//!
//! Without a limit (a real board, or the agent's service has none) the host's figures stand:
//! `cpus` is then the number of CPUs online. Where a file is missing the figure it would have
//! given is left as the host's.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lab_api::cgroup::{self, GroupDir, Version};
use lab_api::metrics::{CpuSeconds, HostSample};

/// Values at or above this in a v1 limit file mean "no limit" (the kernel writes
/// `PAGE_COUNTER_MAX * page size`, 0x7FFFFFFFFFFFF000 on 4 KiB pages).
const V1_UNLIMITED: u64 = 1 << 62;

/// The agent's own groups, found once at start.
#[derive(Debug, Clone, Default)]
pub struct CgroupView {
    memory: Option<GroupDir>,
    cpu: Option<GroupDir>,
    /// Where CPU time is accounted: v1 `cpuacct`, v2 the unified group (`cpu.stat`).
    cpu_usage: Option<GroupDir>,
    previous: Option<CpuReading>,
}

/// The CPU counters of the board at one instant, as exposed.
#[derive(Debug, Clone)]
struct CpuReading {
    at: Instant,
    usage_secs: f64,
    cores: Vec<CpuSeconds>,
}

impl CgroupView {
    /// Finds the agent's groups from `/proc/self/cgroup` and `/proc/self/mountinfo`. A
    /// process without readable cgroup files gets an empty view (host figures stand).
    pub fn locate() -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let memberships = cgroup::parse_proc_cgroup(&read("/proc/self/cgroup"));
        let mounts = cgroup::parse_mounts(&read("/proc/self/mountinfo"));
        let v2_controllers: Vec<String> = cgroup::unified(&memberships, &mounts)
            .map(|g| {
                read_string(&g.mountpoint.join("cgroup.controllers"))
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        let find = |c| cgroup::locate(&memberships, &mounts, c, &v2_controllers);
        let cpu = find("cpu");
        let cpu_usage = match cpu.as_ref().map(|g| g.version) {
            Some(Version::V2) => cpu.clone(),
            _ => find("cpuacct").or_else(|| cgroup::unified(&memberships, &mounts)),
        };
        CgroupView {
            memory: find("memory"),
            cpu,
            cpu_usage,
            previous: None,
        }
    }

    /// Rewrites `host` (already filled from `/proc`) to the board's limits; sets
    /// `host.cpus` in every case.
    pub fn apply(&mut self, host: &mut HostSample) {
        let online = host.cpu_seconds.len().max(1) as f64;
        host.cpus = online;
        if let Some(memory) = self.memory.as_ref().and_then(read_memory) {
            memory.apply(host);
        }
        let quota = self.cpu.as_ref().and_then(cpu_quota);
        let usage = self.cpu_usage.as_ref().and_then(read_cpu_usage);
        let (Some(quota), Some(usage)) = (quota, usage) else {
            return;
        };
        let cpus = quota.min(online);
        host.cpus = cpus;
        let now = Instant::now();
        let reading = cpu_view(
            cpus,
            &usage,
            now,
            self.previous.as_ref(),
            host.uptime_secs as f64,
        );
        let percent = self.previous.as_ref().map_or(0.0, |before| {
            busy_percent(before.usage_secs, usage.total_secs, before.at, now, cpus)
        });
        host.cpu_percent = percent;
        host.cpu_per_core = vec![percent; reading.cores.len()];
        host.cpu_seconds = reading.cores.clone();
        self.previous = Some(reading);
    }
}

/// The group's memory figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryUse {
    pub limit: u64,
    pub usage: u64,
    pub inactive_file: u64,
    /// Limit and use of swap, where the group's swap is limited.
    pub swap: Option<(u64, u64)>,
}

impl MemoryUse {
    /// Rewrites the host's memory figures against the limit.
    pub fn apply(&self, host: &mut HostSample) {
        let total = if host.mem_total_bytes > 0 {
            self.limit.min(host.mem_total_bytes)
        } else {
            self.limit
        };
        let free = total.saturating_sub(self.usage);
        host.mem_total_bytes = total;
        host.mem_free_bytes = free;
        host.mem_available_bytes = free.saturating_add(self.inactive_file).min(total);
        if let Some((limit, used)) = self.swap {
            let total = limit.min(host.swap_total_bytes);
            host.swap_total_bytes = total;
            host.swap_free_bytes = total.saturating_sub(used);
        }
    }
}

/// The group's CPU time since it was made.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUsage {
    pub total_secs: f64,
    pub user_secs: f64,
    pub system_secs: f64,
}

fn read_string(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn file(group: &GroupDir, name: &str) -> PathBuf {
    group.dir.join(name)
}

/// The smallest limit of `group` and its parents, by `parse` of file `name` in each.
fn smallest<T: PartialOrd + Copy>(
    group: &GroupDir,
    name: &str,
    parse: impl Fn(&Path) -> Option<T>,
) -> Option<T> {
    group
        .ancestors()
        .filter_map(|dir| parse(&dir.join(name)))
        .fold(None, |min: Option<T>, v| match min {
            Some(m) if m <= v => Some(m),
            _ => Some(v),
        })
}

fn read_memory(group: &GroupDir) -> Option<MemoryUse> {
    let (limit_file, usage_file, inactive_key, swap_limit_file, swap_usage_file) =
        match group.version {
            Version::V1 => (
                "memory.limit_in_bytes",
                "memory.usage_in_bytes",
                "total_inactive_file",
                "memory.memsw.limit_in_bytes",
                "memory.memsw.usage_in_bytes",
            ),
            Version::V2 => (
                "memory.max",
                "memory.current",
                "inactive_file",
                "memory.swap.max",
                "memory.swap.current",
            ),
        };
    let limit_of = |text: &str| match group.version {
        Version::V1 => parse_v1_limit(text),
        Version::V2 => parse_v2_max(text),
    };
    let limit = smallest(group, limit_file, |p| limit_of(&read_string(p)))?;
    let usage = parse_u64(&read_string(&file(group, usage_file)))?;
    let stat = read_string(&file(group, "memory.stat"));
    let inactive_file = stat_value(&stat, inactive_key).unwrap_or(0);
    let swap_limit = smallest(group, swap_limit_file, |p| limit_of(&read_string(p)));
    let swap_usage = parse_u64(&read_string(&file(group, swap_usage_file)));
    let swap = match (group.version, swap_limit, swap_usage) {
        // v1 counts memory + swap together.
        (Version::V1, Some(l), Some(u)) => Some((l.saturating_sub(limit), u.saturating_sub(usage))),
        (Version::V2, Some(l), Some(u)) => Some((l, u)),
        _ => None,
    };
    Some(MemoryUse {
        limit,
        usage,
        inactive_file,
        swap,
    })
}

fn cpu_quota(group: &GroupDir) -> Option<f64> {
    match group.version {
        Version::V1 => smallest(group, "cpu.cfs_quota_us", |quota| {
            let period = quota.with_file_name("cpu.cfs_period_us");
            parse_cfs(&read_string(quota), &read_string(&period))
        }),
        Version::V2 => smallest(group, "cpu.max", |p| parse_cpu_max(&read_string(p))),
    }
}

fn read_cpu_usage(group: &GroupDir) -> Option<CpuUsage> {
    match group.version {
        Version::V1 => {
            let ns = parse_u64(&read_string(&file(group, "cpuacct.usage")))?;
            let stat = read_string(&file(group, "cpuacct.stat"));
            Some(split_v1_usage(ns, &stat))
        }
        Version::V2 => parse_v2_cpu_stat(&read_string(&file(group, "cpu.stat"))),
    }
}

// ---- pure parts -------------------------------------------------------------------------

fn parse_u64(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// A v1 limit file (`memory.limit_in_bytes`): `None` when unlimited.
pub fn parse_v1_limit(text: &str) -> Option<u64> {
    parse_u64(text).filter(|v| *v < V1_UNLIMITED)
}

/// A v2 limit file (`memory.max`, `memory.swap.max`): `max` means unlimited.
pub fn parse_v2_max(text: &str) -> Option<u64> {
    match text.trim() {
        "max" => None,
        value => parse_u64(value),
    }
}

/// v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` as CPUs; `-1` means unlimited.
pub fn parse_cfs(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: i64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// v2 `cpu.max` (`"50000 100000"`, or `"max 100000"` when unlimited) as CPUs.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: u64 = parts.next()?.parse().ok()?;
    let period: u64 = parts.next().map_or(Some(100_000), |p| p.parse().ok())?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// The value of `key` in a `key value` per line file (`memory.stat`, `cpu.stat`).
pub fn stat_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// v1: `cpuacct.usage` (ns, exact) split as `cpuacct.stat`'s user and system ticks are.
pub fn split_v1_usage(usage_ns: u64, cpuacct_stat: &str) -> CpuUsage {
    let total_secs = usage_ns as f64 / 1e9;
    let user = stat_value(cpuacct_stat, "user").unwrap_or(0) as f64;
    let system = stat_value(cpuacct_stat, "system").unwrap_or(0) as f64;
    let user_share = if user + system > 0.0 {
        user / (user + system)
    } else {
        1.0
    };
    CpuUsage {
        total_secs,
        user_secs: total_secs * user_share,
        system_secs: total_secs * (1.0 - user_share),
    }
}

/// v2: `cpu.stat`'s `usage_usec`, `user_usec`, `system_usec`.
pub fn parse_v2_cpu_stat(text: &str) -> Option<CpuUsage> {
    let usec = |key| stat_value(text, key).map(|v| v as f64 / 1e6);
    let total_secs = usec("usage_usec")?;
    Some(CpuUsage {
        total_secs,
        user_secs: usec("user_usec").unwrap_or(total_secs),
        system_secs: usec("system_usec").unwrap_or(0.0),
    })
}

/// Busy percent of a board with `cpus` CPUs between two readings of its CPU time.
pub fn busy_percent(before: f64, now: f64, at_before: Instant, at_now: Instant, cpus: f64) -> f32 {
    let wall = at_now.saturating_duration_since(at_before).as_secs_f64();
    if wall <= 0.0 || cpus <= 0.0 {
        return 0.0;
    }
    (((now - before).max(0.0) / (wall * cpus)) * 100.0).clamp(0.0, 100.0) as f32
}

/// The `ceil(cpus)` virtual cores of a board with `cpus` CPUs whose group has used `usage`:
/// user and system shared evenly; steal = the withheld share of the last core; idle the rest
/// of the wall time. The first reading starts idle and steal from the board's uptime; later
/// ones advance them from the previous reading, so every counter only grows.
fn cpu_view(
    cpus: f64,
    usage: &CpuUsage,
    now: Instant,
    previous: Option<&CpuReading>,
    uptime_secs: f64,
) -> CpuReading {
    let cores = (cpus.ceil() as usize).max(1);
    let share = 1.0 / cores as f64;
    let withheld = 1.0 - cpus / cores as f64;
    let (user, system) = (usage.user_secs * share, usage.system_secs * share);
    let previous = previous.filter(|p| p.cores.len() == cores);
    let out = (0..cores)
        .map(|i| {
            let (idle, steal) = match previous.map(|p| (&p.cores[i], p.at)) {
                Some((before, at)) => {
                    let wall = now.saturating_duration_since(at).as_secs_f64();
                    let steal = wall * withheld;
                    let busy = (user - before.user).max(0.0) + (system - before.system).max(0.0);
                    (
                        before.idle + (wall - steal - busy).max(0.0),
                        before.steal + steal,
                    )
                }
                None => {
                    let steal = uptime_secs * withheld;
                    ((uptime_secs - steal - user - system).max(0.0), steal)
                }
            };
            CpuSeconds {
                cpu: i as u32,
                user: user.max(previous.map_or(0.0, |p| p.cores[i].user)),
                system: system.max(previous.map_or(0.0, |p| p.cores[i].system)),
                idle,
                steal,
                ..Default::default()
            }
        })
        .collect();
    CpuReading {
        at: now,
        usage_secs: usage.total_secs,
        cores: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn limit_files() {
        assert_eq!(parse_v1_limit("268435456\n"), Some(256 << 20));
        assert_eq!(parse_v1_limit("9223372036854771712\n"), None);
        assert_eq!(parse_v2_max("max\n"), None);
        assert_eq!(parse_v2_max("268435456\n"), Some(256 << 20));
        assert_eq!(parse_cfs("50000\n", "100000\n"), Some(0.5));
        assert_eq!(parse_cfs("-1\n", "100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(1.5));
        assert_eq!(parse_cpu_max("max 100000\n"), None);
    }

    /// Captured from a board of this machine (v1) and a Debian 12 host (v2).
    #[test]
    fn usage_files() {
        let v1_stat = "cache 1081344\nrss 2703360\ntotal_cache 1081344\ntotal_inactive_file 675840\ninactive_file 675840\n";
        assert_eq!(stat_value(v1_stat, "total_inactive_file"), Some(675_840));
        let usage = split_v1_usage(3_000_000_000, "user 150\nsystem 50\n");
        assert_eq!(usage.total_secs, 3.0);
        assert!((usage.user_secs - 2.25).abs() < 1e-9);
        assert!((usage.system_secs - 0.75).abs() < 1e-9);
        let v2 = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\n";
        assert_eq!(
            parse_v2_cpu_stat(v2),
            Some(CpuUsage {
                total_secs: 2.5,
                user_secs: 2.0,
                system_secs: 0.5
            })
        );
        assert_eq!(parse_v2_cpu_stat("nr_periods 1\n"), None);
    }

    #[test]
    fn memory_is_reported_against_the_limit() {
        let mut host = HostSample {
            mem_total_bytes: 24 << 30,
            mem_free_bytes: 20 << 30,
            mem_available_bytes: 22 << 30,
            swap_total_bytes: 0,
            ..Default::default()
        };
        MemoryUse {
            limit: 256 << 20,
            usage: 100 << 20,
            inactive_file: 10 << 20,
            swap: Some((0, 0)),
        }
        .apply(&mut host);
        assert_eq!(host.mem_total_bytes, 256 << 20);
        assert_eq!(host.mem_free_bytes, 156 << 20);
        assert_eq!(host.mem_available_bytes, 166 << 20);
        assert_eq!(host.swap_total_bytes, 0);
        // A limit above the host's memory is capped by it (a Pi 5's 8 GiB on a 4 GiB host).
        let mut small = HostSample {
            mem_total_bytes: 4 << 30,
            ..Default::default()
        };
        MemoryUse {
            limit: 8 << 30,
            usage: 5 << 30,
            inactive_file: 0,
            swap: None,
        }
        .apply(&mut small);
        assert_eq!(small.mem_total_bytes, 4 << 30);
        assert_eq!(small.mem_free_bytes, 0);
    }

    #[test]
    fn cpu_time_is_shared_over_ceil_cpus_cores_with_steal() {
        let t0 = Instant::now();
        let usage = |total: f64| CpuUsage {
            total_secs: total,
            user_secs: total,
            system_secs: 0.0,
        };
        // 1.5 CPUs -> two cores; 100 s up, 30 s used.
        let first = cpu_view(1.5, &usage(30.0), t0, None, 100.0);
        assert_eq!(first.cores.len(), 2);
        let c = &first.cores[0];
        assert_eq!(c.user, 15.0);
        assert_eq!(c.steal, 25.0);
        assert_eq!(c.idle, 60.0);
        // 10 s later, saturated: 15 more CPU seconds; idle stands still.
        let t1 = t0 + Duration::from_secs(10);
        let second = cpu_view(1.5, &usage(45.0), t1, Some(&first), 110.0);
        let c = &second.cores[1];
        assert_eq!(c.user, 22.5);
        assert_eq!(c.steal, 27.5);
        assert_eq!(c.idle, 60.0);
        assert_eq!(busy_percent(30.0, 45.0, t0, t1, 1.5), 100.0);
        // Idle 10 s: idle grows by the unwithheld share.
        let t2 = t1 + Duration::from_secs(10);
        let third = cpu_view(1.5, &usage(45.0), t2, Some(&second), 120.0);
        assert_eq!(third.cores[0].idle, 67.5);
        assert_eq!(busy_percent(45.0, 45.0, t1, t2, 1.5), 0.0);
        // A whole number of CPUs has no steal.
        let one = cpu_view(1.0, &usage(5.0), t0, None, 50.0);
        assert_eq!(one.cores.len(), 1);
        assert_eq!((one.cores[0].idle, one.cores[0].steal), (45.0, 0.0));
    }

    #[test]
    fn locates_own_groups_on_this_machine() {
        // Whatever the layout, an agent finds its memory group and it exists.
        let view = CgroupView::locate();
        if let Some(memory) = &view.memory {
            assert!(memory.dir.is_dir(), "{memory:?}");
        }
        let mut host = HostSample {
            cpu_seconds: vec![CpuSeconds::default(); 2],
            mem_total_bytes: 1 << 30,
            ..Default::default()
        };
        let mut view = view;
        view.apply(&mut host);
        assert!(host.cpus > 0.0 && host.cpus <= 2.0, "{}", host.cpus);
    }
}
