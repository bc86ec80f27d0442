//! Prometheus text exposition (format 0.0.4) of [`Sample`]s, shared by the agent's own
//! `GET /metrics` and the control plane's central exposition.
//!
//! Host figures use node_exporter's family names, types and labels where the meaning is the
//! same (`node_cpu_seconds_total{cpu,mode}`, `node_memory_MemAvailable_bytes`, ...), so
//! dashboards such as Grafana's "Node Exporter Full" work unchanged; thermal zones are also
//! exposed as `node_hwmon_temp_celsius` because that dashboard reads temperatures only from
//! there, and every chip has a `node_hwmon_chip_names` series, which its temperature panel
//! joins on. Families added after the first release are rendered only when the sample has
//! their (`Option`) fields, so an older agent's sample never shows them as 0. `lab`'s own
//! figures are prefixed `lab_`: `lab_cpu_busy_percent`, `lab_cpus`,
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
    let mut memory = vec![
        ("MemTotal", h.mem_total_bytes),
        ("MemAvailable", h.mem_available_bytes),
        ("MemFree", h.mem_free_bytes),
        ("SwapTotal", h.swap_total_bytes),
        ("SwapFree", h.swap_free_bytes),
    ];
    if let Some(m) = &h.memory {
        memory.extend([
            ("Cached", m.cached_bytes),
            ("Buffers", m.buffers_bytes),
            ("SReclaimable", m.sreclaimable_bytes),
            ("Slab", m.slab_bytes),
            ("PageTables", m.page_tables_bytes),
            ("SwapCached", m.swap_cached_bytes),
        ]);
    }
    for (field, bytes) in memory {
        let name = format!("node_memory_{field}_bytes");
        let help = format!("Memory information field {field}_bytes.");
        g(&name, &help, &[], bytes as f64);
    }
    if let Some(k) = &h.kernel {
        g(
            "node_procs_running",
            "Number of processes in runnable state.",
            &[],
            k.procs_running as f64,
        );
        g(
            "node_procs_blocked",
            "Number of processes blocked waiting for I/O to complete.",
            &[],
            k.procs_blocked as f64,
        );
    }
    if let Some(fd) = &h.file_descriptors {
        g(
            "node_filefd_allocated",
            "File descriptor statistics: allocated.",
            &[],
            fd.allocated as f64,
        );
        g(
            "node_filefd_maximum",
            "File descriptor statistics: maximum.",
            &[],
            fd.maximum as f64,
        );
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
        if let Some(files) = fs.files {
            g(
                "node_filesystem_files",
                "Filesystem total file nodes.",
                &labels,
                files as f64,
            );
        }
        if let Some(free) = fs.files_free {
            g(
                "node_filesystem_files_free",
                "Filesystem total free file nodes.",
                &labels,
                free as f64,
            );
        }
        if let Some(readonly) = fs.readonly {
            g(
                "node_filesystem_readonly",
                "Filesystem read-only status.",
                &labels,
                if readonly { 1.0 } else { 0.0 },
            );
        }
    }
    for t in &h.temperatures {
        g(
            "node_hwmon_temp_celsius",
            "Hardware monitor for temperature (input).",
            &[("chip", &t.chip), ("sensor", &t.sensor)],
            t.celsius,
        );
    }
    // Dashboards join temperatures with their chip's name (`* on(chip) group_left(chip_name)
    // node_hwmon_chip_names`): without this family the temperature panels stay empty.
    let mut chips_seen: Vec<&str> = Vec::new();
    for t in &h.temperatures {
        if chips_seen.contains(&t.chip.as_str()) {
            continue;
        }
        chips_seen.push(&t.chip);
        let readable = match t.kind {
            TemperatureKind::Hwmon => &t.chip,
            TemperatureKind::ThermalZone => &t.sensor,
        };
        g(
            "node_hwmon_chip_names",
            "Annotation metric for human-readable chip names",
            &[("chip", &t.chip), ("chip_name", &chip_name(readable))],
            1.0,
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

    for d in &h.disks {
        if let Some(io) = &d.io {
            out.add(
                "node_disk_io_now",
                "The number of I/Os currently in progress.",
                Kind::Gauge,
                base,
                &[("device", d.device.as_str())],
                io.io_now as f64,
            );
        }
    }

    let mut c = |name: &str, help: &str, labels: &[(&str, &str)], value: f64| {
        out.add(name, help, Kind::Counter, base, labels, value);
    };
    if let Some(k) = &h.kernel {
        c(
            "node_context_switches_total",
            "Total number of context switches.",
            &[],
            k.context_switches_total as f64,
        );
        c(
            "node_intr_total",
            "Total number of interrupts serviced.",
            &[],
            k.interrupts_total as f64,
        );
        c(
            "node_forks_total",
            "Total number of forks.",
            &[],
            k.forks_total as f64,
        );
    }
    if let Some(p) = &h.pressure {
        let stalls = [
            (
                "node_pressure_cpu_waiting_seconds_total",
                "Total time in seconds that processes have waited for CPU time",
                p.cpu_waiting_seconds,
            ),
            (
                "node_pressure_memory_waiting_seconds_total",
                "Total time in seconds that processes have waited for memory",
                p.memory_waiting_seconds,
            ),
            (
                "node_pressure_memory_stalled_seconds_total",
                "Total time in seconds no process could make progress due to memory congestion",
                p.memory_stalled_seconds,
            ),
            (
                "node_pressure_io_waiting_seconds_total",
                "Total time in seconds that processes have waited due to IO congestion",
                p.io_waiting_seconds,
            ),
            (
                "node_pressure_io_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IO congestion",
                p.io_stalled_seconds,
            ),
            (
                "node_pressure_irq_stalled_seconds_total",
                "Total time in seconds no process could make progress due to IRQ congestion",
                p.irq_stalled_seconds,
            ),
        ];
        for (name, help, secs) in stalls {
            if let Some(secs) = secs {
                c(name, help, &[], secs);
            }
        }
    }
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
        if let Some(guest) = &cpu.guest {
            for (mode, secs) in [("user", guest.user), ("nice", guest.nice)] {
                c(
                    "node_cpu_guest_seconds_total",
                    "Seconds the CPUs spent in guests (VMs) for each mode.",
                    &[("cpu", &core), ("mode", mode)],
                    secs,
                );
            }
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
        let Some(io) = &d.io else { continue };
        let ms = |v: u64| v as f64 / 1000.0;
        let counters = [
            (
                "node_disk_reads_completed_total",
                "The total number of reads completed successfully.",
                io.reads_completed_total as f64,
            ),
            (
                "node_disk_reads_merged_total",
                "The total number of reads merged.",
                io.reads_merged_total as f64,
            ),
            (
                "node_disk_read_time_seconds_total",
                "The total number of seconds spent by all reads.",
                ms(io.read_time_ms_total),
            ),
            (
                "node_disk_writes_completed_total",
                "The total number of writes completed successfully.",
                io.writes_completed_total as f64,
            ),
            (
                "node_disk_writes_merged_total",
                "The number of writes merged.",
                io.writes_merged_total as f64,
            ),
            (
                "node_disk_write_time_seconds_total",
                "This is the total number of seconds spent by all writes.",
                ms(io.write_time_ms_total),
            ),
            (
                "node_disk_io_time_seconds_total",
                "Total seconds spent doing I/Os.",
                ms(io.io_time_ms_total),
            ),
            (
                "node_disk_io_time_weighted_seconds_total",
                "The weighted # of seconds spent doing I/Os.",
                ms(io.io_time_weighted_ms_total),
            ),
        ];
        for (name, help, value) in counters {
            c(name, help, &labels, value);
        }
    }
    for n in &h.network {
        let labels = [("device", n.device.as_str())];
        let counters = [
            ("receive_bytes", n.rx_bytes_total),
            ("transmit_bytes", n.tx_bytes_total),
            ("receive_packets", n.rx_packets_total),
            ("transmit_packets", n.tx_packets_total),
        ];
        let detail = n.detail.as_ref().map(|d| {
            [
                ("receive_errs", d.rx_errs_total),
                ("receive_drop", d.rx_drop_total),
                ("receive_fifo", d.rx_fifo_total),
                ("receive_frame", d.rx_frame_total),
                ("receive_compressed", d.rx_compressed_total),
                ("receive_multicast", d.rx_multicast_total),
                ("transmit_errs", d.tx_errs_total),
                ("transmit_drop", d.tx_drop_total),
                ("transmit_fifo", d.tx_fifo_total),
                ("transmit_colls", d.tx_colls_total),
                ("transmit_carrier", d.tx_carrier_total),
                ("transmit_compressed", d.tx_compressed_total),
            ]
        });
        for (what, value) in counters.into_iter().chain(detail.into_iter().flatten()) {
            let name = format!("node_network_{what}_total");
            let help = format!("Network device statistic {what}.");
            c(&name, &help, &labels, value as f64);
        }
    }
}

fn roles(out: &mut Exposition, base: &[(&str, &str)], sample: &Sample) {
    for role in &sample.roles {
        // Our own engines drop their `lab-` prefix: `lab_app_requests_total`.
        let engine = metric_name_part(role.engine.as_str().trim_start_matches("lab-"));
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

/// node_exporter's spelling of a human-readable chip name: lower case, anything but
/// `[a-z0-9:_]` as `_`, no leading or trailing `_` (`CPU-Thermal` → `cpu_thermal`).
fn chip_name(text: &str) -> String {
    let replaced: String = text
        .to_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == ':' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    replaced.trim_matches('_').to_string()
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
        CpuSeconds, DiskIo, DiskSample, Figure, FileDescriptors, FilesystemSample, GuestSeconds,
        HostSample, KernelCounters, MemoryDetail, NetworkDetail, NetworkSample, Pressure,
        RoleSample, Temperature, Uname,
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
                    ..Default::default()
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
                role: crate::Role::Lb,
                engine: crate::Engine::Nginx,
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

    /// A host sample carrying every field added for "Node Exporter Full", with values whose
    /// rendering is known.
    fn detailed_sample() -> Sample {
        let mut s = sample("pi-1");
        let h = &mut s.host;
        h.memory = Some(MemoryDetail {
            cached_bytes: 3_000,
            buffers_bytes: 200,
            sreclaimable_bytes: 100,
            slab_bytes: 150,
            page_tables_bytes: 40,
            swap_cached_bytes: 8,
        });
        h.kernel = Some(KernelCounters {
            context_switches_total: 1_871_220,
            interrupts_total: 1_352_874,
            forks_total: 27_260,
            procs_running: 3,
            procs_blocked: 1,
        });
        h.pressure = Some(Pressure {
            cpu_waiting_seconds: Some(129.513617),
            io_waiting_seconds: Some(3.174345),
            io_stalled_seconds: Some(1.118541),
            memory_waiting_seconds: Some(0.0),
            memory_stalled_seconds: Some(0.0),
            irq_stalled_seconds: None,
        });
        h.file_descriptors = Some(FileDescriptors {
            allocated: 967,
            maximum: 2_466_170,
        });
        h.cpu_seconds[0].guest = Some(GuestSeconds {
            user: 40.21,
            nice: 0.17,
        });
        let fs = &mut h.filesystems[0];
        fs.mountpoint = "/".into();
        (fs.files, fs.files_free, fs.readonly) = (Some(1_000), Some(600), Some(true));
        h.disks = vec![DiskSample {
            device: "mmcblk0".into(),
            read_bytes_total: 512,
            written_bytes_total: 1_024,
            io: Some(DiskIo {
                reads_completed_total: 5_000,
                reads_merged_total: 10,
                read_time_ms_total: 100,
                writes_completed_total: 2_000,
                writes_merged_total: 20,
                write_time_ms_total: 300,
                io_now: 2,
                io_time_ms_total: 54_284,
                io_time_weighted_ms_total: 620_701,
            }),
        }];
        h.network[0].detail = Some(NetworkDetail {
            rx_errs_total: 7,
            rx_drop_total: 3,
            tx_errs_total: 4,
            tx_drop_total: 6,
            tx_colls_total: 1,
            ..Default::default()
        });
        h.temperatures.push(Temperature {
            chip: "coretemp".into(),
            sensor: "Package id 0".into(),
            celsius: 51.0,
            kind: TemperatureKind::Hwmon,
        });
        h.temperatures.push(Temperature {
            chip: "coretemp".into(),
            sensor: "Core 0".into(),
            celsius: 50.0,
            kind: TemperatureKind::Hwmon,
        });
        s
    }

    #[test]
    fn node_exporter_full_families_are_named_typed_and_scaled() {
        let s = detailed_sample();
        let text = render(&[("pi-1", &s)], false);
        for line in [
            "# TYPE node_memory_Cached_bytes gauge\nnode_memory_Cached_bytes 3000\n",
            "node_memory_Buffers_bytes 200\n",
            "node_memory_SReclaimable_bytes 100\n",
            "node_memory_Slab_bytes 150\n",
            "node_memory_PageTables_bytes 40\n",
            "node_memory_SwapCached_bytes 8\n",
            "# TYPE node_context_switches_total counter\nnode_context_switches_total 1871220\n",
            "# TYPE node_intr_total counter\nnode_intr_total 1352874\n",
            "# TYPE node_forks_total counter\nnode_forks_total 27260\n",
            "# TYPE node_procs_running gauge\nnode_procs_running 3\n",
            "node_procs_blocked 1\n",
            "# TYPE node_filefd_allocated gauge\nnode_filefd_allocated 967\n",
            "# TYPE node_filefd_maximum gauge\nnode_filefd_maximum 2466170\n",
            "# TYPE node_pressure_cpu_waiting_seconds_total counter\nnode_pressure_cpu_waiting_seconds_total 129.513617\n",
            "node_pressure_io_waiting_seconds_total 3.174345\n",
            "node_pressure_io_stalled_seconds_total 1.118541\n",
            "node_pressure_memory_waiting_seconds_total 0\n",
            "node_pressure_memory_stalled_seconds_total 0\n",
            "# TYPE node_cpu_guest_seconds_total counter\nnode_cpu_guest_seconds_total{cpu=\"0\",mode=\"user\"} 40.21\n",
            "node_cpu_guest_seconds_total{cpu=\"0\",mode=\"nice\"} 0.17\n",
            "# TYPE node_filesystem_files gauge\nnode_filesystem_files{device=\"/dev/mmcblk0p2\",fstype=\"ext4\",mountpoint=\"/\"} 1000\n",
            "node_filesystem_files_free{device=\"/dev/mmcblk0p2\",fstype=\"ext4\",mountpoint=\"/\"} 600\n",
            "# TYPE node_filesystem_readonly gauge\nnode_filesystem_readonly{device=\"/dev/mmcblk0p2\",fstype=\"ext4\",mountpoint=\"/\"} 1\n",
            "# TYPE node_disk_reads_completed_total counter\nnode_disk_reads_completed_total{device=\"mmcblk0\"} 5000\n",
            "node_disk_writes_completed_total{device=\"mmcblk0\"} 2000\n",
            "node_disk_reads_merged_total{device=\"mmcblk0\"} 10\n",
            "node_disk_writes_merged_total{device=\"mmcblk0\"} 20\n",
            // Milliseconds in /proc/diskstats, seconds in the exposition.
            "node_disk_read_time_seconds_total{device=\"mmcblk0\"} 0.1\n",
            "node_disk_write_time_seconds_total{device=\"mmcblk0\"} 0.3\n",
            "# TYPE node_disk_io_time_seconds_total counter\nnode_disk_io_time_seconds_total{device=\"mmcblk0\"} 54.284\n",
            "node_disk_io_time_weighted_seconds_total{device=\"mmcblk0\"} 620.701\n",
            "# TYPE node_disk_io_now gauge\nnode_disk_io_now{device=\"mmcblk0\"} 2\n",
            "# TYPE node_network_receive_errs_total counter\nnode_network_receive_errs_total{device=\"eth0\"} 7\n",
            "node_network_receive_drop_total{device=\"eth0\"} 3\n",
            "node_network_transmit_errs_total{device=\"eth0\"} 4\n",
            "node_network_transmit_drop_total{device=\"eth0\"} 6\n",
            "node_network_transmit_colls_total{device=\"eth0\"} 1\n",
            "node_network_receive_multicast_total{device=\"eth0\"} 0\n",
            // One chip_names series per chip: the zone's type and the hwmon name, cleaned.
            "# TYPE node_hwmon_chip_names gauge\nnode_hwmon_chip_names{chip=\"thermal_zone0\",chip_name=\"cpu_thermal\"} 1\nnode_hwmon_chip_names{chip=\"coretemp\",chip_name=\"coretemp\"} 1\n# HELP",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        // Absent on this kernel: not rendered at all (no irq pressure file).
        assert!(!text.contains("node_pressure_irq_stalled_seconds_total"));
        // RAM used as dashboard 1860 computes it is now MemTotal - MemFree - 3300.
        assert!(text.contains("node_memory_MemFree_bytes "));
    }

    #[test]
    fn an_older_agents_sample_renders_no_new_family() {
        // What an agent from before these fields sends: every new field at its default.
        let s = sample("pi-1");
        let text = render(&[("pi-1", &s)], false);
        for family in [
            "node_memory_Cached_bytes",
            "node_context_switches_total",
            "node_pressure_",
            "node_filefd_",
            "node_cpu_guest_seconds_total",
            "node_filesystem_files",
            "node_filesystem_readonly",
            "node_network_receive_errs_total",
        ] {
            assert!(!text.contains(family), "{family} rendered without data");
        }
        // Chip names need no new field: they are derived from what older agents sent.
        assert!(text.contains(
            "node_hwmon_chip_names{chip=\"thermal_zone0\",chip_name=\"cpu_thermal\"} 1\n"
        ));
    }

    #[test]
    fn chip_names_are_spelled_like_node_exporter() {
        assert_eq!(chip_name("CPU-Thermal"), "cpu_thermal");
        assert_eq!(chip_name("nvme"), "nvme");
        assert_eq!(chip_name("-acpitz 1-"), "acpitz_1");
        assert_eq!(chip_name("k10temp:pci"), "k10temp:pci");
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
