//! Host metrics: reads `/proc` and `/sys` into a [`HostSample`] once per call, each file
//! once (`/proc/stat`, `meminfo`, `self/mounts` + one `statvfs` per filesystem, `diskstats`,
//! `net/dev`, `pressure/*`, `sys/fs/file-nr`, the temperature files).
//!
//! [`HostSampler`] keeps what must survive between samples (the previous CPU ticks, one
//! reused read buffer, the list of temperature sensors found, the Pi throttling fallback) and
//! spawns no process in the common case: a Pi's throttling comes from the firmware's sysfs
//! file; only where that file is missing and `vcgencmd` exists is `vcgencmd get_throttled`
//! run, at most once a minute. Sensor directories are listed again once a minute. Absent
//! sources are left empty / `None`. Parsing lives in [`parse`].

pub mod parse;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lab_api::metrics::{
    CpuSeconds, FilesystemSample, GuestSeconds, HostSample, Pressure, Temperature, TemperatureKind,
    Throttling, Uname,
};

use crate::host::{clock_ticks_per_sec, BootClock};
use parse::CpuTicks;

/// Raspberry Pi firmware throttling word (kernel driver `raspberrypi-hwmon`/firmware).
pub const PI_THROTTLED: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";
/// Jetson GPU load, per mille (older and newer L4T).
pub const JETSON_GPU_LOAD: [&str; 2] = [
    "/sys/devices/platform/gpu.0/load",
    "/sys/devices/gpu.0/load",
];
/// Pressure stall information, one file per resource (Linux 4.20+; `irq` 6.1+).
pub const PRESSURE_CPU: &str = "/proc/pressure/cpu";
pub const PRESSURE_MEMORY: &str = "/proc/pressure/memory";
pub const PRESSURE_IO: &str = "/proc/pressure/io";
pub const PRESSURE_IRQ: &str = "/proc/pressure/irq";
/// Open file handles and their limit.
pub const FILE_NR: &str = "/proc/sys/fs/file-nr";
/// How often sensor directories are listed again and `vcgencmd` may run.
pub const RESCAN: Duration = Duration::from_secs(60);

/// Where one temperature is read from, found by a directory scan.
#[derive(Debug, Clone)]
struct Sensor {
    path: PathBuf,
    chip: String,
    sensor: String,
    kind: TemperatureKind,
}

/// Reads host metrics; one per agent, owned by the sampler task.
pub struct HostSampler {
    buf: String,
    ticks_per_sec: f64,
    boot: BootClock,
    previous: Vec<CpuTicks>,
    sensors: Vec<Sensor>,
    scanned_at: Option<Instant>,
    vcgencmd: Option<PathBuf>,
    vcgencmd_last: Option<(Instant, Option<Throttling>)>,
    limits: crate::cgroup_limits::CgroupView,
}

impl Default for HostSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl HostSampler {
    pub fn new() -> Self {
        HostSampler {
            buf: String::with_capacity(16 * 1024),
            ticks_per_sec: clock_ticks_per_sec() as f64,
            boot: BootClock::measure(),
            previous: Vec::new(),
            sensors: Vec::new(),
            scanned_at: None,
            vcgencmd: None,
            vcgencmd_last: None,
            limits: crate::cgroup_limits::CgroupView::locate(),
        }
    }

