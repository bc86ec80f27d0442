//! What a link does to the frames that cross it ([`LinkProfile`]: delay, jitter, loss, rate),
//! parsed from what people write (`30ms`, `1%`, `100mbit`) on the command line and in the
//! inventory, and shown back the same way.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Longest delay or jitter accepted (a satellite hop is ~600 ms).
pub const MAX_DELAY: Duration = Duration::from_secs(5);
/// Slowest and fastest rates accepted.
pub const RATE_RANGE: std::ops::RangeInclusive<u64> = 8_000..=100_000_000_000;

/// How a link treats each frame, one direction at a time (both directions get the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LinkProfile {
    /// Added to every frame.
    pub delay: Duration,
    /// Each frame's delay varies by up to this much either way (order is kept).
    pub jitter: Duration,
    /// Share of frames dropped, in millionths (10 000 = 1 %).
    pub loss_ppm: u32,
    /// Bits per second the link carries, if limited.
    pub rate_bps: Option<u64>,
}

impl LinkProfile {
    /// A link that changes nothing.
    pub fn is_plain(&self) -> bool {
        self.delay.is_zero()
            && self.jitter.is_zero()
            && self.loss_ppm == 0
            && self.rate_bps.is_none()
    }

    /// Share of frames dropped, 0.0 to 1.0.
    pub fn loss(&self) -> f64 {
        f64::from(self.loss_ppm) / 1e6
    }

    /// What each direction of the link does: a delay is the round trip's (as netem on one
    /// side would add it), so each way gets half of it and of the jitter; loss and rate
    /// apply to each direction.
    pub fn per_direction(&self) -> LinkProfile {
        LinkProfile {
            delay: self.delay / 2,
            jitter: self.jitter / 2,
            ..*self
        }
    }

    /// Why the profile cannot be applied, if it cannot.
    pub fn problem(&self) -> Option<String> {
        if self.jitter > self.delay {
            return Some(format!(
                "jitter {} is larger than the delay {} (a frame cannot leave before it came)",
                format_duration(self.jitter),
                format_duration(self.delay)
            ));
        }
        None
    }
}

/// `30ms`, `1.5s`, `250us`, `0`: a delay or jitter.
pub fn parse_delay(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let bad = || format!("delay `{text}` must look like \"30ms\", \"1.5s\" or \"250us\"");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], &s[split..]);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "us" | "µs" => value / 1e6,
        "" if value == 0.0 => 0.0,
        _ => return Err(bad()),
    };
    let delay = Duration::try_from_secs_f64(seconds).map_err(|_| bad())?;
    if delay > MAX_DELAY {
        return Err(format!(
            "delay `{text}` is over the {} s limit",
            MAX_DELAY.as_secs()
        ));
    }
    Ok(delay)
}

/// `1%`, `0.5%`: a loss rate, in millionths.
pub fn parse_loss(text: &str) -> Result<u32, String> {
    let s = text.trim();
    let bad = || format!("loss `{text}` must be a percentage from 0% to 100%, like \"1%\"");
    let number = s.strip_suffix('%').ok_or_else(bad)?;
    let percent: f64 = number.trim().parse().map_err(|_| bad())?;
    if !(0.0..=100.0).contains(&percent) {
        return Err(bad());
    }
    Ok((percent * 10_000.0).round() as u32)
}

/// `100mbit`, `1gbit`, `512kbit`, `9600bit`: a rate in bits per second (as tc writes them).
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let s = text.trim().to_ascii_lowercase();
    let bad = || format!("rate `{text}` must look like \"100mbit\", \"1gbit\" or \"512kbit\"");
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = (&s[..split], &s[split..]);
    let value: f64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "bit" => 1.0,
        "kbit" => 1e3,
        "mbit" => 1e6,
        "gbit" => 1e9,
        _ => return Err(bad()),
    };
    let bps = value * scale;
    if !bps.is_finite() || bps < *RATE_RANGE.start() as f64 || bps > *RATE_RANGE.end() as f64 {
        return Err(format!("rate `{text}` is outside 8kbit to 100gbit"));
    }
    Ok(bps.round() as u64)
}

