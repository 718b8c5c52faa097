//! Times as people write and read them: `--since`/`--until` values
//! (RFC 3339, unix seconds, or a duration back from now like `10m`), the
//! RFC 3339 stamps of records parsed back to nanoseconds, and "5 minutes"
//! for `ps`. All UTC.

/// Nanoseconds since the epoch of an RFC 3339 time: `2026-11-29T17:30:05Z`,
/// with optional fraction and a `Z` or `+HH:MM`/`-HH:MM` offset; a date
/// alone is its midnight UTC.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = s.get(from..from + len)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    if !(1..=12).contains(&mo) || !(1..=days_in_month(y, mo)).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, mo as u32, d as u32);
    if b.len() == 10 {
        return u64::try_from(days * 86_400).ok().map(|s| s * 1_000_000_000);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') {
        return None;
    }
    let (h, mi) = (num(11, 2)?, num(14, 2)?);
    if b.get(16) != Some(&b':') {
        return None;
    }
    let sec = num(17, 2)?;
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos: u64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            if i - start < 9 {
                nanos = nanos * 10 + u64::from(b[i] - b'0');
            }
            i += 1;
        }
        if i == start {
            return None;
        }
        for _ in (i - start)..9 {
            nanos *= 10;
        }
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        rest if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            sign * (num(i + 1, 2)? * 3600 + num(i + 4, 2)? * 60)
        }
        _ => return None,
    };
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs)
        .ok()
        .and_then(|s| s.checked_mul(1_000_000_000))
        .and_then(|n| n.checked_add(nanos))
}

/// A `--since`/`--until` value, relative to `now_ns`: RFC 3339, unix
/// seconds (with an optional fraction), or a duration back from now made
/// of numbers with units `ns`, `us`, `ms`, `s`, `m`, `h`, `d` (`1h30m`,
/// `10m`, `2d`).
pub fn parse_point(s: &str, now_ns: u64) -> Result<u64, String> {
    let bad = || {
        format!(
            "{s:?} is not a time: give RFC 3339 (2026-11-29T17:30:00Z), unix seconds, or a duration such as 10m"
        )
    };
    if let Some(t) = parse_rfc3339(s) {
        return Ok(t);
    }
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit() || c == b'.') {
        let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: u64 = whole.parse().map_err(|_| bad())?;
        if frac.bytes().any(|c| c == b'.') {
            return Err(bad());
        }
        let mut nanos: u64 = 0;
        for (i, c) in frac.bytes().enumerate().take(9) {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(nanos))
            .ok_or_else(bad);
    }
    parse_duration(s)
        .map(|d| now_ns.saturating_sub(d))
        .ok_or_else(bad)
}

/// Nanoseconds in a Go-style duration (`10m`, `1h30m`, `2.5s`, `500ms`),
/// and days (`2d`).
fn parse_duration(s: &str) -> Option<u64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            _ => return None,
        };
        rest = &rest[u..];
        total += value * unit;
    }
    (total.is_finite() && total < u64::MAX as f64).then_some(total as u64)
}

/// "Less than a second", "5 seconds", "About a minute", "3 hours", ... for
/// a span of `ns` nanoseconds.
pub fn human(ns: u64) -> String {
    let s = ns / 1_000_000_000;
    let plural = |n: u64, unit: &str| {
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    match s {
        0 => "Less than a second".to_string(),
        1..=59 => plural(s, "second"),
        60..=119 => "About a minute".to_string(),
        120..=3599 => plural(s / 60, "minute"),
        3600..=7199 => "About an hour".to_string(),
        7200..=172_799 => plural(s / 3600, "hour"),
        172_800..=1_209_599 => plural(s / 86_400, "day"),
        1_209_600..=5_183_999 => plural(s / 604_800, "week"),
        5_184_000..=63_071_999 => plural(s / 2_592_000, "month"),
        _ => plural(s / 31_536_000, "year"),
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (the inverse of `host::civil_from_days`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;

    #[test]
    fn rfc3339_round_trips() {
        for ns in [
            0,
            951_827_696_500_000_000,
            1_795_651_200_000_000_000,
            1_795_651_200_123_456_789,
        ] {
            assert_eq!(parse_rfc3339(&host::rfc3339(ns)), Some(ns), "{ns}");
        }
        assert_eq!(
            parse_rfc3339("2026-11-26T01:00:00+01:00"),
            Some(1_795_651_200_000_000_000)
        );
        assert_eq!(parse_rfc3339("2026-11-26"), Some(1_795_651_200_000_000_000));
        assert_eq!(
            parse_rfc3339("2026-11-26T00:00:00.5Z"),
            Some(1_795_651_200_500_000_000)
        );
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T00:00:00",
            "2026-11-26T00:00:00.Z",
            "2026-11-26X00:00:00Z",
            "yesterday",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn points_in_every_form() {
        let now = 1_000_000 * 1_000_000_000;
        assert_eq!(parse_point("10m", now), Ok(now - 600 * 1_000_000_000));
        assert_eq!(parse_point("1h30m", now), Ok(now - 5400 * 1_000_000_000));
        assert_eq!(parse_point("500ms", now), Ok(now - 500_000_000));
        assert_eq!(parse_point("2d", now), Ok(now - 2 * 86_400 * 1_000_000_000));
        assert_eq!(
            parse_point("1d12h", now),
            Ok(now - 36 * 3600 * 1_000_000_000)
        );
        assert_eq!(
            parse_point("1700000000", now),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_point("1700000000.25", now),
            Ok(1_700_000_000_250_000_000)
        );
        assert_eq!(
            parse_point("2026-11-26T00:00:00Z", now),
            Ok(1_795_651_200_000_000_000)
        );
        for bad in ["", "x", "10q", "1.2.3", "m", "-5m"] {
            assert!(parse_point(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn human_spans() {
        let s = 1_000_000_000;
        assert_eq!(human(0), "Less than a second");
        assert_eq!(human(s), "1 second");
        assert_eq!(human(5 * s), "5 seconds");
        assert_eq!(human(90 * s), "About a minute");
        assert_eq!(human(5 * 60 * s), "5 minutes");
        assert_eq!(human(3600 * s), "About an hour");
        assert_eq!(human(2 * 3600 * s), "2 hours");
        assert_eq!(human(3 * 86_400 * s), "3 days");
        assert_eq!(human(21 * 86_400 * s), "3 weeks");
        assert_eq!(human(90 * 86_400 * s), "3 months");
        assert_eq!(human(800 * 86_400 * s), "2 years");
    }
}