    /// Reads everything once. CPU percentages cover the time since the previous call (0 on
    /// the first).
    pub fn sample(&mut self) -> HostSample {
        let mut host = HostSample {
            uname: uname(),
            uptime_secs: self.boot.uptime_secs(),
            ..Default::default()
        };
        if self.read("/proc/stat") {
            host.boot_time_seconds = parse::boot_time(&self.buf).unwrap_or(0);
            host.kernel = parse::kernel_counters(&self.buf);
            let ticks = parse::cpu_ticks(&self.buf);
            self.cpu(&mut host, &ticks);
            self.previous = ticks;
        }
        if self.read("/proc/loadavg") {
            if let Some((l1, l5, l15)) = parse::loadavg(&self.buf) {
                (host.load1, host.load5, host.load15) = (l1, l5, l15);
            }
        }
        if self.read("/proc/meminfo") {
            let m = parse::meminfo(&self.buf);
            host.mem_total_bytes = m.total;
            host.mem_free_bytes = m.free;
            host.mem_available_bytes = m.available;
            host.swap_total_bytes = m.swap_total;
            host.swap_free_bytes = m.swap_free;
            host.memory = Some(m.detail);
        }
        host.pressure = self.pressure();
        if self.read(FILE_NR) {
            host.file_descriptors = parse::file_nr(&self.buf);
        }
        if self.read("/proc/self/mounts") {
            host.filesystems = parse::real_filesystems(&self.buf)
                .into_iter()
                .filter_map(|m| {
                    let stat = nix::sys::statvfs::statvfs(m.mountpoint.as_str()).ok()?;
                    let block = stat.fragment_size() as u64;
                    Some(FilesystemSample {
                        size_bytes: (stat.blocks() as u64).saturating_mul(block),
                        avail_bytes: (stat.blocks_available() as u64).saturating_mul(block),
                        free_bytes: (stat.blocks_free() as u64).saturating_mul(block),
                        files: Some(stat.files() as u64),
                        files_free: Some(stat.files_free() as u64),
                        readonly: Some(m.readonly),
                        device: m.device,
                        mountpoint: m.mountpoint,
                        fstype: m.fstype,
                    })
                })
                .collect();
        }
        if self.read("/proc/diskstats") {
            host.disks = parse::diskstats(&self.buf);
        }
        if self.read("/proc/net/dev") {
            host.network = parse::net_dev(&self.buf);
        }
        host.temperatures = self.temperatures();
        host.throttling = self.throttling();
        host.gpu_load_percent = JETSON_GPU_LOAD.iter().find_map(|path| {
            self.read(path)
                .then(|| parse::gpu_load_percent(&self.buf))?
        });
        self.limits.apply(&mut host);
        host
    }

    fn cpu(&self, host: &mut HostSample, ticks: &[CpuTicks]) {
        let before = |cpu: Option<u32>| self.previous.iter().find(|t| t.cpu == cpu);
        let secs = |t: u64| t as f64 / self.ticks_per_sec;
        for now in ticks {
            let percent = before(now.cpu).map_or(0.0, |b| parse::busy_percent(b, now));
            match now.cpu {
                None => host.cpu_percent = percent,
                Some(cpu) => {
                    host.cpu_per_core.push(percent);
                    host.cpu_seconds.push(CpuSeconds {
                        cpu,
                        user: secs(now.user),
                        nice: secs(now.nice),
                        system: secs(now.system),
                        idle: secs(now.idle),
                        iowait: secs(now.iowait),
                        irq: secs(now.irq),
                        softirq: secs(now.softirq),
                        steal: secs(now.steal),
                        guest: Some(GuestSeconds {
                            user: secs(now.guest),
                            nice: secs(now.guest_nice),
                        }),
                    });
                }
            }
        }
    }

    /// Reads the `/proc/pressure` files; `None` where PSI is absent or disabled (`psi=0`
    /// makes the reads fail with EOPNOTSUPP).
    fn pressure(&mut self) -> Option<Pressure> {
        let mut totals = |path: &str| {
            if self.read(path) {
                parse::pressure_totals(&self.buf)
            } else {
                (None, None)
            }
        };
        let (cpu_some, _) = totals(PRESSURE_CPU);
        let (memory_some, memory_full) = totals(PRESSURE_MEMORY);
        let (io_some, io_full) = totals(PRESSURE_IO);
        let (_, irq_full) = totals(PRESSURE_IRQ);
        let pressure = Pressure {
            cpu_waiting_seconds: cpu_some,
            memory_waiting_seconds: memory_some,
            memory_stalled_seconds: memory_full,
            io_waiting_seconds: io_some,
            io_stalled_seconds: io_full,
            irq_stalled_seconds: irq_full,
        };
        (pressure != Pressure::default()).then_some(pressure)
    }

    fn temperatures(&mut self) -> Vec<Temperature> {
        if self.scanned_at.is_none_or(|at| at.elapsed() >= RESCAN) {
            self.sensors = scan_sensors();
            self.scanned_at = Some(Instant::now());
        }
        let mut out = Vec::with_capacity(self.sensors.len());
        for i in 0..self.sensors.len() {
            let path = self.sensors[i].path.clone();
            if !self.read(&path) {
                continue;
            }
            if let Some(celsius) = parse::millidegrees(&self.buf) {
                let s = &self.sensors[i];
                out.push(Temperature {
                    chip: s.chip.clone(),
                    sensor: s.sensor.clone(),
                    celsius,
                    kind: s.kind,
                });
            }
        }
        out
    }