/// `30ms`, `1.5s`, `250us`.
pub fn format_duration(d: Duration) -> String {
    let micros = d.as_micros();
    if !micros.is_multiple_of(1000) {
        format!("{micros}us")
    } else if !micros.is_multiple_of(1_000_000) || micros == 0 {
        format!("{}ms", micros / 1000)
    } else {
        format!("{}s", micros / 1_000_000)
    }
}

/// `1%`, `0.5%`.
pub fn format_loss(ppm: u32) -> String {
    format!("{}%", f64::from(ppm) / 10_000.0)
}

/// `100mbit`, `1gbit`.
pub fn format_rate(bps: u64) -> String {
    for (scale, unit) in [
        (1_000_000_000, "gbit"),
        (1_000_000, "mbit"),
        (1_000, "kbit"),
    ] {
        if bps >= scale && bps.is_multiple_of(scale) {
            return format!("{}{unit}", bps / scale);
        }
    }
    format!("{bps}bit")
}

impl fmt::Display for LinkProfile {
    /// `delay 30ms ±5ms, loss 1%, rate 100mbit`, or `plain`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if !self.delay.is_zero() {
            let mut part = format!("delay {}", format_duration(self.delay));
            if !self.jitter.is_zero() {
                part.push_str(&format!(" ±{}", format_duration(self.jitter)));
            }
            parts.push(part);
        }
        if self.loss_ppm > 0 {
            parts.push(format!("loss {}", format_loss(self.loss_ppm)));
        }
        if let Some(bps) = self.rate_bps {
            parts.push(format!("rate {}", format_rate(bps)));
        }
        if parts.is_empty() {
            return f.write_str("plain");
        }
        f.write_str(&parts.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_parse_and_print_back() {
        assert_eq!(parse_delay("30ms"), Ok(Duration::from_millis(30)));
        assert_eq!(parse_delay("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_delay("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_delay("0"), Ok(Duration::ZERO));
        for bad in ["30", "30 ms", "fast", "-1ms", "10min", "6s"] {
            assert!(parse_delay(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(30)), "30ms");
        assert_eq!(format_duration(Duration::from_micros(250)), "250us");
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
    }

    #[test]
    fn loss_and_rate_parse() {
        assert_eq!(parse_loss("1%"), Ok(10_000));
        assert_eq!(parse_loss("100%"), Ok(1_000_000));
        assert_eq!(parse_loss("0.5%"), Ok(5_000));
        assert_eq!(format_loss(5_000), "0.5%");
        for bad in ["1", "101%", "-1%", "x%"] {
            assert!(parse_loss(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rate("100mbit"), Ok(100_000_000));
        assert_eq!(parse_rate("1Gbit"), Ok(1_000_000_000));
        assert_eq!(parse_rate("512kbit"), Ok(512_000));
        for bad in ["100", "100mb", "1bit", "1000gbit"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
        assert_eq!(format_rate(100_000_000), "100mbit");
        assert_eq!(format_rate(1_500_000), "1500kbit");
    }

    #[test]
    fn profiles_print_what_they_do() {
        let p = LinkProfile {
            delay: Duration::from_millis(30),
            jitter: Duration::from_millis(5),
            loss_ppm: 10_000,
            rate_bps: Some(100_000_000),
        };
        assert_eq!(p.to_string(), "delay 30ms ±5ms, loss 1%, rate 100mbit");
        assert_eq!(LinkProfile::default().to_string(), "plain");
        assert!(LinkProfile::default().is_plain());
        let wild = LinkProfile {
            jitter: Duration::from_millis(5),
            ..LinkProfile::default()
        };
        assert!(wild
            .problem()
            .is_some_and(|p| p.contains("larger than the delay")));
    }
}
