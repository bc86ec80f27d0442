//! Prometheus text exposition (format 0.0.4) of [`Sample`]s, shared by the agent's own
//! `GET /metrics` and the control plane's central exposition.
//!
//! Host figures use node_exporter's family names, types and labels where the meaning is the
//! same (`node_cpu_seconds_total{cpu,mode}`, `node_memory_MemAvailable_bytes`, ...), so
//! dashboards such as Grafana's "Node Exporter Full" work unchanged; thermal zones are also
//! exposed as `node_hwmon_temp_celsius` because that dashboard reads temperatures only from
//! there. `lab`'s own figures are prefixed `lab_`: `lab_cpu_busy_percent`, `lab_cpus`,
//! `lab_pi_throttled{flag}`, `lab_gpu_load_percent`, and one family per role figure,
//! `lab_<engine>_<figure>{role}` plus `lab_<engine>_up{role}`.
//!
//! A role's text labels (e.g. MariaDB's GTID position) are not exposed: a label whose value
//! changes every second would make a new series every second in Prometheus.
//!
//! Every family is written once, with its `# HELP` and `# TYPE` lines, all its series
//! together (several boards included), as the format requires.

use std::collections::HashMap;
use std::fmt::Write as _;

use crate::metrics::{Sample, TemperatureKind};

/// `Content-Type` of the exposition; Prometheus 3 refuses a scrape without it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Renders `samples`, each tagged with its board name. With `extra_labels`, every series
/// carries `node="<board>"` and `instance="<board>"` (the central exposition); without, the
/// series are unlabelled by board (one agent's own `/metrics`, where the scraper adds
/// `instance`).
pub fn render(samples: &[(&str, &Sample)], extra_labels: bool) -> String {
    let mut out = Exposition::default();
    for (board, sample) in samples {
        let base: Vec<(&str, &str)> = if extra_labels {
            vec![("node", board), ("instance", board)]
        } else {
            Vec::new()
        };
        host(&mut out, &base, sample);
        roles(&mut out, &base, sample);
    }
    out.finish()
}

