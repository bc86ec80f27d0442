//! From raw samples to the figures people read: rates from counter deltas over the board's
//! own elapsed time, percentages, sums over interfaces, and each role's headline figure.
//!
//! Pure functions over two consecutive [`Sample`]s of one board. A rate needs a previous
//! sample of the same agent run (same or lower `seq` means the agent restarted) with an
//! earlier timestamp, and a counter that did not go backwards; otherwise it is absent for
//! that second, never a spike or a negative number.

use lab_api::metrics::{DiskSample, NetworkSample, RoleSample, Sample};

/// Series every board has (temperature only where a sensor exists).
pub const CPU_PERCENT: &str = "cpu_percent";
pub const MEM_USED_PERCENT: &str = "mem_used_percent";
pub const LOAD1: &str = "load1";
pub const TEMP_C: &str = "temp_c";
pub const NET_RX_BPS: &str = "net_rx_bps";
pub const NET_TX_BPS: &str = "net_tx_bps";
pub const DISK_READ_BPS: &str = "disk_read_bps";
pub const DISK_WRITE_BPS: &str = "disk_write_bps";

/// Host series names, in display order.
pub const HOST_SERIES: [&str; 8] = [
    CPU_PERCENT,
    MEM_USED_PERCENT,
    LOAD1,
    TEMP_C,
    NET_RX_BPS,
    NET_TX_BPS,
    DISK_READ_BPS,
    DISK_WRITE_BPS,
];

/// Name of a role figure's series: `role:<role>:<figure>`.
pub fn role_series(role: &str, figure: &str) -> String {
    format!("role:{role}:{figure}")
}

/// Seconds between two samples of the same agent run, when a rate can be taken.
pub fn elapsed_secs(prev: &Sample, cur: &Sample) -> Option<f64> {
    if cur.seq <= prev.seq || cur.timestamp_ms <= prev.timestamp_ms {
        return None;
    }
    Some((cur.timestamp_ms - prev.timestamp_ms) as f64 / 1000.0)
}

/// Per-second rate of a counter, absent when it went backwards.
pub fn rate(prev: f64, cur: f64, secs: f64) -> Option<f64> {
    (cur >= prev && secs > 0.0).then(|| (cur - prev) / secs)
}

/// Sum over devices present in both samples of `cur - prev` (devices that reset are left
/// out), divided by `secs`.
fn summed_rate<T>(
    prev: &[T],
    cur: &[T],
    secs: f64,
    keep: fn(&T) -> bool,
    key: fn(&T) -> &str,
    value: fn(&T) -> u64,
) -> f64 {
    let mut total = 0u64;
    for c in cur.iter().filter(|c| keep(c)) {
        if let Some(p) = prev.iter().find(|p| key(p) == key(c)) {
            total = total.saturating_add(value(c).saturating_sub(value(p)));
        }
    }
    total as f64 / secs
}

fn net_device(n: &NetworkSample) -> &str {
    &n.device
}

fn disk_device(d: &DiskSample) -> &str {
    &d.device
}

/// The instantaneous figures of one sample (what `/api/boards` shows as `latest`).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub cpu_percent: f64,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub mem_used_percent: f64,
    pub load1: f64,
    pub temp_c: Option<f64>,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub disk_read_bps: f64,
    pub disk_write_bps: f64,
    pub throttled: Option<bool>,
    pub gpu_load_percent: Option<f64>,
    pub key_figure: Option<KeyFigure>,
}

/// A role's headline figure (`lb`: req/s, `cache`: hit ratio %, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyFigure {
    pub label: String,
    pub value: f64,
    pub unit: String,
}

/// Everything derived from one sample (and the previous one of the same board).
#[derive(Debug, Clone, PartialEq)]
pub struct Derived {
    pub latest: Latest,
    /// Values for the history rings; absent figures are simply not listed.
    pub series: Vec<(String, f32)>,
}

