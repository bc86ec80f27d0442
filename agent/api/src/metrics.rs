//! Metric samples: what an agent measures once a second and streams to the control plane.
//!
//! Agents send raw counters and gauges (like node_exporter); rates (network bytes/s, req/s)
//! are derived by the control plane from consecutive samples, so a lost sample costs
//! resolution, never correctness. Absent sources are absent (`None` / empty), never errors.
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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilesystemSample {
    pub device: String,
    pub mountpoint: String,
    pub fstype: String,
    pub size_bytes: u64,
    pub avail_bytes: u64,
    pub free_bytes: u64,
}

/// Cumulative block device I/O (`node_disk_read_bytes_total` / `..._written_bytes_total`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskSample {
    pub device: String,
    pub read_bytes_total: u64,
    pub written_bytes_total: u64,
}

/// Cumulative interface counters (`node_network_receive_bytes_total{device}` ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSample {
    pub device: String,
    pub rx_bytes_total: u64,
    pub tx_bytes_total: u64,
    pub rx_packets_total: u64,
    pub tx_packets_total: u64,
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
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleSample {
    /// Role name as in the inventory (`lb`, `cache`, `db-master`, ...).
    pub role: String,
    /// Engine answering it (`nginx`, `memcached`, `mariadb`, `lab-app`, ...).
    pub engine: String,
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
