//! Pure parsers for the `/proc` and `/sys` text behind [`lab_api::metrics::HostSample`].
//!
//! Nothing here touches the filesystem; each function is unit tested on text captured from
//! a real machine (this x86_64 VM) or written from the documented format (Pi, Jetson).

use lab_api::metrics::{
    DiskIo, DiskSample, FileDescriptors, KernelCounters, MemoryDetail, NetworkDetail,
    NetworkSample, Throttling,
};

/// One `cpu`/`cpuN` line of `/proc/stat`, in clock ticks (USER_HZ).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// `None` for the aggregate `cpu` line.
    pub cpu: Option<u32>,
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
    /// Running a guest: already counted in `user` (and `guest_nice` in `nice`).
    pub guest: u64,
    pub guest_nice: u64,
}

impl CpuTicks {
    /// All ticks (guest time is already inside user and nice).
    pub fn total(&self) -> u64 {
        self.user
            + self.nice
            + self.system
            + self.idle
            + self.iowait
            + self.irq
            + self.softirq
            + self.steal
    }

    /// Ticks spent neither idle nor waiting for I/O.
    pub fn busy(&self) -> u64 {
        self.total() - self.idle - self.iowait
    }
}

/// The `cpu` lines of `/proc/stat`: the aggregate first if present, then each core.
pub fn cpu_ticks(stat: &str) -> Vec<CpuTicks> {
    stat.lines()
        .filter(|line| line.starts_with("cpu"))
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let name = fields.next()?;
            let cpu = match name.strip_prefix("cpu")? {
                "" => None,
                n => Some(n.parse().ok()?),
            };
            let mut next = || fields.next().and_then(|f| f.parse::<u64>().ok());
            Some(CpuTicks {
                cpu,
                user: next()?,
                nice: next()?,
                system: next()?,
                idle: next()?,
                iowait: next().unwrap_or(0),
                irq: next().unwrap_or(0),
                softirq: next().unwrap_or(0),
                steal: next().unwrap_or(0),
                guest: next().unwrap_or(0),
                guest_nice: next().unwrap_or(0),
            })
        })
        .collect()
}

/// Busy percent between two readings of the same CPU, 0..=100 (0 when no time passed).
pub fn busy_percent(before: &CpuTicks, now: &CpuTicks) -> f32 {
    let total = now.total().saturating_sub(before.total());
    if total == 0 {
        return 0.0;
    }
    let busy = now.busy().saturating_sub(before.busy());
    ((busy as f64 / total as f64) * 100.0).clamp(0.0, 100.0) as f32
}

/// `btime` of `/proc/stat`: boot time in seconds since the epoch.
pub fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The system-wide counters of `/proc/stat` (`ctxt`, the first number of `intr`,
/// `processes`, `procs_running`, `procs_blocked`); `None` without `ctxt` and `intr`.
pub fn kernel_counters(stat: &str) -> Option<KernelCounters> {
    let (mut ctxt, mut intr) = (None, None);
    let mut counters = KernelCounters::default();
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let (Some(key), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        match key {
            "ctxt" => ctxt = Some(value),
            "intr" => intr = Some(value),
            "processes" => counters.forks_total = value,
            "procs_running" => counters.procs_running = value,
            "procs_blocked" => counters.procs_blocked = value,
            _ => {}
        }
    }
    counters.context_switches_total = ctxt?;
    counters.interrupts_total = intr?;
    Some(counters)
}

/// The three load averages of `/proc/loadavg`.
pub fn loadavg(text: &str) -> Option<(f64, f64, f64)> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<f64>().ok());
    Some((fields.next()??, fields.next()??, fields.next()??))
}

/// The `/proc/meminfo` fields the agent exports, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub free: u64,
    /// `MemAvailable`, or free + buffers + cached on kernels older than 3.14.
    pub available: u64,
    pub swap_total: u64,
    pub swap_free: u64,
    pub detail: MemoryDetail,
}

