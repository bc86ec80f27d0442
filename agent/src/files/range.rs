//! HTTP `Range: bytes=...` for one range (what video players and `curl -r` send): the first,
//! last and suffix forms. Several ranges at once are answered with the whole object (allowed
//! by RFC 9110). Pure.

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: the whole object, 200.
    Whole,
    /// Bytes `start..=end`, 206.
    Part { start: u64, end: u64 },
    /// Nothing of it exists: 416.
    Unsatisfiable,
}

/// Interprets `header` (None: no `Range` header) for an object of `size` bytes.
pub fn parse(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => RangeAsk::Unsatisfiable,
            Some(_) if size == 0 => RangeAsk::Unsatisfiable,
            Some(n) => RangeAsk::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            None => RangeAsk::Whole,
        },
        // bytes=A-: from A to the end.
        (false, true) => match number(first) {
            Some(a) if a < size => RangeAsk::Part {
                start: a,
                end: size - 1,
            },
            Some(_) => RangeAsk::Unsatisfiable,
            None => RangeAsk::Whole,
        },
        // bytes=A-B
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a > b => RangeAsk::Whole,
            (Some(a), Some(_)) if a >= size => RangeAsk::Unsatisfiable,
            (Some(a), Some(b)) => RangeAsk::Part {
                start: a,
                end: b.min(size - 1),
            },
            _ => RangeAsk::Whole,
        },
        (true, true) => RangeAsk::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_forms_and_their_edges() {
        let part = |start, end| RangeAsk::Part { start, end };
        assert_eq!(parse(None, 100), RangeAsk::Whole);
        assert_eq!(parse(Some("bytes=0-9"), 100), part(0, 9));
        assert_eq!(parse(Some("bytes=90-200"), 100), part(90, 99));
        assert_eq!(parse(Some("bytes=50-"), 100), part(50, 99));
        assert_eq!(parse(Some("bytes=-10"), 100), part(90, 99));
        assert_eq!(parse(Some("bytes=-500"), 100), part(0, 99));
        assert_eq!(parse(Some("bytes=100-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=100-200"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        // Not understood or several ranges: the whole object.
        for whole in [
            "bytes=5-1",
            "bytes=a-b",
            "items=0-1",
            "bytes=0-1,5-6",
            "bytes=-",
        ] {
            assert_eq!(parse(Some(whole), 100), RangeAsk::Whole, "{whole}");
        }
    }
}
