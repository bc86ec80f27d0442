//! The open loop's clock: a thread of its own that releases each request of the schedule at
//! its due time, to the microsecond (a sleeping OS thread wakes within ~0.1 ms; tokio's timers
//! round up to the next millisecond, which would add up to 1 ms to every latency measured
//! from the schedule). Released requests are permits of a semaphore the workers wait on; a
//! permit waiting for a free worker is a request the concurrency limit holds back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::schedule::Schedule;

/// Longest single sleep, so a stop is noticed quickly even at very low rates.
const MAX_NAP: Duration = Duration::from_millis(10);

/// Start the clock: from `start`, release one permit of `released` per scheduled request when
/// it is due, until the schedule is used up, `end` passes or `stop`; then close `released`.
pub fn start(
    schedule: Arc<Schedule>,
    start: Instant,
    end: Instant,
    released: Arc<Semaphore>,
    stop: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lab-load-clock".into())
        .spawn(move || {
            let total = schedule.total();
            let mut next = 0u64;
            while next < total && !stop.is_cancelled() {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                // Everything due by now goes at once (the clock may have slept past several).
                let mut due_now = 0usize;
                while next < total && start + schedule.due(next) <= now {
                    next += 1;
                    due_now += 1;
                }
                if due_now > 0 {
                    released.add_permits(
                        due_now.min(Semaphore::MAX_PERMITS - released.available_permits()),
                    );
                    continue;
                }
                let wait = (start + schedule.due(next)).saturating_duration_since(now);
                std::thread::sleep(wait.min(MAX_NAP));
            }
            // Let the end pass before closing: workers busy at the end may still take
            // requests released earlier while the run lasts.
            while !stop.is_cancelled() {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                std::thread::sleep((end - now).min(MAX_NAP));
            }
            released.close();
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_come_at_the_rate_and_stop_at_the_end() {
        let schedule = Arc::new(Schedule::new(1000.0, Duration::from_millis(300)));
        let start = Instant::now();
        let end = start + Duration::from_millis(300);
        let released = Arc::new(Semaphore::new(0));
        let clock = super::start(
            schedule,
            start,
            end,
            released.clone(),
            CancellationToken::new(),
        )
        .expect("clock thread");
        // Half way: about half released (generous bounds: the machine may be busy).
        let deadline = start + Duration::from_millis(150);
        std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
        let half = released.available_permits();
        assert!((60..=220).contains(&half), "{half} released after 150 ms");
        clock.join().expect("clock ended");
        assert!(released.is_closed());
        assert!(Instant::now() >= end);
        assert_eq!(released.available_permits(), 300);
    }

    #[test]
    fn a_stop_ends_the_clock_at_once() {
        let schedule = Arc::new(Schedule::new(1.0, Duration::from_secs(3600)));
        let start = Instant::now();
        let released = Arc::new(Semaphore::new(0));
        let stop = CancellationToken::new();
        let clock = super::start(
            schedule,
            start,
            start + Duration::from_secs(3600),
            released.clone(),
            stop.clone(),
        )
        .expect("clock thread");
        stop.cancel();
        clock.join().expect("clock ended");
        assert!(released.is_closed());
        assert!(start.elapsed() < Duration::from_secs(1));
    }
}
