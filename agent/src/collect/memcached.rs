//! memcached collector: sends `stats\r\n` over TCP to `host:port` and reads the `STAT` lines.
//!
//! Figures (names stable):
//! - counters: `get_hits_total`, `get_misses_total`, `evictions_total`, `cmd_get_total`,
//!   `cmd_set_total`
//! - gauges: `curr_items`, `bytes`, `curr_connections`, `limit_maxbytes`
//!
//! A figure the server does not report is absent.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{counter, gauge, CollectError, Reading};

/// `STAT` name → (figure name, counter?).
const FIGURES: &[(&str, &str, bool)] = &[
    ("get_hits", "get_hits_total", true),
    ("get_misses", "get_misses_total", true),
    ("evictions", "evictions_total", true),
    ("cmd_get", "cmd_get_total", true),
    ("cmd_set", "cmd_set_total", true),
    ("curr_items", "curr_items", false),
    ("bytes", "bytes", false),
    ("curr_connections", "curr_connections", false),
    ("limit_maxbytes", "limit_maxbytes", false),
];

/// Longest `stats` answer accepted.
const MAX_ANSWER: usize = 64 * 1024;

/// Asks the memcached at `address` (`host:port`) for its stats.
pub async fn collect(address: &str) -> Result<Reading, CollectError> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(b"stats\r\n").await?;
    let mut answer = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while !answer.ends_with(b"END\r\n") {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err("connection closed before END".into());
        }
        answer.extend_from_slice(&chunk[..n]);
        if answer.len() > MAX_ANSWER {
            return Err("stats answer too long".into());
        }
    }
    Ok(parse(&String::from_utf8_lossy(&answer)))
}

/// Picks the exported figures out of a `stats` answer.
pub fn parse(answer: &str) -> Reading {
    let mut figures = Vec::new();
    for line in answer.lines() {
        let mut words = line.split_whitespace();
        if words.next() != Some("STAT") {
            continue;
        }
        let (Some(name), Some(value)) = (words.next(), words.next()) else {
            continue;
        };
        let Some((_, figure, is_counter)) = FIGURES.iter().find(|(stat, _, _)| *stat == name)
        else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        figures.push(if *is_counter {
            counter(figure, value)
        } else {
            gauge(figure, value)
        });
    }
    Reading {
        figures,
        labels: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from memcached 1.6 (`printf 'stats\r\n' | nc`), shortened.
    const STATS: &str = "STAT pid 4242\r\nSTAT uptime 12\r\nSTAT version 1.6.18\r\n\
STAT curr_connections 2\r\nSTAT cmd_get 5\r\nSTAT cmd_set 3\r\nSTAT get_hits 4\r\n\
STAT get_misses 1\r\nSTAT bytes 210\r\nSTAT curr_items 3\r\nSTAT evictions 0\r\n\
STAT limit_maxbytes 67108864\r\nSTAT rusage_user 0.010000\r\nEND\r\n";

    #[test]
    fn stats_to_figures() {
        let reading = parse(STATS);
        let get = |name: &str| {
            reading
                .figures
                .iter()
                .find(|f| f.name == name)
                .map(|f| (f.value, f.counter))
        };
        assert_eq!(get("get_hits_total"), Some((4.0, true)));
        assert_eq!(get("get_misses_total"), Some((1.0, true)));
        assert_eq!(get("cmd_get_total"), Some((5.0, true)));
        assert_eq!(get("cmd_set_total"), Some((3.0, true)));
        assert_eq!(get("evictions_total"), Some((0.0, true)));
        assert_eq!(get("curr_items"), Some((3.0, false)));
        assert_eq!(get("bytes"), Some((210.0, false)));
        assert_eq!(get("curr_connections"), Some((2.0, false)));
        assert_eq!(get("limit_maxbytes"), Some((67108864.0, false)));
        assert_eq!(reading.figures.len(), 9);
    }
}
