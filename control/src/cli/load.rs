//! `lab load`: drive traffic at the cluster's LB (or any plain-HTTP URL) at a fixed rate or
//! flat out, show a live line each second, then print the summary and write the per-second
//! timeline. Arguments are checked before anything is sent. See [`crate::load`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio_util::sync::CancellationToken;

use super::InventoryArg;
use crate::load::marks::EventMarks;
use crate::load::progress::Progress;
use crate::load::summary::{RunFacts, Summary, Verdict};
use crate::load::workload::{AppKnobs, Mix};
use crate::load::{self, files, target, LoadConfig, MAX_CONCURRENCY, MAX_DURATION, MAX_RATE};

/// Exit code when the asked rate could not be delivered (more than 1% of the scheduled
/// requests started late or never).
pub const EXIT_SHORTFALL: u8 = 3;
/// Exit code when not one request was answered 2xx.
pub const EXIT_NOTHING_OK: u8 = 4;

const EXAMPLES: &str = "\
Examples:
  lab load                                   # the app mix at the cluster's LB, flat out, 30 s
  lab load --rate 500 --duration 2m          # 500 req/s for two minutes; watch `lab top` meanwhile
  lab load --rate 200 --read-ratio 0.5       # half the requests write: the database primary works
  lab load --zipf 0 --keys 10000             # uniform reads over many posts: the cache misses more
  lab load --mix objects --keys 200 --rate 100 # uploads, then GETs on the CDN edge: X-Cache HIT/MISS
  lab load --sweep --read-ratio 1 --keys 200 --rate 100
                                             # every post in turn, one pass each 2 s: kill a cache
                                             # board meanwhile and one pass's misses are the moved keys
  lab load --url http://127.0.0.1:8080/ --mix static --rate 0 -c 50 --duration 10s
                                             # any web server, as fast as 50 connections go (like wrk)
  lab load --rate 1000 --json > result.json  # the summary as JSON for a script

Open loop (--rate R): requests are due at fixed times, R per second, whatever the server does;
latency counts from when each was due, so a server that stalls shows its queue. At most
--concurrency requests are in flight: when they are all busy, requests start late (counted) or
not at all before the end (counted), and the summary says how far short of R the run fell.
Closed loop (no --rate, or 0): each connection sends its next request when the previous answer
arrives: the highest throughput, not a fixed load.