/// Parses `/proc/meminfo` (values in kB).
pub fn meminfo(text: &str) -> MemInfo {
    let mut info = MemInfo::default();
    let mut available = None;
    for line in text.lines() {
        let Some((key, rest)) = line.split_once(':') else {
            continue;
        };
        let Some(kb) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = kb.saturating_mul(1024);
        match key {
            "MemTotal" => info.total = bytes,
            "MemFree" => info.free = bytes,
            "MemAvailable" => available = Some(bytes),
            "Buffers" => info.detail.buffers_bytes = bytes,
            "Cached" => info.detail.cached_bytes = bytes,
            "SwapCached" => info.detail.swap_cached_bytes = bytes,
            "SwapTotal" => info.swap_total = bytes,
            "SwapFree" => info.swap_free = bytes,
            "Slab" => info.detail.slab_bytes = bytes,
            "SReclaimable" => info.detail.sreclaimable_bytes = bytes,
            "PageTables" => info.detail.page_tables_bytes = bytes,
            _ => {}
        }
    }
    let d = &info.detail;
    info.available = available.unwrap_or(info.free + d.buffers_bytes + d.cached_bytes);
    info
}

/// One line of `/proc/self/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    /// Mounted with the `ro` option.
    pub readonly: bool,
}

/// Filesystem types that hold no data of their own (node_exporter's default exclusions, plus
/// memory-backed ones) or may hang a `statvfs` (network filesystems).
const PSEUDO_FS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "fuse.sshfs",
    "fuse.lxcfs",
    "fuse.portal",
];

/// The real filesystems of `/proc/self/mounts`: pseudo filesystems skipped except `/`
/// (whatever its type, e.g. overlay in a container), one entry per device (the first
/// mount, or `/` if it is among them).
pub fn real_filesystems(mounts: &str) -> Vec<Mount> {
    let mut out: Vec<Mount> = Vec::new();
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mountpoint), Some(fstype), options) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mountpoint = unescape_octal(mountpoint);
        let root = mountpoint == "/";
        if !root && PSEUDO_FS.contains(&fstype) {
            continue;
        }
        let mount = Mount {
            device: unescape_octal(device),
            mountpoint,
            fstype: fstype.to_string(),
            readonly: options.is_some_and(|o| o.split(',').any(|o| o == "ro")),
        };
        match out.iter_mut().find(|m| m.device == mount.device) {
            Some(seen) if root => *seen = mount,
            Some(_) => {}
            None => out.push(mount),
        }
    }
    out
}

/// Undoes the kernel's `\040`-style escaping of spaces, tabs, newlines and backslashes.
fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(digits)) = (bytes[i], octal) {
            let value = digits
                .iter()
                .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
            out.push(u8::try_from(value).unwrap_or(b'?'));
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `/proc/diskstats` device is worth reporting: not a loop, ram, zram or floppy
/// device, and not a partition (node_exporter's default exclusion).
pub fn is_reported_disk(name: &str) -> bool {
    let digits_after = |prefix: &str| {
        name.strip_prefix(prefix)
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    };
    if ["ram", "zram", "loop", "fd"]
        .iter()
        .any(|p| digits_after(p))
    {
        return false;
    }
    // sda1, vdb2, xvda1, hdc3
    for prefix in ["sd", "vd", "hd", "xvd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let letters = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            let tail = &rest[letters..];
            if letters > 0 && !tail.is_empty() && tail.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
        }
    }
    // nvme0n1p1, mmcblk0p2
    for prefix in ["nvme", "mmcblk"] {
        if name.starts_with(prefix) {
            if let Some((_, part)) = name.rsplit_once('p') {
                if !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                    return false;
                }
            }
        }
    }
    true
}

/// Cumulative I/O per reported disk of `/proc/diskstats`: bytes read and written (sectors
/// are always 512 bytes there) and the other classic fields (Linux 2.6+: 11 after the
/// name; times in milliseconds).
pub fn diskstats(text: &str) -> Vec<DiskSample> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let device = *fields.get(2)?;
            if !is_reported_disk(device) {
                return None;
            }
            let field = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
            let io = || {
                Some(DiskIo {
                    reads_completed_total: field(3)?,
                    reads_merged_total: field(4)?,
                    read_time_ms_total: field(6)?,
                    writes_completed_total: field(7)?,
                    writes_merged_total: field(8)?,
                    write_time_ms_total: field(10)?,
                    io_now: field(11)?,
                    io_time_ms_total: field(12)?,
                    io_time_weighted_ms_total: field(13)?,
                })
            };
            Some(DiskSample {
                device: device.to_string(),
                read_bytes_total: field(5)?.saturating_mul(512),
                written_bytes_total: field(9)?.saturating_mul(512),
                io: io(),
            })
        })
        .collect()
}

