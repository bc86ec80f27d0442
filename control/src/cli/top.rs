//! `lab top`: a live terminal view of the cluster, read from the running control plane
//! (`lab serve`, found through `<state>/serve.addr` or given with `--url`). A poller task asks
//! `/api/boards` and `/api/events` every second; a thread reads keys; the loop redraws on new
//! data and on resize, and quits on `q`, Esc, Ctrl-C or SIGTERM with the terminal restored.
//! Drawing is in [`crate::tui`].

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use super::InventoryArg;
use crate::metrics::client::{encode_query_value, ClientError, ServeClient};
use crate::metrics::events::Event;
use crate::serve_api::{BoardJson, HistoryJson};
use crate::tui::model::TopModel;
use crate::tui::render::render;
use crate::tui::term::TerminalGuard;

#[derive(Debug, Args)]
pub struct TopArgs {
    #[command(flatten)]
    pub inventory: InventoryArg,
    /// The control plane's address (`http://127.0.0.1:7480`); default: the one `lab serve`
    /// recorded in the inventory's state directory.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
    /// Seconds between refreshes (0.1 to 60).
    #[arg(long, default_value = "1", value_name = "SECONDS", value_parser = super::seconds_0_1_to_60)]
    pub interval: Duration,
}

/// How long one request to `lab serve` may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Seconds of history fetched at start for the sparklines.
const SEED_SECONDS: u64 = 120;

/// `host:port` from `http://host:port[/]` (or a bare `host:port`).
pub fn addr_from_url(url: &str) -> anyhow::Result<String> {
    let url = url.trim();
    if url.starts_with("https://") {
        bail!("`{url}`: lab serve speaks plain HTTP; use http://");
    }
    let rest = url.strip_prefix("http://").unwrap_or(url);
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || rest.contains("://") || !rest.contains(':') {
        bail!("`{url}` is not a control-plane address: expected http://HOST:PORT (e.g. http://127.0.0.1:7480)");
    }
    Ok(rest.to_string())
}

pub async fn run(args: TopArgs) -> anyhow::Result<ExitCode> {
    let client = match &args.url {
        Some(url) => ServeClient::new(addr_from_url(url)?, REQUEST_TIMEOUT),
        None => {
            let inv = super::load_inventory(&args.inventory)?;
            ServeClient::discover(&inv.cluster.state_dir, REQUEST_TIMEOUT).await?
        }
    };
    let source = format!("http://{}", client.addr());
    // Fail before touching the terminal when nobody answers.
    let boards: Vec<BoardJson> = client
        .get_json("/api/boards")
        .await
        .with_context(|| format!("reading {source}/api/boards"))?;
    if !std::io::stdout().is_terminal() {
        bail!("lab top draws on a terminal; for scripts use `lab status --json` or {source}/api/boards");
    }
    let mut model = TopModel::new(source);
    seed(&client, &mut model, &boards).await;
    model.apply_boards(boards, crate::metrics::now_ms());

    let (poll_tx, mut poll_rx) = mpsc::channel::<Poll>(4);
    let poller = tokio::spawn(poll(client, args.interval, model.last_event_ms(), poll_tx));
    let (key_tx, mut key_rx) = mpsc::channel::<TermEvent>(16);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_key_reader(key_tx, stop.clone());
    let mut term_signal = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;

    let result = async {
        let mut guard = TerminalGuard::new().context("setting up the terminal")?;
        loop {
            guard
                .terminal
                .draw(|f| render(f, &model))
                .context("drawing")?;
            tokio::select! {
                p = poll_rx.recv() => match p {
                    Some(Poll::Boards(b)) => model.apply_boards(b, crate::metrics::now_ms()),
                    Some(Poll::Events(e)) => model.apply_events(e),
                    Some(Poll::Failed(msg)) => model.set_error(msg),
                    None => break,
                },
                k = key_rx.recv() => match k {
                    Some(TermEvent::Key(key)) if key.kind == KeyEventKind::Press => {
                        let ctrl_c = key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL);
                        if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                            break;
                        }
                    }
                    // A resize (or anything else) just redraws at the new size.
                    Some(_) => {}
                    None => break,
                },
                _ = term_signal.recv() => break,
            }
        }
        drop(guard);
        Ok::<_, anyhow::Error>(())
    }
    .await;
    stop.store(true, Ordering::SeqCst);
    poller.abort();
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    result?;
    Ok(ExitCode::SUCCESS)
}