fn host(out: &mut Exposition, base: &[(&str, &str)], sample: &Sample) {
    let h = &sample.host;
    let u = &h.uname;
    let mut g = |name: &str, help: &str, labels: &[(&str, &str)], value: f64| {
        out.add(name, help, Kind::Gauge, base, labels, value);
    };
    g(
        "node_uname_info",
        "Labeled system information as provided by the uname system call.",
        &[
            ("sysname", &u.sysname),
            ("release", &u.release),
            ("version", &u.version),
            ("machine", &u.machine),
            ("nodename", &u.nodename),
        ],
        1.0,
    );
    g(
        "node_boot_time_seconds",
        "Node boot time, in unixtime.",
        &[],
        h.boot_time_seconds as f64,
    );
    g(
        "node_time_seconds",
        "System time in seconds since epoch (1970).",
        &[],
        sample.timestamp_ms as f64 / 1000.0,
    );
    g(
        "lab_uptime_seconds",
        "Seconds since the board booted (a virtual board: since its init started).",
        &[],
        h.uptime_secs as f64,
    );
    g(
        "lab_cpu_busy_percent",
        "Whole-machine CPU busy percent over the last sampling interval.",
        &[],
        f64::from(h.cpu_percent),
    );
    if h.cpus > 0.0 {
        g(
            "lab_cpus",
            "CPUs the board may use: its cgroup CPU quota (a virtual board), else the CPUs online.",
            &[],
            h.cpus,
        );
    }
    for (core, busy) in h.cpu_per_core.iter().enumerate() {
        let core = core.to_string();
        g(
            "lab_cpu_core_busy_percent",
            "Per-core CPU busy percent over the last sampling interval.",
            &[("cpu", &core)],
            f64::from(*busy),
        );
    }
    g("node_load1", "1m load average.", &[], h.load1);
    g("node_load5", "5m load average.", &[], h.load5);
    g("node_load15", "15m load average.", &[], h.load15);
    let memory = [
        ("node_memory_MemTotal_bytes", "MemTotal", h.mem_total_bytes),
        (
            "node_memory_MemAvailable_bytes",
            "MemAvailable",
            h.mem_available_bytes,
        ),
        ("node_memory_MemFree_bytes", "MemFree", h.mem_free_bytes),
        (
            "node_memory_SwapTotal_bytes",
            "SwapTotal",
            h.swap_total_bytes,
        ),
        ("node_memory_SwapFree_bytes", "SwapFree", h.swap_free_bytes),
    ];
    for (name, field, bytes) in memory {
        let help = format!("Memory information field {field}_bytes.");
        g(name, &help, &[], bytes as f64);
    }
    for fs in &h.filesystems {
        let labels = [
            ("device", fs.device.as_str()),
            ("fstype", fs.fstype.as_str()),
            ("mountpoint", fs.mountpoint.as_str()),
        ];
        g(
            "node_filesystem_size_bytes",
            "Filesystem size in bytes.",
            &labels,
            fs.size_bytes as f64,
        );
        g(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
            &labels,
            fs.avail_bytes as f64,
        );
        g(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
            &labels,
            fs.free_bytes as f64,
        );
    }
    for t in &h.temperatures {
        g(
            "node_hwmon_temp_celsius",
            "Hardware monitor for temperature (input).",
            &[("chip", &t.chip), ("sensor", &t.sensor)],
            t.celsius,
        );
    }
    for t in &h.temperatures {
        if t.kind == TemperatureKind::ThermalZone {
            let zone = t.chip.strip_prefix("thermal_zone").unwrap_or(&t.chip);
            g(
                "node_thermal_zone_temp",
                "Zone temperature in Celsius",
                &[("zone", zone), ("type", &t.sensor)],
                t.celsius,
            );
        }
    }
    if let Some(th) = &h.throttling {
        let flags = [
            ("under_voltage", th.under_voltage),
            ("frequency_capped", th.frequency_capped),
            ("throttled", th.throttled),
            ("soft_temp_limit", th.soft_temp_limit),
            ("under_voltage_occurred", th.under_voltage_occurred),
            ("frequency_capped_occurred", th.frequency_capped_occurred),
            ("throttled_occurred", th.throttled_occurred),
            ("soft_temp_limit_occurred", th.soft_temp_limit_occurred),
        ];
        for (flag, set) in flags {
            g(
                "lab_pi_throttled",
                "Raspberry Pi firmware throttling flag (1 = set), from get_throttled.",
                &[("flag", flag)],
                if set { 1.0 } else { 0.0 },
            );
        }
        g(
            "lab_pi_throttled_raw",
            "Raspberry Pi firmware get_throttled bit field.",
            &[],
            f64::from(th.raw),
        );
    }
    if let Some(load) = h.gpu_load_percent {
        g(
            "lab_gpu_load_percent",
            "Jetson GPU load percent.",
            &[],
            f64::from(load),
        );
    }

    let mut c = |name: &str, help: &str, labels: &[(&str, &str)], value: f64| {
        out.add(name, help, Kind::Counter, base, labels, value);
    };
    for cpu in &h.cpu_seconds {
        let core = cpu.cpu.to_string();
        let modes = [
            ("user", cpu.user),
            ("nice", cpu.nice),
            ("system", cpu.system),
            ("idle", cpu.idle),
            ("iowait", cpu.iowait),
            ("irq", cpu.irq),
            ("softirq", cpu.softirq),
            ("steal", cpu.steal),
        ];
        for (mode, secs) in modes {
            c(
                "node_cpu_seconds_total",
                "Seconds the CPUs spent in each mode.",
                &[("cpu", &core), ("mode", mode)],
                secs,
            );
        }
    }
    for d in &h.disks {
        let labels = [("device", d.device.as_str())];
        c(
            "node_disk_read_bytes_total",
            "The total number of bytes read successfully.",
            &labels,
            d.read_bytes_total as f64,
        );
        c(
            "node_disk_written_bytes_total",
            "The total number of bytes written successfully.",
            &labels,
            d.written_bytes_total as f64,
        );
    }
    for n in &h.network {
        let labels = [("device", n.device.as_str())];
        let counters = [
            ("receive_bytes", n.rx_bytes_total),
            ("transmit_bytes", n.tx_bytes_total),
            ("receive_packets", n.rx_packets_total),
            ("transmit_packets", n.tx_packets_total),
        ];
        for (what, value) in counters {
            let name = format!("node_network_{what}_total");
            let help = format!("Network device statistic {what}.");
            c(&name, &help, &labels, value as f64);
        }
    }
}