/// Per-interface counters of `/proc/net/dev` (16 per line: 8 receive, 8 transmit).
pub fn net_dev(text: &str) -> Vec<NetworkSample> {
    text.lines()
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let values: Vec<u64> = counters
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            if values.len() < 10 {
                return None;
            }
            let detail = (values.len() >= 16).then(|| NetworkDetail {
                rx_errs_total: values[2],
                rx_drop_total: values[3],
                rx_fifo_total: values[4],
                rx_frame_total: values[5],
                rx_compressed_total: values[6],
                rx_multicast_total: values[7],
                tx_errs_total: values[10],
                tx_drop_total: values[11],
                tx_fifo_total: values[12],
                tx_colls_total: values[13],
                tx_carrier_total: values[14],
                tx_compressed_total: values[15],
            });
            Some(NetworkSample {
                device: name.trim().to_string(),
                rx_bytes_total: values[0],
                rx_packets_total: values[1],
                tx_bytes_total: values[8],
                tx_packets_total: values[9],
                detail,
            })
        })
        .collect()
}

/// The cumulative stall seconds of one `/proc/pressure/<resource>` file: the `total=`
/// microseconds of its `some` and `full` lines (either `None` when its line is missing).
pub fn pressure_totals(text: &str) -> (Option<f64>, Option<f64>) {
    let (mut some, mut full) = (None, None);
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let slot = match fields.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        *slot = fields
            .find_map(|f| f.strip_prefix("total="))
            .and_then(|v| v.parse::<u64>().ok())
            .map(|micros| micros as f64 / 1_000_000.0);
    }
    (some, full)
}

/// `/proc/sys/fs/file-nr`: allocated handles, unused handles (always 0 since 2.6), maximum.
pub fn file_nr(text: &str) -> Option<FileDescriptors> {
    let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().ok());
    let allocated = fields.next()??;
    let _unused = fields.next()??;
    Some(FileDescriptors {
        allocated,
        maximum: fields.next()??,
    })
}

/// The Pi firmware's throttling word: sysfs `get_throttled` prints it in hex (`50005`),
/// `vcgencmd get_throttled` as `throttled=0x50005`.
pub fn throttled(text: &str) -> Option<Throttling> {
    let text = text.trim();
    let text = text.strip_prefix("throttled=").unwrap_or(text);
    let text = text.strip_prefix("0x").unwrap_or(text);
    let raw = u32::from_str_radix(text, 16).ok()?;
    let bit = |n: u32| raw & (1 << n) != 0;
    Some(Throttling {
        raw,
        under_voltage: bit(0),
        frequency_capped: bit(1),
        throttled: bit(2),
        soft_temp_limit: bit(3),
        under_voltage_occurred: bit(16),
        frequency_capped_occurred: bit(17),
        throttled_occurred: bit(18),
        soft_temp_limit_occurred: bit(19),
    })
}

/// Jetson GPU load from `.../gpu.0/load` (per mille) as a percentage.
pub fn gpu_load_percent(text: &str) -> Option<f32> {
    let permille: f32 = text.trim().parse().ok()?;
    Some((permille / 10.0).clamp(0.0, 100.0))
}