/// What the poller reports.
enum Poll {
    Boards(Vec<BoardJson>),
    Events(Vec<Event>),
    Failed(String),
}

fn describe(e: &ClientError) -> String {
    match e {
        ClientError::NotRunning { .. } => e.to_string(),
        other => format!("connection problem: {other}"),
    }
}

async fn poll(client: ServeClient, every: Duration, mut since_ms: u64, tx: mpsc::Sender<Poll>) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let msg = match client.get_json::<Vec<BoardJson>>("/api/boards").await {
            Ok(b) => Poll::Boards(b),
            Err(e) => Poll::Failed(describe(&e)),
        };
        let ok = matches!(msg, Poll::Boards(_));
        if tx.send(msg).await.is_err() {
            return;
        }
        if !ok {
            continue;
        }
        let path = format!("/api/events?since_ms={}", since_ms + 1);
        if let Ok(events) = client.get_json::<Vec<Event>>(&path).await {
            if let Some(newest) = events.iter().map(|e| e.ts_ms).max() {
                since_ms = since_ms.max(newest);
                if tx.send(Poll::Events(events)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Fill the sparklines from recent history and read the last event (best effort: a failure
/// only means shorter sparklines).
async fn seed(client: &ServeClient, model: &mut TopModel, boards: &[BoardJson]) {
    for b in boards {
        let name = encode_query_value(&b.board);
        let get = |series: &str| {
            let path = format!("/api/history?board={name}&series={series}&seconds={SEED_SECONDS}");
            async move {
                client
                    .get_json::<HistoryJson>(&path)
                    .await
                    .map(|h| h.points)
                    .unwrap_or_default()
            }
        };
        let cpu = get("cpu_percent").await;
        let rx = get("net_rx_bps").await;
        let tx = get("net_tx_bps").await;
        let tx_at: std::collections::HashMap<u64, f32> =
            tx.into_iter().map(|(ts, v)| (ts / 1000, v)).collect();
        let net: Vec<(u64, f32)> = rx
            .into_iter()
            .map(|(ts, v)| (ts, v + tx_at.get(&(ts / 1000)).copied().unwrap_or(0.0)))
            .collect();
        model.seed_history(&b.board, &cpu, &net);
    }
    if let Ok(events) = client
        .get_json::<Vec<Event>>("/api/events?since_ms=0")
        .await
    {
        model.apply_events(events);
    }
}

/// Read terminal events on a thread (crossterm's reader blocks) until `stop` is set or the
/// receiver is gone.
fn spawn_key_reader(
    tx: mpsc::Sender<TermEvent>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match event::poll(Duration::from_millis(100)) {
                Ok(true) => match event::read() {
                    Ok(ev) => {
                        if tx.blocking_send(ev).is_err() {
                            return;
                        }
                    }
                    Err(_) => return,
                },
                Ok(false) => {}
                Err(_) => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_addresses() {
        assert_eq!(
            addr_from_url("http://127.0.0.1:7480/").expect("ok"),
            "127.0.0.1:7480"
        );
        assert_eq!(addr_from_url("127.0.0.1:9").expect("ok"), "127.0.0.1:9");
        assert!(addr_from_url("https://127.0.0.1:7480")
            .expect_err("tls")
            .to_string()
            .contains("plain HTTP"));
        assert!(addr_from_url("http://127.0.0.1:7480/api").is_err());
        assert!(addr_from_url("http://localhost").is_err());
    }
}
