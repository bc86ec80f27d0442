//! `lab load`: the cluster's load generator. It aims at the LB (or any plain-HTTP URL),
//! sends either a fixed rate of requests (open loop, latency counted from when each request
//! was due, so a slow server cannot hide its queue) or as many as its connections carry
//! (closed loop, for maximum throughput), and reports what happened second by second and in
//! total, including what it could not deliver.
//!
//! Module map (one job each):
//! - [`target`]: the URL (the inventory's LB by default), checked and resolved once.
//! - [`client`]: one keep-alive HTTP/1.1 connection per worker (hyper), timeouts, failures.
//! - [`workload`]: `static` (GET the URL), `app` (setup, then Zipf reads and writes) and
//!   `objects` (uploads, then Zipf GETs of them on the edge or the files board).
//! - [`schedule`]: the open loop's timetable; late and never-started requests; shortfall.
//! - [`clock`]: the thread that releases each scheduled request at its due time.
//! - [`histogram`]: log-linear latency histogram (1/128 precision, fixed memory).
//! - [`rng`], [`zipf`]: per-worker random numbers; which post a read asks for.
//! - [`stats`]: every outcome into the totals and the current second.
//! - [`timeline`]: per-second rows, CSV and JSON.
//! - [`progress`]: the live line once a second.
//! - [`marks`]: the cluster's events during the run (`lab serve`'s event log).
//! - [`lag`]: after the run, the replicas' lag during it (`lab serve`'s history).
//! - [`summary`]: the totals in words and as JSON; the verdict behind the exit code.
//! - [`verify`]: after the run, the acknowledged writes read back (the lost ones counted).
//! - [`files`]: the output directory and its files.
//! - this file: [`run`] puts them together: setup, workers, the once-a-second report.

pub mod client;
pub mod clock;
pub mod files;
pub mod histogram;
pub mod lag;
pub mod marks;
pub mod progress;
pub mod rng;
pub mod schedule;
pub mod stats;
pub mod summary;
pub mod target;
pub mod timeline;
pub mod verify;
pub mod workload;
pub mod zipf;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use client::Connection;
use rng::Rng;
use schedule::{Punctuality, Schedule};
use stats::{Recorder, Timing, Totals};
use summary::SetupSummary;
use target::Target;
use timeline::Row;
use workload::{AppKnobs, Mix, Workload};

/// Longest run `lab load` accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most connections (and so requests in flight) it opens.
pub const MAX_CONCURRENCY: usize = 4096;
/// Highest rate it accepts (requests/s).
pub const MAX_RATE: f64 = 1_000_000.0;

/// One run's settings, already checked.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub mix: Mix,
    /// Requests/s; `None` for a closed loop.
    pub rate: Option<f64>,
    pub duration: Duration,
    pub concurrency: usize,
    pub timeout: Duration,
    pub app: AppKnobs,
    pub seed: u64,
    /// Names this run's users apart from every other run's.
    pub run_id: String,
}

/// What a run produced.
pub struct RunResult {
    pub rows: Vec<Row>,
    pub totals: Totals,
    pub punctuality: Option<Punctuality>,
    /// How long requests were sent.
    pub ran: Duration,
    pub interrupted: bool,
    pub setup: Option<SetupSummary>,
    /// When the measured run began (Unix ms): second 1 of the timeline starts here.
    pub measured_from_ms: u64,
}

/// What the workers share.
struct Shared {
    workload: Workload,
    recorder: Recorder,
    schedule: Option<Arc<Schedule>>,
    /// Open loop: one permit per request due (see [`clock`]).
    released: Arc<tokio::sync::Semaphore>,
    start: Instant,
    end: Instant,
    timeout: Duration,
    concurrency: u64,
    seed: u64,
    stop: CancellationToken,
}

