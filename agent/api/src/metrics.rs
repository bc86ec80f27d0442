//! Metric samples: what an agent measures once a second and streams to the control plane.
//!
//! Agents send raw counters and gauges (like node_exporter); rates (network bytes/s, req/s)
//! are derived by the control plane from consecutive samples, so a lost sample costs
//! resolution, never correctness. Absent sources are absent (`None` / empty), never errors.
//! Fields added after the first release are `Option`s with `#[serde(default)]`: a sample from
//! an older agent still parses, and what it did not measure is left out of the exposition
//! rather than shown as 0.
//!
//! The stream is `GET paths::SAMPLES_STREAM`: newline-delimited JSON, one [`Sample`] per line,
//! first line immediately, then one per sampling interval, for as long as the client reads.

use serde::{Deserialize, Serialize};

/// One second of one board.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Board name from the agent's config.
    pub board: String,
    /// Increments by one per sample since the agent started; a reset means a restart.
    pub seq: u64,
    /// Milliseconds since the Unix epoch, board clock.
    pub timestamp_ms: u64,
    pub host: HostSample,
    /// One entry per role engine the agent watches (empty until roles are assigned).
    #[serde(default)]
    pub roles: Vec<RoleSample>,
}

/// Host metrics. Names follow node_exporter where the meaning is the same.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostSample {
    pub uname: Uname,
    /// `node_boot_time_seconds`.
    pub boot_time_seconds: u64,
    pub uptime_secs: u64,
    /// Whole-machine CPU busy %, 0..=100, over the last interval.
    pub cpu_percent: f32,
    /// Per core busy %, over the last interval.
    pub cpu_per_core: Vec<f32>,
    /// Cumulative per-core CPU seconds by mode (`node_cpu_seconds_total{cpu,mode}`).
    /// Under a CPU quota: `ceil(cpus)` virtual cores sharing the group's CPU time (see
    /// the agent's `cgroup_limits`).
    pub cpu_seconds: Vec<CpuSeconds>,
    /// CPUs the board may use: its cgroup CPU quota (capped by the CPUs online), else the
    /// CPUs online. 0 from agents that predate it.
    #[serde(default)]
    pub cpus: f64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// `MemTotal`, or the board's cgroup memory limit where it has one (capped by
    /// `MemTotal`); `MemAvailable` and `MemFree` are then derived against the limit.
    pub mem_total_bytes: u64,
    pub mem_available_bytes: u64,
    pub mem_free_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
    /// The rest of `/proc/meminfo` that dashboards use (`node_memory_Cached_bytes`, ...).
    #[serde(default)]
    pub memory: Option<MemoryDetail>,
    /// Kernel activity counters from `/proc/stat`.
    #[serde(default)]
    pub kernel: Option<KernelCounters>,
    /// Pressure stall information (`/proc/pressure/*`, Linux 4.20+ with PSI enabled).
    #[serde(default)]
    pub pressure: Option<Pressure>,
    /// `/proc/sys/fs/file-nr`.
    #[serde(default)]
    pub file_descriptors: Option<FileDescriptors>,
    pub filesystems: Vec<FilesystemSample>,
    pub disks: Vec<DiskSample>,
    pub network: Vec<NetworkSample>,
    /// Thermal zones and hwmon sensors (`node_hwmon_temp_celsius{chip,sensor}`).
    pub temperatures: Vec<Temperature>,
    /// Raspberry Pi only.
    pub throttling: Option<Throttling>,
    /// Jetson only: GPU load 0..=100.
    pub gpu_load_percent: Option<f32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uname {
    pub sysname: String,
    pub nodename: String,
    pub release: String,
    pub version: String,
    pub machine: String,
}

/// Cumulative seconds one core spent per mode (from /proc/stat).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuSeconds {
    pub cpu: u32,
    pub user: f64,
    pub nice: f64,
    pub system: f64,
    pub idle: f64,
    pub iowait: f64,
    pub irq: f64,
    pub softirq: f64,
    pub steal: f64,
    /// Seconds running a guest (VM), already included in `user` and `nice`
    /// (`node_cpu_guest_seconds_total{mode="user"|"nice"}`).
    #[serde(default)]
    pub guest: Option<GuestSeconds>,
}

/// Guest time of one core, from `/proc/stat` (Linux 2.6.24+ / 2.6.33+).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct GuestSeconds {
    pub user: f64,
    pub nice: f64,
}

/// `/proc/meminfo` fields beyond the basics, in bytes (`node_memory_<Field>_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryDetail {
    pub cached_bytes: u64,
    pub buffers_bytes: u64,
    pub sreclaimable_bytes: u64,
    pub slab_bytes: u64,
    pub page_tables_bytes: u64,
    pub swap_cached_bytes: u64,
}

/// System-wide counters and gauges of `/proc/stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    /// `ctxt` (`node_context_switches_total`).
    pub context_switches_total: u64,
    /// First field of `intr` (`node_intr_total`).
    pub interrupts_total: u64,
    /// `processes` (`node_forks_total`).
    pub forks_total: u64,
    /// `procs_running` (`node_procs_running`).
    pub procs_running: u64,
    /// `procs_blocked` (`node_procs_blocked`).
    pub procs_blocked: u64,
}

