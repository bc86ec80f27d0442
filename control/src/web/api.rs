//! The HTTP API of `lab serve`: the contract the web dashboard and `lab top` read.
//!
//! - `GET /api/boards`: one [`BoardJson`] per inventory board, inventory order.
//! - `GET /api/history?board=B&series=S&seconds=N` (N in 1..=3600, default 300):
//!   [`HistoryJson`], points `[ts_ms, value]` oldest first (ts = when `lab serve` received
//!   the sample, wall clock).
//! - `GET /api/series?board=B`: the series names that board has.
//! - `GET /api/events?since_ms=T`: events with `ts_ms >= T`, newest last (last 1000 kept).
//! - `GET /api/stream`: Server-Sent Events: `event: boards` (the `/api/boards` payload) at
//!   once and every second, `event: event` (one event's JSON) as events happen. Ends when
//!   the server shuts down.
//! - `GET /metrics`: Prometheus text (see [`crate::metrics::exposition`]).
//!
//! Bad parameters answer 400 and an unknown board 404, both with `{"error": "..."}` naming the
//! parameter. Numbers that are not finite are sent as 0 (gauges) or `null` (optional ones).

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::broadcast::error::RecvError;

use super::WebState;
use crate::metrics::derive::{KeyFigure, Latest, HOST_SERIES};
use crate::metrics::events::Event;
use crate::metrics::store::{BoardSnapshot, MetricsStore};
pub use crate::serve_api::*;

fn finite(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

fn finite_opt(v: Option<f64>) -> Option<f64> {
    v.filter(|v| v.is_finite())
}

impl From<&Latest> for LatestJson {
    fn from(l: &Latest) -> Self {
        LatestJson {
            cpu_percent: finite(l.cpu_percent),
            mem_used_bytes: l.mem_used_bytes,
            mem_total_bytes: l.mem_total_bytes,
            load1: finite(l.load1),
            temp_c: finite_opt(l.temp_c),
            net_rx_bps: finite(l.net_rx_bps),
            net_tx_bps: finite(l.net_tx_bps),
            disk_read_bps: finite(l.disk_read_bps),
            disk_write_bps: finite(l.disk_write_bps),
            throttled: l.throttled,
            gpu_load_percent: finite_opt(l.gpu_load_percent),
            key_figure: l.key_figure.as_ref().and_then(KeyFigureJson::from_figure),
        }
    }
}

impl KeyFigureJson {
    fn from_figure(k: &KeyFigure) -> Option<Self> {
        k.value.is_finite().then(|| KeyFigureJson {
            label: k.label.clone(),
            value: k.value,
            unit: k.unit.clone(),
        })
    }
}

impl From<BoardSnapshot> for BoardJson {
    fn from(s: BoardSnapshot) -> Self {
        let roles = if s.info.roles.is_empty() {
            s.sampled_roles
        } else {
            s.info.roles
        };
        BoardJson {
            board: s.info.name,
            address: s.info.address,
            roles,
            up: s.up,
            last_seen_ms: s.last_seen_ms,
            arch: s.arch,
            os: s.os,
            latest: s.latest.as_ref().map(LatestJson::from),
        }
    }
}

/// The `/api/boards` payload.
pub fn boards(store: &MetricsStore) -> Vec<BoardJson> {
    store.snapshots().into_iter().map(BoardJson::from).collect()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorJson {
            error: message.into(),
        }),
    )
        .into_response()
}

type Params = Query<HashMap<String, String>>;

pub async fn get_boards(State(state): State<WebState>) -> Json<Vec<BoardJson>> {
    Json(boards(&state.store))
}

/// The board named by the `board` parameter: 400 when missing, 404 when unknown.
fn board_param<'a>(
    store: &MetricsStore,
    params: &'a Params,
) -> Result<&'a str, (StatusCode, String)> {
    let Some(board) = params.get("board").filter(|b| !b.is_empty()) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing parameter `board` (a board name from /api/boards)".into(),
        ));
    };
    if store.board_index(board).is_none() {
        return Err((
            StatusCode::NOT_FOUND,
            format!("unknown board `{board}` (parameter `board`; see /api/boards)"),
        ));
    }
    Ok(board)
}