fn roles(out: &mut Exposition, base: &[(&str, &str)], sample: &Sample) {
    for role in &sample.roles {
        let engine = metric_name_part(&role.engine);
        let labels = [("role", role.role.as_str())];
        out.add(
            &format!("lab_{engine}_up"),
            &format!(
                "Whether the {} engine answered the last sample.",
                role.engine
            ),
            Kind::Gauge,
            base,
            &labels,
            if role.up { 1.0 } else { 0.0 },
        );
        for figure in &role.figures {
            let name = format!("lab_{engine}_{}", metric_name_part(&figure.name));
            let kind = if figure.counter {
                Kind::Counter
            } else {
                Kind::Gauge
            };
            let help = format!("{} figure {}.", role.engine, figure.name);
            out.add(&name, &help, kind, base, &labels, figure.value);
        }
    }
}

/// Replaces anything a metric name may not contain with `_` (`lab-app` → `lab_app`).
fn metric_name_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
    series: String,
}

/// Families in first-seen order, each collecting its series.
#[derive(Default)]
struct Exposition {
    families: Vec<Family>,
    index: HashMap<String, usize>,
}

impl Exposition {
    fn add(
        &mut self,
        name: &str,
        help: &str,
        kind: Kind,
        base: &[(&str, &str)],
        labels: &[(&str, &str)],
        value: f64,
    ) {
        let slot = match self.index.get(name) {
            Some(slot) => *slot,
            None => {
                self.families.push(Family {
                    name: name.to_string(),
                    help: help.to_string(),
                    kind,
                    series: String::new(),
                });
                self.index.insert(name.to_string(), self.families.len() - 1);
                self.families.len() - 1
            }
        };
        let family = &mut self.families[slot];
        let line = &mut family.series;
        line.push_str(name);
        let mut all = base.iter().chain(labels).peekable();
        if all.peek().is_some() {
            line.push('{');
            for (i, (key, value)) in all.enumerate() {
                if i > 0 {
                    line.push(',');
                }
                line.push_str(key);
                line.push_str("=\"");
                escape_label_value(line, value);
                line.push('"');
            }
            line.push('}');
        }
        line.push(' ');
        write_value(line, value);
        line.push('\n');
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for family in self.families {
            let kind = match family.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
            };
            out.push_str("# HELP ");
            out.push_str(&family.name);
            out.push(' ');
            escape_help(&mut out, &family.help);
            out.push('\n');
            let _ = writeln!(out, "# TYPE {} {kind}", family.name);
            out.push_str(&family.series);
        }
        out
    }
}

