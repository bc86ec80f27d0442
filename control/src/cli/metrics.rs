//! `lab metrics export`: read history from the running control plane (`lab serve`, found
//! through `<state>/serve.addr`) and write it as CSV: `timestamp_ms,iso_time,board,series,value`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};

use super::InventoryArg;
use crate::metrics::client::{encode_query_value, ServeClient};
use crate::serve_api::{BoardJson, HistoryJson, MAX_HISTORY_SECONDS};

#[derive(Debug, Args)]
pub struct MetricsArgs {
    #[command(subcommand)]
    pub command: MetricsCommand,
}

#[derive(Debug, Subcommand)]
pub enum MetricsCommand {
    /// Write recent history as CSV (timestamp_ms,iso_time,board,series,value), read from the
    /// running control plane (`lab up` starts it; or `lab serve`).
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// Only this board (repeatable). Default: every board.
    #[arg(long = "board", value_name = "BOARD")]
    pub boards: Vec<String>,
    /// Only this series (repeatable), e.g. cpu_percent, net_rx_bps, role:lb:requests_total.
    /// Default: every series each board has.
    #[arg(long = "series", value_name = "SERIES")]
    pub series: Vec<String>,
    /// How far back, in seconds (1 to 3600).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=MAX_HISTORY_SECONDS))]
    pub seconds: u64,
    /// Write to this file instead of standard output.
    #[arg(short, long, value_name = "FILE.csv")]
    pub output: Option<PathBuf>,
}

pub async fn run(args: MetricsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        MetricsCommand::Export(a) => export(a).await,
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let inv = super::load_inventory(&args.inventory)?;
    let client = ServeClient::discover(&inv.cluster.state_dir, Duration::from_secs(2)).await?;
    let client = ServeClient::new(client.addr(), Duration::from_secs(30));
    let boards: Vec<String> = if args.boards.is_empty() {
        let all: Vec<BoardJson> = client.get_json("/api/boards").await?;
        all.into_iter().map(|b| b.board).collect()
    } else {
        args.boards.clone()
    };
    let mut out = String::from("timestamp_ms,iso_time,board,series,value\n");
    let mut rows = 0usize;
    for board in &boards {
        let b = encode_query_value(board);
        let series: Vec<String> = if args.series.is_empty() {
            client
                .get_json(&format!("/api/series?board={b}"))
                .await
                .with_context(|| format!("listing the series of board `{board}`"))?
        } else {
            args.series.clone()
        };
        for s in &series {
            let path = format!(
                "/api/history?board={b}&series={}&seconds={}",
                encode_query_value(s),
                args.seconds
            );
            let history: HistoryJson = client
                .get_json(&path)
                .await
                .with_context(|| format!("reading series `{s}` of board `{board}`"))?;
            for (ts, value) in history.points {
                csv_row(&mut out, ts, board, s, value);
                rows += 1;
            }
        }
    }
    match &args.output {
        Some(path) => {
            std::fs::write(path, &out).with_context(|| format!("writing {}", path.display()))?;
            eprintln!(
                "wrote {rows} row(s) for {} board(s) to {}",
                boards.len(),
                path.display()
            );
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(out.as_bytes())?;
            stdout.flush()?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn csv_row(out: &mut String, ts_ms: u64, board: &str, series: &str, value: f32) {
    out.push_str(&format!(
        "{ts_ms},{},{},{},{value}\n",
        lab_api::time::rfc3339_utc_ms(ts_ms),
        csv_field(board),
        csv_field(series)
    ));
}

/// A CSV field, quoted when it holds a comma, a quote or a line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_rows_quote_when_needed() {
        let mut out = String::new();
        csv_row(&mut out, 1000, "pi-1", "cpu_percent", 12.5);
        csv_row(&mut out, 2000, "odd,name", "say \"hi\"", 1.0);
        assert_eq!(
            out,
            "1000,1970-01-01T00:00:01.000Z,pi-1,cpu_percent,12.5\n2000,1970-01-01T00:00:02.000Z,\"odd,name\",\"say \"\"hi\"\"\",1\n"
        );
    }
}