pub async fn get_history(State(state): State<WebState>, params: Params) -> Response {
    let store = &state.store;
    let board = match board_param(store, &params) {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    let Some(series) = params.get("series").filter(|s| !s.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("missing parameter `series` (see /api/series?board={board})"),
        );
    };
    let seconds = match params.get("seconds") {
        None => DEFAULT_HISTORY_SECONDS,
        Some(text) => match text.parse::<u64>() {
            Ok(n) if (1..=MAX_HISTORY_SECONDS).contains(&n) => n,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "parameter `seconds` must be a whole number from 1 to {MAX_HISTORY_SECONDS}, not `{text}`"
                    ),
                )
            }
        },
    };
    // A host series a board lacks (no temperature sensor) is empty, not an error.
    if store.has_series(board, series) != Some(true) && !HOST_SERIES.contains(&series.as_str()) {
        return error(
            StatusCode::NOT_FOUND,
            format!("board `{board}` has no series `{series}` (parameter `series`; see /api/series?board={board})"),
        );
    }
    let since = crate::metrics::now_ms().saturating_sub(seconds * 1000);
    let points = store.history(board, series, since).unwrap_or_default();
    Json(HistoryJson {
        board: board.to_string(),
        series: series.clone(),
        points,
    })
    .into_response()
}

pub async fn get_series(State(state): State<WebState>, params: Params) -> Response {
    let board = match board_param(&state.store, &params) {
        Ok(b) => b,
        Err((status, message)) => return error(status, message),
    };
    Json(state.store.series_names(board).unwrap_or_default()).into_response()
}

pub async fn get_events(State(state): State<WebState>, params: Params) -> Response {
    let since = match params.get("since_ms") {
        None => 0,
        Some(text) => match text.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                    "parameter `since_ms` must be milliseconds since the Unix epoch, not `{text}`"
                ),
                )
            }
        },
    };
    Json(state.store.events.since(since)).into_response()
}

pub async fn get_metrics(State(state): State<WebState>) -> Response {
    let text = crate::metrics::exposition::render(&state.store);
    (
        [(
            header::CONTENT_TYPE,
            crate::metrics::exposition::CONTENT_TYPE,
        )],
        text,
    )
        .into_response()
}

pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint (see /api/boards)")
}

/// Interval of `event: boards` on the SSE stream.
pub const STREAM_INTERVAL: Duration = Duration::from_secs(1);

struct StreamState {
    state: WebState,
    tick: tokio::time::Interval,
    events: tokio::sync::broadcast::Receiver<Event>,
}

fn boards_event(store: &MetricsStore) -> SseEvent {
    let data = serde_json::to_string(&boards(store)).unwrap_or_else(|_| "[]".into());
    SseEvent::default().event("boards").data(data)
}

fn event_event(event: &Event) -> Option<SseEvent> {
    let data = serde_json::to_string(event).ok()?;
    Some(SseEvent::default().event("event").data(data))
}

pub async fn get_stream(
    State(state): State<WebState>,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let mut tick = tokio::time::interval(STREAM_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let events = state.store.events.subscribe();
    let start = StreamState {
        state,
        tick,
        events,
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            tokio::select! {
                _ = st.state.shutdown.cancelled() => return None,
                // The first tick completes at once: the stream opens with the boards.
                _ = st.tick.tick() => {
                    let ev = boards_event(&st.state.store);
                    return Some((Ok(ev), st));
                }
                r = st.events.recv() => match r {
                    Ok(event) => {
                        if let Some(ev) = event_event(&event) {
                            return Some((Ok(ev), st));
                        }
                    }
                    Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return None,
                },
            }
        }
    });
    Sse::new(stream)
}