    fn throttling(&mut self) -> Option<Throttling> {
        if self.read(PI_THROTTLED) {
            return parse::throttled(&self.buf);
        }
        if let Some((at, last)) = self.vcgencmd_last {
            if at.elapsed() < RESCAN {
                return last;
            }
        }
        if self.vcgencmd.is_none() {
            self.vcgencmd = find_in_path("vcgencmd");
        }
        let now = Instant::now();
        let value = self.vcgencmd.as_ref().and_then(|cmd| {
            let out = std::process::Command::new(cmd)
                .arg("get_throttled")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            parse::throttled(&String::from_utf8_lossy(&out.stdout))
        });
        self.vcgencmd_last = Some((now, value));
        value
    }

    /// Reads `path` into the reused buffer; false when it cannot be read.
    fn read(&mut self, path: impl AsRef<Path>) -> bool {
        self.buf.clear();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_string(&mut self.buf))
            .is_ok()
    }
}

fn uname() -> Uname {
    match nix::sys::utsname::uname() {
        Ok(u) => {
            let s = |v: &std::ffi::OsStr| v.to_string_lossy().into_owned();
            Uname {
                sysname: s(u.sysname()),
                nodename: s(u.nodename()),
                release: s(u.release()),
                version: s(u.version()),
                machine: s(u.machine()),
            }
        }
        Err(_) => Uname::default(),
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.trim().to_string())
}

/// Lists thermal zones and hwmon `temp*_input` files.
fn scan_sensors() -> Vec<Sensor> {
    let mut sensors = Vec::new();
    let dirs = |root: &str, prefix: &str| -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = std::fs::read_dir(root)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
            .map(|e| e.path())
            .collect();
        found.sort();
        found
    };
    for zone in dirs("/sys/class/thermal", "thermal_zone") {
        let chip = zone
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = read_trimmed(&zone.join("type")).unwrap_or_else(|| chip.clone());
        sensors.push(Sensor {
            path: zone.join("temp"),
            chip,
            sensor: kind,
            kind: TemperatureKind::ThermalZone,
        });
    }
    for hwmon in dirs("/sys/class/hwmon", "hwmon") {
        let chip = read_trimmed(&hwmon.join("name")).unwrap_or_else(|| {
            hwmon
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let mut inputs: Vec<String> = std::fs::read_dir(&hwmon)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("temp") && n.ends_with("_input"))
            .collect();
        inputs.sort();
        for input in inputs {
            let base = input.trim_end_matches("_input").to_string();
            let sensor = read_trimmed(&hwmon.join(format!("{base}_label")))
                .filter(|l| !l.is_empty())
                .unwrap_or(base);
            sensors.push(Sensor {
                path: hwmon.join(&input),
                chip: chip.clone(),
                sensor,
                kind: TemperatureKind::Hwmon,
            });
        }
    }
    sensors
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin"), PathBuf::from("/opt/vc/bin")])
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_machine() {
        let mut sampler = HostSampler::new();
        let first = sampler.sample();
        assert!(!first.uname.sysname.is_empty());
        assert!(first.boot_time_seconds > 1_000_000_000);
        assert!(first.mem_total_bytes > 0);
        assert!(!first.cpu_seconds.is_empty());
        assert_eq!(first.cpu_per_core.len(), first.cpu_seconds.len());
        assert!(first.filesystems.iter().any(|f| f.mountpoint == "/"));
        assert!(first
            .network
            .iter()
            .any(|n| n.device == "lo" && n.detail.is_some()));
        let memory = first.memory.expect("meminfo detail");
        assert!(memory.slab_bytes >= memory.sreclaimable_bytes);
        let kernel = first.kernel.expect("/proc/stat counters");
        assert!(kernel.context_switches_total > 0 && kernel.interrupts_total > 0);
        let fds = first.file_descriptors.expect("file-nr");
        assert!(fds.allocated > 0 && fds.maximum >= fds.allocated);
        assert!(first.cpu_seconds.iter().all(|c| c.guest.is_some()));
        let root = first.filesystems.iter().find(|f| f.mountpoint == "/");
        assert!(root.is_some_and(|r| r.files.is_some() && r.readonly.is_some()));
        assert_eq!(
            first.pressure.and_then(|p| p.cpu_waiting_seconds).is_some(),
            std::fs::read_to_string(PRESSURE_CPU).is_ok()
        );
        let second = sampler.sample();
        assert!((0.0..=100.0).contains(&second.cpu_percent));
        assert!(second.cpu_seconds[0].idle >= first.cpu_seconds[0].idle);
    }
}