/// Cumulative stall seconds (the `total=` microseconds of `/proc/pressure/*`); each is
/// `None` where the kernel has no such file or line (`irq` needs Linux 6.1+).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Pressure {
    /// cpu `some` (`node_pressure_cpu_waiting_seconds_total`).
    pub cpu_waiting_seconds: Option<f64>,
    /// memory `some` / `full`.
    pub memory_waiting_seconds: Option<f64>,
    pub memory_stalled_seconds: Option<f64>,
    /// io `some` / `full`.
    pub io_waiting_seconds: Option<f64>,
    pub io_stalled_seconds: Option<f64>,
    /// irq `full`.
    pub irq_stalled_seconds: Option<f64>,
}

/// `/proc/sys/fs/file-nr`: open file handles and the system-wide limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDescriptors {
    pub allocated: u64,
    pub maximum: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemSample {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
    pub free_bytes: u64,
    /// Inodes (`node_filesystem_files` / `node_filesystem_files_free`).
    #[serde(default)]
    pub files: Option<u64>,
    #[serde(default)]
    pub files_free: Option<u64>,
    /// Mounted read-only (`node_filesystem_readonly`).
    #[serde(default)]
    pub readonly: Option<bool>,
}

/// Cumulative block device I/O (`node_disk_read_bytes_total` / `..._written_bytes_total`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSample {
    pub device: String,
    pub read_bytes_total: u64,
    pub written_bytes_total: u64,
    /// The other classic `/proc/diskstats` fields.
    #[serde(default)]
    pub io: Option<DiskIo>,
}

/// Operation counts and times of one disk (`node_disk_reads_completed_total`, ...); times
/// in milliseconds as the kernel counts them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskIo {
    pub reads_completed_total: u64,
    pub reads_merged_total: u64,
    pub read_time_ms_total: u64,
    pub writes_completed_total: u64,
    pub writes_merged_total: u64,
    pub write_time_ms_total: u64,
    /// I/Os in progress now (a gauge).
    pub io_now: u64,
    pub io_time_ms_total: u64,
    pub io_time_weighted_ms_total: u64,
}

/// Cumulative interface counters (`node_network_receive_bytes_total{device}` ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSample {
    pub device: String,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_packets_total: u64,
    pub tx_packets_total: u64,
    /// The other `/proc/net/dev` counters.
    #[serde(default)]
    pub detail: Option<NetworkDetail>,
}

/// Error, drop and other interface counters (`node_network_receive_errs_total`, ...).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkDetail {
    pub rx_errs_total: u64,
    pub rx_drop_total: u64,
    pub rx_fifo_total: u64,
    pub rx_frame_total: u64,
    pub rx_compressed_total: u64,
    pub rx_multicast_total: u64,
    pub tx_errs_total: u64,
    pub tx_drop_total: u64,
    pub tx_fifo_total: u64,
    pub tx_colls_total: u64,
    pub tx_carrier_total: u64,
    pub tx_compressed_total: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Temperature {
    /// hwmon chip name (e.g. `cpu_thermal`, `coretemp`), or for a thermal zone its
    /// directory name (`thermal_zone0`).
    pub chip: String,
    /// hwmon sensor (`temp1`, or its label when the chip gives one), or for a thermal zone
    /// its type (`cpu-thermal`).
    pub sensor: String,
    pub celsius: f64,
    /// Where the reading came from; older agents did not say (hwmon assumed).
    #[serde(default)]
    pub kind: TemperatureKind,
}

/// Source of a [`Temperature`]: `/sys/class/hwmon` or `/sys/class/thermal`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemperatureKind {
    #[default]
    Hwmon,
    ThermalZone,
}

/// Raspberry Pi firmware throttling flags (`vcgencmd get_throttled` bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttling {
    pub raw: u32,
    pub under_voltage: bool,
    pub frequency_capped: bool,
    pub throttled: bool,
    pub soft_temp_limit: bool,
    pub under_voltage_occurred: bool,
    pub frequency_capped_occurred: bool,
    pub throttled_occurred: bool,
    pub soft_temp_limit_occurred: bool,
}

/// Figures of one role engine. `figures` holds counters and gauges under stable names per
/// role (documented by the collector that makes them, e.g. `requests_total` for nginx,
/// `get_hits_total` for memcached); the control plane exposes them as `lab_<role>_<name>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleSample {
    pub role: crate::Role,
    /// The engine answering for the role.
    pub engine: crate::Engine,
    /// Whether the engine answered this second.
    pub up: bool,
    pub figures: Vec<Figure>,
    /// Text facts (e.g. GTID position, read_only) that are not numbers.
    #[serde(default)]
    pub labels: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub name: String,
    pub value: f64,
    /// true: monotonically increasing counter (rate it); false: gauge.
    pub counter: bool,
}