The app mix first signs up --users users (names unique to the run), logs them in and seeds
--keys posts (not measured), then sends reads (GET /api/posts/ID, IDs drawn from a Zipf
distribution: a few posts are hot; one read in twenty lists a user's posts) and, for the rest,
writes (POST /api/posts as a random user). The summary counts who served (X-Served-By), cache
HIT/MISS (X-Cache) and database primary/replica answers (X-DB).

Written to --out DIR (default ./lab-load-<UTC time>/): timeline.csv and timeline.json (one row
per second: t,sent,ok,errors,rate,p50_ms,p99_ms,max_ms,hits,misses) and summary.json.
Ctrl-C stops early and still reports what was sent.

Exit status: 0 the run went as asked (failed requests are in the summary); 1 an error (bad
target, setup failed, nothing sent); 2 bad arguments (nothing sent); 3 shortfall: the asked
rate was not delivered; 4 not one request was answered 2xx.";

/// Load the cluster (or any HTTP server) and report what came back.
#[derive(Debug, Args)]
#[command(after_long_help = EXAMPLES)]
pub struct LoadArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Aim at this URL instead of the cluster's LB (the first board with the lb role, port
    /// 80). Plain http:// only, e.g. http://127.0.0.1:8080/ for one app or a local NGINX.
    #[arg(long, value_name = "URL", conflicts_with = "region")]
    pub url: Option<String>,
    /// Go through the CDN edge of this region (`[cdn.regions]` in the inventory), as a user
    /// there would; when it cannot be reached, through the next region's edge.
    #[arg(long, value_name = "NAME")]
    pub region: Option<String>,
    /// What to send: `app` (the app's API: setup, then reads and writes), `objects` (setup
    /// uploads --keys objects of 16 KiB through the app, then GETs them, Zipf-hot, where the
    /// app says they are: the CDN edge, else the files board) or `static` (GET the URL only,
    /// to compare with wrk).
    #[arg(long, value_enum, default_value_t = Mix::App)]
    pub mix: Mix,
    /// Requests per second, sent on a fixed schedule (open loop), up to 1000000. 0 or absent:
    /// closed loop, as fast as the connections go.
    #[arg(long, value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// How long to send: 10s, 2m, 1m30s, 1h (at most 1 h; at least 1 s).
    #[arg(short, long, default_value = "30s", value_name = "TIME", value_parser = parse_run_duration)]
    pub duration: Duration,
    /// Connections, and so the most requests in flight at once (1 to 4096).
    #[arg(short, long, default_value_t = 64, value_name = "C", value_parser = clap::value_parser!(u64).range(1..=MAX_CONCURRENCY as u64))]
    pub concurrency: u64,
    /// Longest wait for one answer, connecting included: 500ms, 5s (at most 60 s).
    #[arg(long, default_value = "5s", value_name = "TIME", value_parser = parse_timeout)]
    pub timeout: Duration,
    /// App mix: users to sign up and log in before the run (1 to 10000).
    #[arg(long, default_value_t = 50, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub users: u64,
    /// App mix: posts to seed; reads choose among them (1 to 100000).
    #[arg(long, default_value_t = 1000, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=load::zipf::MAX_KEYS as u64))]
    pub keys: u64,
    /// App mix: part of the requests that read (0 to 1); the rest write.
    #[arg(long, default_value_t = 0.9, value_name = "F", value_parser = parse_ratio)]
    pub read_ratio: f64,
    /// App mix: Zipf exponent of the post popularity (0 = uniform, 1 = a few hot posts; up to 5).
    #[arg(long, default_value_t = 1.0, value_name = "S", value_parser = parse_zipf)]
    pub zipf: f64,
    /// App mix: reads ask the app to skip its cache (`Cache-Control: no-cache`), so every read
    /// reaches the database: compare with a run without it to see what the cache buys.
    #[arg(long)]
    pub no_cache: bool,
    /// App mix: reads walk the seeded posts in order, each once per pass (no Zipf, no lists):
    /// after a cache board leaves or joins, one pass's misses are the keys that moved.
    #[arg(long, conflicts_with = "no_cache")]
    pub sweep: bool,
    /// App mix: after the run, read back every write the app acknowledged (bypassing the
    /// cache) and count the ones it lost: run it across a failover to see what was lost.
    #[arg(long)]
    pub verify_writes: bool,
    /// Seed of the request choices (the same seed makes the same sequence).
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Directory for timeline.csv, timeline.json and summary.json.
    /// Default: ./lab-load-<UTC time>/.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON on standard output (the live line stays on stderr).
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: LoadArgs) -> anyhow::Result<ExitCode> {
    if args.mix != Mix::App && (args.verify_writes || args.sweep || args.no_cache) {
        anyhow::bail!(
            "--verify-writes, --sweep and --no-cache are about the app mix's posts; --mix {} \
             sends no writes and reads no posts",
            args.mix
        );
    }
    let url_text = match &args.url {
        Some(u) => u.clone(),
        None => {
            let inventory = args.inventory.clone();
            tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
                let inv = super::load_inventory(&inventory)?;
                let ssh_config = crate::ssh::target::load_user_ssh_config();
                target::lb_url(&inv, ssh_config.as_ref())
            })
            .await
            .context("finding the LB")??
        }
    };
    let (url_text, alternates) = match &args.region {
        None => (url_text, Vec::new()),
        Some(region) => {
            let (inventory, region) = (args.inventory.clone(), region.clone());
            tokio::task::spawn_blocking(move || -> anyhow::Result<(String, Vec<String>)> {
                let inv = super::load_inventory(&inventory)?;
                target::region_urls(&inv, &region)
            })
            .await
            .context("finding the region's edge")??
        }
    };
    let url = target::parse_url(&url_text)?;
    check_open_files(args.concurrency)?;
    let mut resolved = target::resolve(url).await?;
    for other in alternates {
        let other = target::resolve(target::parse_url(&other)?).await?;
        resolved.alternates.push(other.addr);
    }
    let target = Arc::new(resolved);
    let out = args.out.clone();
    let (dir, made_dir) = tokio::task::spawn_blocking(move || files::prepare_dir(out.as_deref()))
        .await
        .context("making the output directory")??;

    let seed = args.seed.unwrap_or_else(clock_seed);
    let cfg = LoadConfig {
        mix: args.mix,
        rate: args.rate.filter(|r| *r > 0.0),
        duration: args.duration,
        concurrency: args.concurrency as usize,
        timeout: args.timeout,
        app: AppKnobs {
            users: args.users as usize,
            keys: args.keys as usize,
            read_ratio: args.read_ratio,
            zipf: args.zipf,
            no_cache: args.no_cache,
            sweep: args.sweep,
            verify_writes: args.verify_writes,
        },
        seed,
        run_id: run_id(clock_seed()),
    };

    let stop = CancellationToken::new();
    let on_ctrl_c = stop.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });

    // The cluster's state dir and boards, when there is an inventory to find them by: its
    // event log is followed during the run, its replicas' lag read after it.
    let cluster = {
        let inventory = args.inventory.clone();
        tokio::task::spawn_blocking(move || {
            super::load_inventory(&inventory).ok().map(|inv| {
                let boards: Vec<String> = inv.boards.iter().map(|b| b.name.clone()).collect();
                (inv.cluster.state_dir, boards)
            })
        })
        .await
        .ok()
        .flatten()
    };
    let events_file = cluster
        .as_ref()
        .map(|(state, _)| state.join(crate::metrics::client::EVENTS_FILE));
    let stop_marks = CancellationToken::new();
    // Events are followed from now (the setup included) and told in seconds of the measured
    // run: its second 1 is the timeline's.
    let marks_from_ms = crate::metrics::now_ms();
    let (marks_task, mut marks) =
        EventMarks::new(events_file, marks_from_ms).follow(stop_marks.clone());
    let mut marked = Vec::new();
    let mut live_offset_s: Option<f64> = None;
    let mut progress = Progress::new(std::io::stderr().is_terminal());
    progress.say(&format!(
        "lab load: {} mix at {} ({}), {}, {} connection(s), for {}; Ctrl-C stops early",
        cfg.mix,
        target.url.text,
        target.addr,
        match cfg.rate {
            Some(r) => format!("{r} req/s (open loop)"),
            None => "as fast as it goes (closed loop)".into(),
        },
        cfg.concurrency,
        humanize(cfg.duration),
    ));
    let result = {
        let progress = std::cell::RefCell::new(&mut progress);
        load::run(
            target.clone(),
            &cfg,
            stop,
            &mut |row, in_flight| {
                let mut progress = progress.borrow_mut();
                progress.second(row, in_flight);
                // The row's second just ended: the measured run began `row.t` s ago.
                let offset = *live_offset_s.get_or_insert_with(|| {
                    let since_ms = crate::metrics::now_ms().saturating_sub(marks_from_ms);
                    (since_ms as f64 / 1000.0 - row.t as f64).max(0.0)
                });
                while let Ok(m) = marks.try_recv() {
                    progress.say(&format!(
                        "  event +{:.1} s  {}: {}",
                        m.at_s - offset,
                        m.board,
                        m.message
                    ));
                    marked.push(m);
                }
            },
            &mut |text| progress.borrow_mut().say(text),
        )
        .await
    };
    ctrl_c.abort();
    progress.end_line();
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            stop_marks.cancel();
            if made_dir {
                // Nothing was measured: leave no empty directory behind.
                let _ = std::fs::remove_dir(&dir);
            }
            return Err(e);
        }
    };

    stop_marks.cancel();
    let _ = marks_task.await;
    while let Ok(m) = marks.try_recv() {
        marked.push(m);
    }
    let mut summary = Summary::new(RunFacts {
        target: target.url.text.clone(),
        address: target.addr.to_string(),
        mix: cfg.mix,
        rate_asked: cfg.rate,
        duration_asked_s: cfg.duration.as_secs_f64(),
        ran_s: result.ran.as_secs_f64(),
        interrupted: result.interrupted,
        concurrency: cfg.concurrency,
        timeout_s: cfg.timeout.as_secs_f64(),
        totals: &result.totals,
        punctuality: result.punctuality,
        setup: result.setup.clone(),
        seconds: result.rows.len(),
    });
    let setup_s = result.measured_from_ms.saturating_sub(marks_from_ms) as f64 / 1000.0;
    for m in &mut marked {
        m.at_s -= setup_s;
    }
    summary.events = marked;
    if let Some((state, boards)) = &cluster {
        summary.replication_lag =
            load::lag::fetch(state, boards, result.measured_from_ms, result.ran).await;
    }
    if cfg.mix == Mix::App && cfg.app.verify_writes {
        let ids = &result.totals.acknowledged_writes;
        progress.say(&format!(
            "reading back the {} acknowledged write(s)...",
            ids.len()
        ));
        summary.writes = Some(
            load::verify::read_back(target.clone(), ids, cfg.timeout, load::verify::SETTLE).await,
        );
    }
    let written = {
        let (dir, rows, summary) = (dir.clone(), result.rows.clone(), summary.clone());
        tokio::task::spawn_blocking(move || files::write_all(&dir, &rows, &summary))
            .await
            .context("writing the results")??
    };
    let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
    let where_written = format!("written: {}", names.join(", "));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        eprintln!("{where_written}");
    } else {
        print!("{}", summary.render());
        println!("{where_written}");
    }
    Ok(match summary.verdict() {
        Verdict::Done => ExitCode::SUCCESS,
        Verdict::Shortfall => ExitCode::from(EXIT_SHORTFALL),
        Verdict::NothingOk => ExitCode::from(EXIT_NOTHING_OK),
    })
}