/// Label values escape `\`, `"` and newline.
fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes `\` and newline.
fn escape_help(out: &mut String, help: &str) {
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
    } else if value == f64::INFINITY {
        out.push_str("+Inf");
    } else if value == f64::NEG_INFINITY {
        out.push_str("-Inf");
    } else {
        let _ = write!(out, "{value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{
        CpuSeconds, Figure, FilesystemSample, HostSample, NetworkSample, RoleSample, Temperature,
        Uname,
    };

    fn sample(board: &str) -> Sample {
        Sample {
            board: board.to_string(),
            seq: 7,
            timestamp_ms: 1_700_000_000_500,
            host: HostSample {
                uname: Uname {
                    sysname: "Linux".into(),
                    nodename: board.into(),
                    release: "6.1.0-rpi7".into(),
                    version: "#1 SMP PREEMPT \"quoted\"".into(),
                    machine: "aarch64".into(),
                },
                cpu_seconds: vec![CpuSeconds {
                    cpu: 0,
                    user: 12.5,
                    idle: 100.0,
                    ..Default::default()
                }],
                filesystems: vec![FilesystemSample {
                    device: "/dev/mmcblk0p2".into(),
                    mountpoint: "/mnt/odd \\ path\nx".into(),
                    fstype: "ext4".into(),
                    size_bytes: 10,
                    avail_bytes: 5,
                    free_bytes: 6,
                }],
                network: vec![NetworkSample {
                    device: "eth0".into(),
                    rx_bytes_total: 1,
                    ..Default::default()
                }],
                temperatures: vec![Temperature {
                    chip: "thermal_zone0".into(),
                    sensor: "cpu-thermal".into(),
                    celsius: 48.3,
                    kind: TemperatureKind::ThermalZone,
                }],
                gpu_load_percent: Some(f32::NAN),
                cpus: 0.5,
                ..Default::default()
            },
            roles: vec![RoleSample {
                role: "lb".into(),
                engine: "nginx".into(),
                up: true,
                figures: vec![Figure {
                    name: "requests_total".into(),
                    value: 42.0,
                    counter: true,
                }],
                labels: Vec::new(),
            }],
        }
    }

    #[test]
    fn families_are_grouped_typed_and_escaped() {
        let (a, b) = (sample("pi-1"), sample("pi-2"));
        let text = render(&[("pi-1", &a), ("pi-2", &b)], true);
        // One HELP and TYPE per family, even with two boards.
        assert_eq!(text.matches("# TYPE node_load1 gauge\n").count(), 1);
        assert_eq!(text.matches("# HELP node_load1 ").count(), 1);
        let load = text.find("node_load1{node=\"pi-1\"").expect("pi-1 load");
        let load2 = text.find("node_load1{node=\"pi-2\"").expect("pi-2 load");
        let next = text.find("# HELP node_load5").expect("load5");
        assert!(
            load < load2 && load2 < next,
            "series of a family are together"
        );
        assert!(text.contains(
            "node_cpu_seconds_total{node=\"pi-1\",instance=\"pi-1\",cpu=\"0\",mode=\"user\"} 12.5\n"
        ));
        assert!(text.contains("# TYPE node_cpu_seconds_total counter\n"));
        assert!(text.contains("version=\"#1 SMP PREEMPT \\\"quoted\\\"\""));
        assert!(text.contains("mountpoint=\"/mnt/odd \\\\ path\\nx\""));
        assert!(text.contains(
            "node_hwmon_temp_celsius{node=\"pi-2\",instance=\"pi-2\",chip=\"thermal_zone0\",sensor=\"cpu-thermal\"} 48.3\n"
        ));
        assert!(text.contains("zone=\"0\",type=\"cpu-thermal\"} 48.3\n"));
        assert!(text.contains("lab_gpu_load_percent{node=\"pi-1\",instance=\"pi-1\"} NaN\n"));
        assert!(text.contains("# TYPE lab_nginx_requests_total counter\n"));
        assert!(text.contains("lab_nginx_up{node=\"pi-1\",instance=\"pi-1\",role=\"lb\"} 1\n"));
        assert!(text.contains("node_time_seconds{node=\"pi-1\",instance=\"pi-1\"} 1700000000.5\n"));
        assert!(text.contains("lab_cpus{node=\"pi-1\",instance=\"pi-1\"} 0.5\n"));
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn without_extra_labels_series_have_only_their_own() {
        let a = sample("pi-1");
        let text = render(&[("pi-1", &a)], false);
        assert!(text.contains("\nnode_load1 0\n"));
        assert!(text.contains("lab_nginx_requests_total{role=\"lb\"} 42\n"));
        assert!(!text.contains("instance="));
    }

    #[test]
    fn names_are_sanitized_and_values_spelled() {
        assert_eq!(metric_name_part("lab-app"), "lab_app");
        let mut out = String::new();
        write_value(&mut out, f64::INFINITY);
        out.push(' ');
        write_value(&mut out, f64::NEG_INFINITY);
        out.push(' ');
        write_value(&mut out, 3.0);
        assert_eq!(out, "+Inf -Inf 3");
    }
}