/// Derive the figures of `cur`, taking rates against `prev` when it allows.
pub fn derive(prev: Option<&Sample>, cur: &Sample) -> Derived {
    let h = &cur.host;
    let secs = prev.and_then(|p| elapsed_secs(p, cur));
    let used = h.mem_total_bytes.saturating_sub(h.mem_available_bytes);
    let mem_used_percent = if h.mem_total_bytes > 0 {
        used as f64 / h.mem_total_bytes as f64 * 100.0
    } else {
        0.0
    };
    let temp_c = h
        .temperatures
        .iter()
        .map(|t| t.celsius)
        .filter(|c| c.is_finite())
        .reduce(f64::max);
    let (mut net_rx, mut net_tx, mut disk_r, mut disk_w) = (None, None, None, None);
    if let (Some(p), Some(secs)) = (prev, secs) {
        let ph = &p.host;
        let nets = |value: fn(&NetworkSample) -> u64| {
            summed_rate(
                &ph.network,
                &h.network,
                secs,
                |n| n.device != "lo",
                net_device,
                value,
            )
        };
        net_rx = Some(nets(|n| n.rx_bytes_total));
        net_tx = Some(nets(|n| n.tx_bytes_total));
        let disks = |value: fn(&DiskSample) -> u64| {
            summed_rate(&ph.disks, &h.disks, secs, |_| true, disk_device, value)
        };
        disk_r = Some(disks(|d| d.read_bytes_total));
        disk_w = Some(disks(|d| d.written_bytes_total));
    }

    let mut series: Vec<(String, f32)> = Vec::with_capacity(12);
    let mut put = |name: &str, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            series.push((name.to_string(), v as f32));
        }
    };
    put(CPU_PERCENT, Some(f64::from(h.cpu_percent)));
    put(MEM_USED_PERCENT, Some(mem_used_percent));
    put(LOAD1, Some(h.load1));
    put(TEMP_C, temp_c);
    put(NET_RX_BPS, net_rx);
    put(NET_TX_BPS, net_tx);
    put(DISK_READ_BPS, disk_r);
    put(DISK_WRITE_BPS, disk_w);

    let prev_roles = prev.filter(|_| secs.is_some()).map(|p| p.roles.as_slice());
    for role in &cur.roles {
        let before = prev_roles.and_then(|roles| roles.iter().find(|r| r.role == role.role));
        for figure in &role.figures {
            let value = if figure.counter {
                match (before.and_then(|b| figure_value(b, &figure.name)), secs) {
                    (Some(p), Some(s)) => rate(p, figure.value, s),
                    _ => None,
                }
            } else {
                Some(figure.value)
            };
            put(&role_series(role.role.as_str(), &figure.name), value);
        }
    }

    let key_figure = cur.roles.iter().find_map(|role| {
        let before = prev_roles.and_then(|roles| roles.iter().find(|r| r.role == role.role));
        key_figure(role, before, secs)
    });
    let latest = Latest {
        cpu_percent: f64::from(h.cpu_percent),
        mem_used_bytes: used,
        mem_total_bytes: h.mem_total_bytes,
        mem_used_percent,
        load1: h.load1,
        temp_c,
        net_rx_bps: net_rx.unwrap_or(0.0),
        net_tx_bps: net_tx.unwrap_or(0.0),
        disk_read_bps: disk_r.unwrap_or(0.0),
        disk_write_bps: disk_w.unwrap_or(0.0),
        throttled: h.throttling.map(|t| t.throttled),
        gpu_load_percent: h.gpu_load_percent.map(f64::from),
        key_figure,
    };
    Derived { latest, series }
}

fn figure_value(role: &RoleSample, name: &str) -> Option<f64> {
    role.figures
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.value)
}

/// Counter names tried, in order, for a role's request rate.
const REQUEST_COUNTERS: [&str; 3] = ["requests_total", "http_requests_total", "requests"];
/// Counter names tried for a database's query rate.
const QUERY_COUNTERS: [&str; 3] = ["queries_total", "questions_total", "queries"];
/// (hits, misses) counter pairs tried for a cache's hit ratio.
const HIT_MISS_COUNTERS: [(&str, &str); 2] = [
    ("get_hits_total", "get_misses_total"),
    ("hits_total", "misses_total"),
];
/// Gauges (0..=100) tried for a hit ratio when no counters are there.
const HIT_RATIO_GAUGES: [&str; 2] = ["hit_ratio_percent", "hit_ratio"];

