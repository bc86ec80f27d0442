//! Background sampling of CPU and memory use.
//!
//! One task owns a [`sysinfo::System`], refreshes it every [`INTERVAL`] and publishes a
//! [`Sample`] on a watch channel. Readers (the health handler) take the latest value and never
//! wait for a measurement; CPU use needs two readings some time apart, which is exactly what a
//! periodic task gives.

use std::time::Duration;

use sysinfo::System;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Time between two samples.
pub const INTERVAL: Duration = Duration::from_secs(1);

/// The latest host measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    /// Whole-machine CPU use over the last interval, 0..=100 (0 until the second sample).
    pub cpu_percent: f32,
    pub cpu_count: u32,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
}

/// Starts the sampler on `tracker`; it stops when `shutdown` is cancelled. The receiver holds
/// a first sample (memory and CPU count) as soon as this returns.
pub fn spawn(tracker: &TaskTracker, shutdown: CancellationToken) -> watch::Receiver<Sample> {
    let mut system = match System::new() {
        Ok(system) => system,
        Err(err) => {
            log::error!("cannot sample CPU and memory ({err}); health will report zeros");
            return watch::channel(Sample::default()).1;
        }
    };
    let first = measure(&mut system);
    let (tx, rx) = watch::channel(first);
    tracker.spawn(async move {
        let mut ticks = tokio::time::interval(INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await; // the first tick completes immediately
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticks.tick() => {
                    let sample = measure(&mut system);
                    if tx.send(sample).is_err() {
                        break; // nobody listens any more
                    }
                }
            }
        }
        log::debug!("sampler stopped");
    });
    rx
}

fn measure(system: &mut System) -> Sample {
    system.refresh_cpu_usage();
    system.refresh_memory();
    Sample {
        cpu_percent: system.global_cpu_usage().clamp(0.0, 100.0),
        cpu_count: u32::try_from(system.cpus().len()).unwrap_or(u32::MAX),
        mem_used_bytes: system.used_memory(),
        mem_total_bytes: system.total_memory(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_sample_is_immediate_and_sampler_stops() {
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let rx = spawn(&tracker, shutdown.clone());
        let sample = *rx.borrow();
        assert!(sample.cpu_count > 0);
        assert!(sample.mem_total_bytes > 0);
        assert!(sample.mem_used_bytes <= sample.mem_total_bytes);
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(5), tracker.wait())
            .await
            .expect("sampler did not stop on shutdown");
    }
}
