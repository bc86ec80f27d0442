//! After a run: how far each database replica lagged behind its primary during it, from
//! `lab serve`'s history ([`SERIES`], one point a second per replica), for the summary and
//! `lab report`'s lag panel. Without a running `lab serve` there is nothing to show, and the
//! run goes on without it.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::metrics::client::{encode_query_value, ServeClient};
use crate::serve_api::{HistoryJson, MAX_HISTORY_SECONDS};

/// The agents' `seconds_behind_master` of a replica, as `lab serve` names it.
pub const SERIES: &str = "role:db-replica:seconds_behind_master";

/// One replica's lag during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LagSeries {
    pub board: String,
    /// (seconds into the run, seconds behind the primary).
    pub points: Vec<(f64, f64)>,
}

impl LagSeries {
    /// The most it lagged, in seconds.
    pub fn max(&self) -> f64 {
        self.points.iter().map(|(_, v)| *v).fold(0.0, f64::max)
    }
}

/// The points of `history` (Unix ms, value) that fall in the run (`from_ms`, for `ran`), as
/// seconds into it.
pub fn within(history: &[(u64, f32)], from_ms: u64, ran: Duration) -> Vec<(f64, f64)> {
    let to_ms = from_ms.saturating_add(u64::try_from(ran.as_millis()).unwrap_or(u64::MAX));
    history
        .iter()
        .filter(|(ts, _)| (from_ms..=to_ms).contains(ts))
        .map(|(ts, v)| ((ts - from_ms) as f64 / 1000.0, f64::from(*v)))
        .collect()
}

/// Each of `boards` that was a replica during the run, with its lag; empty when `lab serve`
/// does not answer.
pub async fn fetch(
    state_dir: &Path,
    boards: &[String],
    from_ms: u64,
    ran: Duration,
) -> Vec<LagSeries> {
    let Ok(client) = ServeClient::discover(state_dir, Duration::from_secs(2)).await else {
        return Vec::new();
    };
    let seconds = (ran.as_secs() + 5).clamp(1, MAX_HISTORY_SECONDS);
    let mut out = Vec::new();
    for board in boards {
        let path = format!(
            "/api/history?board={}&series={}&seconds={seconds}",
            encode_query_value(board),
            encode_query_value(SERIES)
        );
        // A board that never was a replica has no such series: not an error here.
        let Ok(history) = client.get_json::<HistoryJson>(&path).await else {
            continue;
        };
        let points = within(&history.points, from_ms, ran);
        if !points.is_empty() {
            out.push(LagSeries {
                board: board.clone(),
                points,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_runs_points_count_from_its_start() {
        let history = [
            (9_000, 5.0),
            (10_000, 0.0),
            (11_500, 2.0),
            (20_000, 1.0),
            (20_001, 7.0),
        ];
        let points = within(&history, 10_000, Duration::from_secs(10));
        assert_eq!(points, [(0.0, 0.0), (1.5, 2.0), (10.0, 1.0)]);
    }
}