/// The headline figure of one role: `lb`/`app` requests per second, `cache`/`cdn` hit ratio
/// (%) over the last interval, `db-*` queries per second. `None` when the role has no such
/// figure yet (first sample, unknown role, engine down).
pub fn key_figure(
    role: &RoleSample,
    prev: Option<&RoleSample>,
    secs: Option<f64>,
) -> Option<KeyFigure> {
    let counter_rate = |names: &[&str]| {
        names.iter().find_map(|name| {
            let cur = figure_value(role, name)?;
            rate(figure_value(prev?, name)?, cur, secs?)
        })
    };
    let make = |label: &str, value: f64, unit: &str| KeyFigure {
        label: label.to_string(),
        value,
        unit: unit.to_string(),
    };
    use lab_api::Role;
    match role.role {
        Role::Lb => counter_rate(&REQUEST_COUNTERS).map(|v| make("req/s", v, "req/s")),
        Role::App => counter_rate(&REQUEST_COUNTERS).map(|v| {
            // The app's line says more: tail latency, cache hits, where reads went.
            let mut unit = String::from("req/s");
            if let Some(p99) = figure_value(role, "latency_p99_ms") {
                unit.push_str(&format!(" p99 {p99:.1}ms"));
            }
            let delta = |name: &str| Some(figure_value(role, name)? - figure_value(prev?, name)?);
            if let (Some(h), Some(m)) = (delta("hits_total"), delta("misses_total")) {
                if h + m > 0.0 {
                    unit.push_str(&format!(" hit {:.0}%", h / (h + m) * 100.0));
                }
            }
            if let (Some(r), Some(p)) = (
                delta("db_reads_replica_total"),
                delta("db_reads_primary_total"),
            ) {
                if r + p > 0.0 {
                    unit.push_str(&format!(" replica reads {:.0}%", r / (r + p) * 100.0));
                }
            }
            if let Some(e) = delta("errors_total").filter(|e| *e > 0.0) {
                unit.push_str(&format!(" 5xx {e:.0}"));
            }
            make("req/s", v, &unit)
        }),
        Role::DbMaster | Role::DbReplica => {
            counter_rate(&QUERY_COUNTERS).map(|v| make("QPS", v, "q/s"))
        }
        Role::Cache | Role::Cdn => {
            let from_counters = HIT_MISS_COUNTERS.iter().find_map(|(hits, misses)| {
                let p = prev?;
                secs?;
                let dh = figure_value(role, hits)? - figure_value(p, hits)?;
                let dm = figure_value(role, misses)? - figure_value(p, misses)?;
                (dh >= 0.0 && dm >= 0.0 && dh + dm > 0.0).then(|| dh / (dh + dm) * 100.0)
            });
            let from_gauge = || {
                HIT_RATIO_GAUGES.iter().find_map(|name| {
                    let v = figure_value(role, name)?;
                    Some(if v <= 1.0 { v * 100.0 } else { v })
                })
            };
            from_counters
                .or_else(from_gauge)
                .map(|v| make("hit ratio", v, "%"))
        }
        Role::Files => counter_rate(&REQUEST_COUNTERS).map(|v| make("req/s", v, "req/s")),
        Role::Vip => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lab_api::metrics::{Figure, HostSample, Temperature};

    fn sample(seq: u64, ts: u64, rx: u64, hits: f64, misses: f64) -> Sample {
        Sample {
            board: "pi-1".into(),
            seq,
            timestamp_ms: ts,
            host: HostSample {
                cpu_percent: 12.5,
                load1: 0.5,
                mem_total_bytes: 1000,
                mem_available_bytes: 250,
                network: vec![
                    NetworkSample {
                        device: "lo".into(),
                        rx_bytes_total: rx * 100,
                        tx_bytes_total: rx * 100,
                        ..Default::default()
                    },
                    NetworkSample {
                        device: "eth0".into(),
                        rx_bytes_total: rx,
                        tx_bytes_total: 10,
                        ..Default::default()
                    },
                ],
                disks: vec![DiskSample {
                    device: "sda".into(),
                    read_bytes_total: rx * 2,
                    written_bytes_total: 0,
                    io: None,
                }],
                temperatures: vec![
                    Temperature {
                        chip: "a".into(),
                        sensor: "t1".into(),
                        celsius: 41.0,
                        ..Default::default()
                    },
                    Temperature {
                        chip: "b".into(),
                        sensor: "t2".into(),
                        celsius: 55.5,
                        ..Default::default()
                    },
                ],
                ..Default::default()
            },
            roles: vec![RoleSample {
                role: lab_api::Role::Cache,
                engine: lab_api::Engine::Memcached,
                up: true,
                figures: vec![
                    Figure {
                        name: "get_hits_total".into(),
                        value: hits,
                        counter: true,
                    },
                    Figure {
                        name: "get_misses_total".into(),
                        value: misses,
                        counter: true,
                    },
                    Figure {
                        name: "curr_items".into(),
                        value: 7.0,
                        counter: false,
                    },
                ],
                labels: vec![],
            }],
        }
    }

    fn get(d: &Derived, name: &str) -> Option<f32> {
        d.series.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    #[test]
    fn first_sample_has_gauges_but_no_rates() {
        let d = derive(None, &sample(1, 1000, 100, 0.0, 0.0));
        assert_eq!(get(&d, CPU_PERCENT), Some(12.5));
        assert_eq!(get(&d, MEM_USED_PERCENT), Some(75.0));
        assert_eq!(get(&d, TEMP_C), Some(55.5), "max over sensors");
        assert_eq!(get(&d, NET_RX_BPS), None);
        assert_eq!(get(&d, "role:cache:curr_items"), Some(7.0));
        assert_eq!(get(&d, "role:cache:get_hits_total"), None);
        assert_eq!(d.latest.mem_used_bytes, 750);
        assert_eq!(d.latest.key_figure, None);
        assert_eq!(d.latest.net_rx_bps, 0.0);
    }

    #[test]
    fn rates_use_the_boards_elapsed_time_and_skip_loopback() {
        let a = sample(1, 1000, 100, 10.0, 10.0);
        let b = sample(2, 3000, 1100, 40.0, 20.0);
        let d = derive(Some(&a), &b);
        assert_eq!(get(&d, NET_RX_BPS), Some(500.0));
        assert_eq!(get(&d, NET_TX_BPS), Some(0.0));
        assert_eq!(get(&d, DISK_READ_BPS), Some(1000.0));
        assert_eq!(get(&d, "role:cache:get_hits_total"), Some(15.0));
        let k = d.latest.key_figure.expect("key figure");
        assert_eq!((k.label.as_str(), k.unit.as_str()), ("hit ratio", "%"));
        assert!((k.value - 75.0).abs() < 1e-9, "30 hits / 40 gets");
    }

    #[test]
    fn restarts_and_resets_give_no_rate() {
        let a = sample(9, 1000, 1000, 10.0, 10.0);
        // seq went back: agent restarted.
        let d = derive(Some(&a), &sample(1, 2000, 5, 0.0, 0.0));
        assert_eq!(get(&d, NET_RX_BPS), None);
        assert_eq!(d.latest.key_figure, None);
        // Counter went backwards within one run: that device is left out, not negative.
        let d = derive(Some(&a), &sample(10, 2000, 5, 5.0, 20.0));
        assert_eq!(get(&d, NET_RX_BPS), Some(0.0));
        assert_eq!(get(&d, "role:cache:get_hits_total"), None);
        assert_eq!(rate(5.0, 4.0, 1.0), None);
        assert_eq!(rate(4.0, 6.0, 0.5), Some(4.0));
    }

    #[test]
    fn headline_figures_per_role() {
        let role = |name: &str, fig: &str, value: f64, counter: bool| RoleSample {
            role: lab_api::Role::parse(name).expect("a role"),
            engine: lab_api::Role::parse(name).expect("a role").engine(),
            up: true,
            figures: vec![Figure {
                name: fig.into(),
                value,
                counter,
            }],
            labels: vec![],
        };
        let k = key_figure(
            &role("lb", "requests_total", 300.0, true),
            Some(&role("lb", "requests_total", 100.0, true)),
            Some(2.0),
        )
        .expect("lb");
        assert_eq!((k.label.as_str(), k.value), ("req/s", 100.0));
        let k = key_figure(
            &role("db-master", "queries_total", 50.0, true),
            Some(&role("db-master", "queries_total", 40.0, true)),
            Some(1.0),
        )
        .expect("db");
        assert_eq!((k.label.as_str(), k.value), ("QPS", 10.0));
        let k = key_figure(&role("cdn", "hit_ratio", 0.9, false), None, None).expect("cdn");
        assert!((k.value - 90.0).abs() < 1e-9);
        assert_eq!(
            key_figure(&role("files", "x", 1.0, false), None, None),
            None
        );
    }

    #[test]
    fn the_app_line_has_latency_hits_and_where_reads_went() {
        let app = |requests: f64, hits: f64, misses: f64, replica: f64, primary: f64| RoleSample {
            role: lab_api::Role::App,
            engine: lab_api::Engine::LabApp,
            up: true,
            figures: [
                ("requests_total", requests, true),
                ("hits_total", hits, true),
                ("misses_total", misses, true),
                ("db_reads_replica_total", replica, true),
                ("db_reads_primary_total", primary, true),
                ("latency_p99_ms", 7.25, false),
            ]
            .into_iter()
            .map(|(name, value, counter)| Figure {
                name: name.into(),
                value,
                counter,
            })
            .collect(),
            labels: vec![],
        };
        let k = key_figure(
            &app(300.0, 90.0, 10.0, 8.0, 2.0),
            Some(&app(100.0, 0.0, 0.0, 0.0, 0.0)),
            Some(2.0),
        )
        .expect("app");
        assert_eq!(k.value, 100.0);
        assert_eq!(k.unit, "req/s p99 7.2ms hit 90% replica reads 80%");
    }
}