/// Run the setup (app mix), then the measured phase. `on_second` sees each timeline row as
/// its second ends, with the requests in flight; `say` gets progress messages. Cancelling
/// `stop` ends the run early (requests in flight are still awaited, each within the timeout).
pub async fn run(
    target: Arc<Target>,
    cfg: &LoadConfig,
    stop: CancellationToken,
    on_second: &mut dyn FnMut(&Row, u64),
    say: &mut dyn FnMut(&str),
) -> anyhow::Result<RunResult> {
    let (workload, setup) = match cfg.mix {
        Mix::Static => (Workload::statik(target.clone()), None),
        Mix::App => {
            say(&format!(
                "setup: signing up {} users and seeding {} posts at {}",
                cfg.app.users, cfg.app.keys, target.url.text
            ));
            let seeded = tokio::select! {
                seeded = workload::setup(target.clone(), &cfg.app, &cfg.run_id, cfg.concurrency, cfg.timeout) => seeded.context("the app setup failed; nothing was measured")?,
                _ = stop.cancelled() => anyhow::bail!("interrupted during the setup; nothing was measured"),
            };
            let summary = SetupSummary {
                users: seeded.accounts.len(),
                posts: seeded.posts.len(),
                seconds: seeded.took.as_secs_f64(),
                objects_at: None,
            };
            (
                Workload::app(target.clone(), seeded, &cfg.app),
                Some(summary),
            )
        }
        Mix::Objects => {
            say(&format!(
                "setup: signing up {} users and uploading {} objects of {} KiB at {}",
                cfg.app.users,
                cfg.app.keys,
                workload::OBJECT_BYTES / 1024,
                target.url.text
            ));
            let seeded = tokio::select! {
                seeded = workload::setup_objects(target.clone(), &cfg.app, &cfg.run_id, cfg.concurrency, cfg.timeout) => seeded.context("the objects setup failed; nothing was measured")?,
                _ = stop.cancelled() => anyhow::bail!("interrupted during the setup; nothing was measured"),
            };
            let at = target::resolve(target::parse_url(&seeded.origin)?).await?;
            say(&format!(
                "the objects are served from {} ({})",
                seeded.origin, at.addr
            ));
            let summary = SetupSummary {
                users: seeded.users,
                posts: seeded.paths.len(),
                seconds: seeded.took.as_secs_f64(),
                objects_at: Some(seeded.origin.clone()),
            };
            (
                Workload::objects(Arc::new(at), seeded, &cfg.app),
                Some(summary),
            )
        }
    };

    let start = Instant::now();
    let measured_from_ms = crate::metrics::now_ms();
    let schedule = cfg.rate.map(|r| Arc::new(Schedule::new(r, cfg.duration)));
    let released = Arc::new(tokio::sync::Semaphore::new(0));
    let clock = match &schedule {
        Some(s) => Some(
            clock::start(
                s.clone(),
                start,
                start + cfg.duration,
                released.clone(),
                stop.clone(),
            )
            .context("cannot start the load clock thread")?,
        ),
        None => None,
    };
    let shared = Arc::new(Shared {
        workload,
        recorder: Recorder::new(start, cfg.duration)
            .keeping_acknowledged_writes(cfg.mix == Mix::App && cfg.app.verify_writes),
        schedule,
        released,
        start,
        end: start + cfg.duration,
        timeout: cfg.timeout,
        concurrency: cfg.concurrency as u64,
        seed: cfg.seed,
        stop: stop.clone(),
    });
    let mut workers = tokio::task::JoinSet::new();
    for n in 0..cfg.concurrency {
        let shared = shared.clone();
        workers.spawn(async move {
            if shared.schedule.is_some() {
                open_loop_worker(&shared, n as u64).await
            } else {
                closed_loop_worker(&shared, n as u64).await
            }
        });
    }

    let mut ticker = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut stopped_at: Option<Instant> = None;
    let mut shown = 0usize;
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                for row in shared.recorder.roll(Instant::now()) {
                    on_second(&row, shared.recorder.in_flight());
                    shown += 1;
                }
            }
            _ = stop.cancelled(), if stopped_at.is_none() => stopped_at = Some(Instant::now()),
            done = workers.join_next() => match done {
                None => break,
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(anyhow::anyhow!("a load worker died: {e}")),
            },
        }
    }

    if let Some(clock) = clock {
        // It ends by itself at the end of the run or on the stop; it has, workers are done.
        tokio::task::spawn_blocking(move || clock.join())
            .await
            .context("waiting for the load clock")?
            .map_err(|_| anyhow::anyhow!("the load clock thread panicked"))?;
    }
    let ran = match stopped_at {
        Some(at) => at.saturating_duration_since(start).min(cfg.duration),
        None => cfg.duration,
    };
    let shared = Arc::into_inner(shared).context("load workers still hold the recorder")?;
    let punctuality = shared.schedule.as_ref();
    let (rows, totals) = shared.recorder.finish(ran);
    for row in rows.iter().skip(shown) {
        on_second(row, 0);
    }
    let punctuality = punctuality.map(|s| Punctuality {
        scheduled: s.due_before(ran),
        started: totals.sent,
        late: totals.late,
        late_at_limit: totals.late_at_limit,
    });
    Ok(RunResult {
        rows,
        totals,
        punctuality,
        ran,
        interrupted: stopped_at.is_some(),
        setup,
        measured_from_ms,
    })
}

/// Wait for the clock to release a request, take the next ticket (in order), send; latency
/// counts from the ticket's due time. Stops when the clock closes (the run's end, or `stop`).
async fn open_loop_worker(shared: &Shared, n: u64) {
    let Some(schedule) = &shared.schedule else {
        return;
    };
    let mut rng = Rng::for_worker(shared.seed, n);
    let mut conn = Connection::new(shared.workload.target());
    loop {
        let (op, req) = shared.workload.next(&mut rng);
        let Ok(permit) = shared.released.acquire().await else {
            break; // the clock closed: the run is over
        };
        permit.forget();
        // Tickets released so far are at least as many as the permits taken: this one is due.
        let Some(ticket) = schedule.take() else {
            break;
        };
        let due = shared.start + ticket.due;
        let sent = Instant::now();
        if sent >= shared.end {
            break;
        }
        // This worker is idle; the others are all busy when in flight reaches them all.
        let others_busy = shared.recorder.in_flight() + 1 >= shared.concurrency;
        shared.recorder.started(sent);
        let result = conn.send(req, shared.timeout).await;
        let done = Instant::now();
        let timing = Timing {
            latency: done.saturating_duration_since(due),
            service: done.saturating_duration_since(sent),
            lag: Some((sent.saturating_duration_since(due), others_busy)),
        };
        shared.recorder.finished(done, op, timing, &result);
        if result.is_err() {
            tokio::task::yield_now().await;
        }
    }
}

/// Send, wait for the answer, send the next, until the run's end or `stop`.
async fn closed_loop_worker(shared: &Shared, n: u64) {
    let mut rng = Rng::for_worker(shared.seed, n);
    let mut conn = Connection::new(shared.workload.target());
    while !shared.stop.is_cancelled() {
        let (op, req) = shared.workload.next(&mut rng);
        let sent = Instant::now();
        if sent >= shared.end {
            break;
        }
        shared.recorder.started(sent);
        let result = conn.send(req, shared.timeout).await;
        let done = Instant::now();
        let took = done.saturating_duration_since(sent);
        let timing = Timing {
            latency: took,
            service: took,
            lag: None,
        };
        shared.recorder.finished(done, op, timing, &result);
        if result.is_err() {
            // A refused connection fails at once: let the rest of the runtime breathe.
            tokio::task::yield_now().await;
        }
    }
}