/// Descriptors kept aside for everything but the connections (stdio, the runtime, files).
const SPARE_FILES: u64 = 64;

/// Refuse a concurrency this process cannot open connections for, saying how to allow it.
fn check_open_files(concurrency: u64) -> anyhow::Result<()> {
    let Some(limit) = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| soft_open_files_limit(&text))
    else {
        return Ok(());
    };
    if concurrency + SPARE_FILES > limit {
        anyhow::bail!(
            "--concurrency {concurrency} needs about {} open files and this process may open {limit}: run `ulimit -n {}` first, or lower --concurrency",
            concurrency + SPARE_FILES,
            (concurrency + SPARE_FILES).next_power_of_two()
        );
    }
    Ok(())
}

/// The soft "Max open files" of `/proc/self/limits` text (`None` when unlimited or absent).
fn soft_open_files_limit(limits: &str) -> Option<u64> {
    limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}

/// Ten base-36 characters naming this run (its users are `ld<id>u<n>`).
fn run_id(seed: u64) -> String {
    let mut rng = load::rng::Rng::new(seed);
    let digits = b"0123456789abcdefghijklmnopqrstuvwxyz";
    (0..10)
        .map(|_| digits[rng.below(36) as usize] as char)
        .collect()
}

fn humanize(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs >= 60.0 && secs.fract() == 0.0 && (secs as u64).is_multiple_of(60) {
        format!("{} min", secs as u64 / 60)
    } else {
        format!("{secs} s")
    }
}