/// A sysfs temperature in millidegrees Celsius (`48312`) as degrees.
pub fn millidegrees(text: &str) -> Option<f64> {
    let milli: i64 = text.trim().parse().ok()?;
    Some(milli as f64 / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from /proc/stat on a 2-core x86_64 VM (intr line shortened), with cpu1's
    // guest and guest_nice set as on a host running a VM (this VM runs none).
    const STAT: &str = "cpu  192156 0 33732 595834 1912 0 492 2648 0 0
cpu0 93409 0 16376 301411 703 0 94 1331 0 0
cpu1 98747 0 17356 294422 1208 0 398 1317 4021 17
intr 1352874 0 0 0 0
ctxt 1871220
btime 1795423020
processes 27260
procs_running 3
procs_blocked 1
";

    #[test]
    fn stat_cpu_lines_and_btime() {
        let ticks = cpu_ticks(STAT);
        assert_eq!(ticks.len(), 3);
        assert_eq!(ticks[0].cpu, None);
        assert_eq!(ticks[1].cpu, Some(0));
        assert_eq!(ticks[2].cpu, Some(1));
        assert_eq!(ticks[1].user, 93409);
        assert_eq!(ticks[1].steal, 1331);
        assert_eq!(ticks[2].total(), 98747 + 17356 + 294422 + 1208 + 398 + 1317);
        assert_eq!((ticks[1].guest, ticks[1].guest_nice), (0, 0));
        assert_eq!((ticks[2].guest, ticks[2].guest_nice), (4021, 17));
        assert_eq!(boot_time(STAT), Some(1795423020));
        // Old kernels have only four fields.
        let old = cpu_ticks("cpu0 1 2 3 4\n");
        assert_eq!(old[0].iowait, 0);
        assert_eq!(old[0].idle, 4);
        assert_eq!(old[0].guest, 0);
    }

    #[test]
    fn stat_kernel_counters() {
        assert_eq!(
            kernel_counters(STAT),
            Some(KernelCounters {
                context_switches_total: 1871220,
                interrupts_total: 1352874,
                forks_total: 27260,
                procs_running: 3,
                procs_blocked: 1,
            })
        );
        assert_eq!(kernel_counters("cpu0 1 2 3 4\nbtime 5\n"), None);
    }

    #[test]
    fn busy_from_deltas() {
        let before = CpuTicks {
            user: 100,
            idle: 100,
            ..Default::default()
        };
        let after = CpuTicks {
            user: 125,
            idle: 175,
            ..Default::default()
        };
        assert_eq!(busy_percent(&before, &after), 25.0);
        assert_eq!(busy_percent(&after, &after), 0.0);
    }

    #[test]
    fn loadavg_fields() {
        assert_eq!(
            loadavg("1.82 2.22 1.82 2/96 27251\n"),
            Some((1.82, 2.22, 1.82))
        );
        assert_eq!(loadavg("garbage"), None);
    }

    // Captured from /proc/meminfo on the same VM (shortened; SwapCached set as on a machine
    // that has swapped).
    const MEMINFO: &str = "MemTotal:       24683656 kB
MemFree:        20158968 kB
MemAvailable:   23921260 kB
Buffers:           17128 kB
Cached:          3814796 kB
SwapCached:          312 kB
Active:          1993308 kB
SwapTotal:        102396 kB
SwapFree:         102000 kB
Slab:             240852 kB
SReclaimable:     203004 kB
SUnreclaim:        37848 kB
KernelStack:        3648 kB
PageTables:         7984 kB
HugePages_Total:       0
";

    #[test]
    fn meminfo_in_bytes() {
        let info = meminfo(MEMINFO);
        assert_eq!(info.total, 24683656 * 1024);
        assert_eq!(info.free, 20158968 * 1024);
        assert_eq!(info.available, 23921260 * 1024);
        assert_eq!(info.swap_total, 102396 * 1024);
        assert_eq!(info.swap_free, 102000 * 1024);
        assert_eq!(
            info.detail,
            MemoryDetail {
                cached_bytes: 3814796 * 1024,
                buffers_bytes: 17128 * 1024,
                sreclaimable_bytes: 203004 * 1024,
                slab_bytes: 240852 * 1024,
                page_tables_bytes: 7984 * 1024,
                swap_cached_bytes: 312 * 1024,
            }
        );
        let old = meminfo("MemTotal: 10 kB\nMemFree: 1 kB\nBuffers: 2 kB\nCached: 3 kB\n");
        assert_eq!(old.available, 6 * 1024);
    }

    // Captured from /proc/self/mounts on the VM (shortened), plus a Pi's boot partition and
    // a mount point with a space.
    const MOUNTS: &str = "proc /proc proc rw,relatime 0 0
sysfs /sys sysfs rw,relatime 0 0
devtmpfs /dev devtmpfs rw,relatime,size=12334432k,nr_inodes=3083608,mode=755 0 0
tmpfs /dev/shm tmpfs rw,relatime,size=24683656k 0 0
/dev/vda / ext4 rw,relatime,discard 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
/dev/vda /run/netns ext4 rw,relatime,discard 0 0
/dev/mmcblk0p1 /boot/firm\\040ware vfat ro,relatime,fmask=0022 0 0
overlay /var/lib/docker/x overlay rw 0 0
";

    #[test]
    fn real_filesystems_skip_pseudo_and_dedupe() {
        let fs = real_filesystems(MOUNTS);
        assert_eq!(
            fs,
            vec![
                Mount {
                    device: "/dev/vda".into(),
                    mountpoint: "/".into(),
                    fstype: "ext4".into(),
                    readonly: false,
                },
                Mount {
                    device: "/dev/mmcblk0p1".into(),
                    mountpoint: "/boot/firm ware".into(),
                    fstype: "vfat".into(),
                    readonly: true,
                },
            ]
        );
        // `/` is kept whatever its type, and wins over an earlier mount of its device.
        let container = "/dev/vda /data ext4 rw 0 0\noverlay / overlay rw 0 0\n/dev/vda /etc/hosts ext4 rw 0 0\n";
        let fs = real_filesystems(container);
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[1].mountpoint, "/");
        assert_eq!(fs[0].mountpoint, "/data");
    }

    // Captured from /proc/diskstats on the VM, plus Pi SD card lines.
    const DISKSTATS: &str = "   7       0 loop0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 254       0 vda 185101 12651 9352346 221373 93787 73295 23697584 372983 0 54284 620701 26674 108 10667336 17009 15685 9335
 254       1 vda1 10 0 80 1 0 0 0 0 0 1 1 0 0 0 0 0 0
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 179       0 mmcblk0 5000 10 40000 100 2000 20 16000 300 0 400 500
 179       2 mmcblk0p2 4000 10 30000 90 1900 20 15000 280 0 390 480
";

    #[test]
    fn diskstats_whole_disks_in_bytes() {
        let disks = diskstats(DISKSTATS);
        let names: Vec<&str> = disks.iter().map(|d| d.device.as_str()).collect();
        assert_eq!(names, ["vda", "mmcblk0"]);
        assert_eq!(disks[0].read_bytes_total, 9352346 * 512);
        assert_eq!(disks[0].written_bytes_total, 23697584 * 512);
        assert_eq!(
            disks[0].io,
            Some(DiskIo {
                reads_completed_total: 185101,
                reads_merged_total: 12651,
                read_time_ms_total: 221373,
                writes_completed_total: 93787,
                writes_merged_total: 73295,
                write_time_ms_total: 372983,
                io_now: 0,
                io_time_ms_total: 54284,
                io_time_weighted_ms_total: 620701,
            })
        );
        // The Pi line has the 11 classic fields only (no discard/flush ones): still whole.
        assert_eq!(disks[1].io.map(|io| io.io_time_ms_total), Some(400));
        assert_eq!(disks[1].io.map(|io| io.writes_completed_total), Some(2000));
        // A line with fewer than the 11 classic fields: bytes known, the rest absent.
        let short =
            diskstats("   8 0 sdb 10 20 30 40 50 60 70 80 1 90 100\n   8 0 sdc 1 2 3 4 5 6 7\n");
        assert_eq!(short[0].io.map(|io| io.io_now), Some(1));
        assert_eq!(short[1].read_bytes_total, 3 * 512);
        assert_eq!(short[1].io, None);
        assert!(is_reported_disk("nvme0n1"));
        assert!(!is_reported_disk("nvme0n1p3"));
        assert!(!is_reported_disk("sda1"));
        assert!(is_reported_disk("sda"));
        assert!(is_reported_disk("dm-0"));
    }

    // Captured from /proc/net/dev on the VM.
    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  491107    2660    0    0    0     0          0         0   491107    2660    0    0    0     0       0          0
  eth0: 692534535   23571    0    0    0     0          0         0  1062096   13275    0    0    0     0       0          0
 wlan0: 8812345   9001    7    3    1     2          0        45   734512    6120    4    6    0     1       5          0
";

    #[test]
    fn net_dev_counters() {
        let net = net_dev(NET_DEV);
        assert_eq!(net.len(), 3);
        assert_eq!(
            net[1],
            NetworkSample {
                device: "eth0".into(),
                rx_bytes_total: 692534535,
                tx_bytes_total: 1062096,
                rx_packets_total: 23571,
                tx_packets_total: 13275,
                detail: Some(NetworkDetail::default()),
            }
        );
        assert_eq!(
            net[2].detail,
            Some(NetworkDetail {
                rx_errs_total: 7,
                rx_drop_total: 3,
                rx_fifo_total: 1,
                rx_frame_total: 2,
                rx_compressed_total: 0,
                rx_multicast_total: 45,
                tx_errs_total: 4,
                tx_drop_total: 6,
                tx_fifo_total: 0,
                tx_colls_total: 1,
                tx_carrier_total: 5,
                tx_compressed_total: 0,
            })
        );
    }

    // Captured from /proc/pressure/{cpu,io,memory} on the VM (kernel 6.18); irq written from
    // the kernel's documented format (it has a `full` line only).
    const PRESSURE_CPU: &str = "some avg10=96.33 avg60=82.09 avg300=34.30 total=129513617
full avg10=0.00 avg60=0.00 avg300=0.00 total=0
";
    const PRESSURE_IO: &str = "some avg10=1.51 avg60=1.03 avg300=0.54 total=3174345
full avg10=0.00 avg60=0.04 avg300=0.13 total=1118541
";
    const PRESSURE_IRQ: &str = "full avg10=0.00 avg60=0.00 avg300=0.00 total=4321
";

    #[test]
    fn pressure_totals_in_seconds() {
        assert_eq!(pressure_totals(PRESSURE_CPU), (Some(129.513617), Some(0.0)));
        assert_eq!(
            pressure_totals(PRESSURE_IO),
            (Some(3.174345), Some(1.118541))
        );
        assert_eq!(pressure_totals(PRESSURE_IRQ), (None, Some(0.004321)));
        // Kernels before 5.13 have no `full` line for cpu.
        assert_eq!(
            pressure_totals("some avg10=0.00 avg60=0.00 avg300=0.00 total=17\n"),
            (Some(0.000017), None)
        );
        assert_eq!(pressure_totals(""), (None, None));
    }

    #[test]
    fn file_nr_fields() {
        // Captured from /proc/sys/fs/file-nr on the VM (tab separated).
        assert_eq!(
            file_nr("967\t0\t2466170\n"),
            Some(FileDescriptors {
                allocated: 967,
                maximum: 2466170
            })
        );
        // 64-bit kernels may print LONG_MAX as the maximum.
        assert_eq!(
            file_nr("1024 0 9223372036854775807").map(|f| f.maximum),
            Some(9223372036854775807)
        );
        assert_eq!(file_nr("1024 0"), None);
    }

    #[test]
    fn pi_throttling_bits() {
        // sysfs prints hex without prefix; 0x50005: under-voltage and throttled now, both
        // also occurred.
        let t = throttled("50005\n").expect("sysfs");
        assert_eq!(t.raw, 0x50005);
        assert!(t.under_voltage && t.throttled);
        assert!(!t.frequency_capped && !t.soft_temp_limit);
        assert!(t.under_voltage_occurred && t.throttled_occurred);
        assert!(!t.frequency_capped_occurred && !t.soft_temp_limit_occurred);
        assert_eq!(throttled("throttled=0x0\n").map(|t| t.raw), Some(0));
        assert_eq!(
            throttled("throttled=0x80008").map(|t| t.soft_temp_limit_occurred),
            Some(true)
        );
        assert_eq!(throttled("nope"), None);
    }

    #[test]
    fn jetson_gpu_and_sysfs_temperatures() {
        assert_eq!(gpu_load_percent("537\n"), Some(53.7));
        assert_eq!(gpu_load_percent("0\n"), Some(0.0));
        assert_eq!(gpu_load_percent(""), None);
        assert_eq!(millidegrees("48312\n"), Some(48.312));
        assert_eq!(millidegrees("-5000"), Some(-5.0));
        assert_eq!(millidegrees("x"), None);
    }
}
