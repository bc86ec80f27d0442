//! The JSON `lab serve` answers (its HTTP API is described in [`crate::web::api`]): declared
//! once here and read by the server (`web/`), `lab top` (`tui/`, `cli/top.rs`) and
//! `lab metrics export`, so the two sides cannot drift apart.

use lab_api::Role;
use serde::{Deserialize, Serialize};

/// Longest history a request may ask for, in seconds.
pub const MAX_HISTORY_SECONDS: u64 = 3600;
/// History length when `seconds` is not given.
pub const DEFAULT_HISTORY_SECONDS: u64 = 300;

/// One board in `/api/boards`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BoardJson {
    pub board: String,
    pub address: String,
    pub roles: Vec<Role>,
    pub up: bool,
    pub last_seen_ms: Option<u64>,
    pub arch: Option<String>,
    pub os: Option<String>,
    pub latest: Option<LatestJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatestJson {
    pub cpu_percent: f64,
    pub mem_used_bytes: u64,
    pub mem_total_bytes: u64,
    pub load1: f64,
    pub temp_c: Option<f64>,
    pub net_rx_bps: f64,
    pub net_tx_bps: f64,
    pub disk_read_bps: f64,
    pub disk_write_bps: f64,
    pub throttled: Option<bool>,
    pub gpu_load_percent: Option<f64>,
    pub key_figure: Option<KeyFigureJson>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFigureJson {
    pub label: String,
    pub value: f64,
    pub unit: String,
}

/// `/api/history` answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryJson {
    pub board: String,
    pub series: String,
    pub points: Vec<(u64, f32)>,
}

/// Body of every 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorJson {
    pub error: String,
}