/// `10s`, `2m`, `1m30s`, `500ms`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("empty duration: write e.g. 30s, 2m or 1h".into());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return seconds(secs, text);
    }
    let mut total = 0.0f64;
    let mut rest = t;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(format!(
                "`{text}` is not a duration: write e.g. 30s, 2m or 1m30s"
            ));
        }
        let value: f64 = rest[..number_len]
            .parse()
            .map_err(|_| format!("`{text}` is not a duration: write e.g. 30s, 2m or 1m30s"))?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => return Err(format!("`{text}`: a unit is missing after {value}")),
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}` (use ms, s, m or h)"
                ))
            }
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    seconds(total, text)
}

fn seconds(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is not a usable duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_run_duration(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_secs(1) || d > MAX_DURATION {
        return Err(format!("`{text}`: the duration must be between 1s and 1h"));
    }
    Ok(d)
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text)?;
    if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
        return Err(format!(
            "`{text}`: the timeout must be between 10ms and 60s"
        ));
    }
    Ok(d)
}

fn parse_rate(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number of requests per second"))?;
    if !r.is_finite() || !(0.0..=MAX_RATE).contains(&r) {
        return Err(format!(
            "`{text}`: the rate must be between 0 (flat out) and {MAX_RATE} requests/s"
        ));
    }
    if r > 0.0 && r < 0.01 {
        return Err(format!(
            "`{text}`: below 0.01 requests/s nothing would be sent"
        ));
    }
    Ok(r)
}

fn parse_ratio(text: &str) -> Result<f64, String> {
    let r: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !(0.0..=1.0).contains(&r) {
        return Err(format!("`{text}`: the read ratio must be between 0 and 1"));
    }
    Ok(r)
}

fn parse_zipf(text: &str) -> Result<f64, String> {
    let s: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number"))?;
    if !(0.0..=5.0).contains(&s) {
        return Err(format!(
            "`{text}`: the Zipf exponent must be between 0 and 5"
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        let s = Duration::from_secs;
        assert_eq!(parse_duration("10s"), Ok(s(10)));
        assert_eq!(parse_duration("2m"), Ok(s(120)));
        assert_eq!(parse_duration("1m30s"), Ok(s(90)));
        assert_eq!(parse_duration("1h"), Ok(s(3600)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("45"), Ok(s(45)));
        for bad in [
            "", "s", "10x", "ten", "-5s", "1m-3s", "nan", "inf", "10 s s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn runs_and_rates_are_bounded() {
        assert!(parse_run_duration("2h").is_err());
        assert!(parse_run_duration("500ms").is_err());
        assert!(parse_run_duration("1h").is_ok());
        assert!(parse_timeout("2m").is_err());
        assert!(parse_timeout("5s").is_ok());
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert_eq!(parse_rate("1000000"), Ok(1e6));
        for bad in ["-1", "nan", "inf", "2e6", "x", "0.001"] {
            assert!(parse_rate(bad).is_err(), "{bad} accepted");
        }
        assert!(parse_ratio("1.5").is_err());
        assert!(parse_zipf("-1").is_err());
    }

    #[test]
    fn the_open_files_limit_is_the_soft_one() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63448                63448                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(soft_open_files_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files\n";
        assert_eq!(soft_open_files_limit(unlimited), None);
    }

    #[test]
    fn run_ids_are_ten_base36_characters() {
        let id = run_id(12345);
        assert_eq!(id.len(), 10);
        assert!(id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(run_id(1), run_id(2));
    }
}
