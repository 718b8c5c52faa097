//! `berth events [--json] [--since TIME]`: what happens to the containers,
//! one line per event, streamed until the daemon goes away or the reader
//! does (a closed stdout ends it quietly).
//!
//! `--since` takes an RFC 3339 time (`2026-11-29T17:40:00Z`, with any
//! fraction of a second and a `Z` or `+HH:MM` offset), a unix time in
//! seconds (`1795651200`, `1795651200.5`) or a duration back from now
//! (`10m`, `90s`, `1h30m`, `2d`); the kept events after it come first
//! (the daemon keeps the last 1000 of the last 10 minutes, across its
//! restarts). Passing the time of the last event seen gets each later
//! event once.

use std::io::{self, BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nanoserde::SerJson;

use crate::api::{EventLine, Request, Response, Verb};
use crate::cli::Failure;
use crate::{errors, host, wire};

pub const USAGE: &str = "usage: berth events [--json] [--since TIME]\n\
  --json          one JSON object per line (time, name, event, detail, exit-code)\n\
  --since TIME    the kept events after TIME first: RFC 3339, unix seconds, or a duration back (10m, 1h30m)";

/// The largest line read from the daemon.
const MAX_LINE: usize = 64 * 1024;

fn usage(msg: String) -> Failure {
    Failure(format!("{msg}\n{USAGE}"), 2)
}

/// One event as `--json` prints it.
#[derive(SerJson)]
struct Printed<'a> {
    time: &'a str,
    name: &'a str,
    event: &'a str,
    detail: &'a str,
    #[nserde(rename = "exit-code")]
    exit_code: Option<i32>,
}

/// Runs `berth events`; returns the exit code.
pub fn run(args: &[String], socket: &Path) -> Result<i32, Failure> {
    let mut json = false;
    let mut since = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f, Some(v.to_string())),
            None => (a.as_str(), None),
        };
        match flag {
            "--json" if inline.is_none() => json = true,
            "--since" => {
                let v = match inline {
                    Some(v) => v,
                    None => it
                        .next()
                        .cloned()
                        .ok_or_else(|| usage("--since needs a value".into()))?,
                };
                since = Some(parse_since(&v, host::now_ns()).map_err(usage)?);
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(0);
            }
            _ if a.starts_with('-') => return Err(usage(format!("unknown option {a}"))),
            _ => return Err(usage("events takes no names".into())),
        }
    }
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Failure(
            format!(
                "connect to the daemon at {}: {err} (is the daemon running?)",
                socket.display(),
                err = errors::io_text(&e)
            ),
            1,
        )
    })?;
    let req = Request {
        verb: Verb::Events.as_str().into(),
        since,
        ..Request::default()
    };
    wire::send(&mut stream, &req)
        .map_err(|e| Failure(format!("send request: {err}", err = errors::io_text(&e)), 1))?;
    let mut reader = io::BufReader::new(stream);
    let first = read_line(&mut reader)?.ok_or_else(|| {
        Failure(
            "the daemon closed the connection without answering".into(),
            1,
        )
    })?;
    let resp: Response = wire::decode(&first)
        .map_err(|e| Failure(format!("malformed response from the daemon: {e}"), 1))?;
    if !resp.ok {
        let e = resp
            .error
            .unwrap_or_else(|| "the daemon reported an error".into());
        return Err(Failure(e, 1));
    }
    let stdout = io::stdout();
    loop {
        let Some(line) = read_line(&mut reader)? else {
            return Err(Failure("the daemon closed the connection".into(), 1));
        };
        let Ok(e) = wire::decode::<EventLine>(&line) else {
            continue; // a kind of line this client does not know
        };
        let text = if json {
            let p = Printed {
                time: &e.time,
                name: &e.name,
                event: &e.event,
                detail: &e.detail,
                exit_code: e.exit_code,
            };
            p.serialize_json()
        } else {
            text_line(&e)
        };
        let mut out = stdout.lock();
        let written = writeln!(out, "{text}").and_then(|()| out.flush());
        if written.is_err() {
            return Ok(0); // the reader is gone: `berth events | head`
        }
    }
}

/// `2026-11-29T17:40:00.123456789Z web exit exit-code 1`; the daemon's own
/// events are named `-`.
fn text_line(e: &EventLine) -> String {
    let name = if e.name.is_empty() { "-" } else { &e.name };
    let mut line = format!("{} {name} {}", e.time, e.event);
    if !e.detail.is_empty() {
        line.push(' ');
        line.push_str(&e.detail);
    }
    line
}

fn read_line(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, Failure> {
    let mut line = Vec::new();
    let n = io::Read::take(&mut *r, MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            Failure(
                format!("read from the daemon: {err}", err = errors::io_text(&e)),
                1,
            )
        })?;
    if n == 0 {
        return Ok(None);
    }
    if line.last() != Some(&b'\n') {
        if line.len() > MAX_LINE {
            return Err(Failure("the daemon sent a line that is too long".into(), 1));
        }
        return Ok(None); // cut short: the daemon went away
    }
    line.pop();
    Ok(Some(line))
}

/// `--since`: nanoseconds since the epoch.
pub fn parse_since(s: &str, now_ns: u64) -> Result<u64, String> {
    let bad = || {
        format!("--since {s:?}: expected an RFC 3339 time, unix seconds, or a duration like 10m")
    };
    if s.is_empty() {
        return Err(bad());
    }
    if s.contains('T') || s.contains('t') {
        return parse_rfc3339(s).ok_or_else(bad);
    }
    if let Some(ns) = parse_unix(s) {
        return Ok(ns);
    }
    let back = parse_duration(s).ok_or_else(bad)?;
    Ok(now_ns.saturating_sub(back))
}

/// `1795651200` or `1795651200.25` seconds.
fn parse_unix(s: &str) -> Option<u64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = whole.parse().ok()?;
    Some(secs.checked_mul(1_000_000_000)? + fraction_ns(frac)?)
}

/// Digits after a decimal point, as nanoseconds (beyond 9 digits cut).
fn fraction_ns(frac: &str) -> Option<u64> {
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().take(9).collect();
    let padded = format!("{digits:0<9}");
    padded.parse().ok()
}

/// `10m`, `90s`, `1h30m`, `2d`, `500ms`: nanoseconds.
fn parse_duration(s: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit: u64 = match &rest[..unit_len] {
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3600 * 1_000_000_000,
            "d" => 86_400 * 1_000_000_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(unit)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut nanos = 0;
    if let Some(r) = rest.strip_prefix('.') {
        let end = r.find(|c: char| !c.is_ascii_digit()).unwrap_or(r.len());
        if end == 0 {
            return None;
        }
        nanos = fraction_ns(&r[..end])?;
        rest = &r[end..];
    }
    let offset: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let ob = rest.as_bytes();
            if ob.len() != 6 || !matches!(ob[0], b'+' | b'-') || ob[3] != b':' {
                return None;
            }
            let oh: i64 = rest[1..3].parse().ok()?;
            let om: i64 = rest[4..6].parse().ok()?;
            let sign = if ob[0] == b'+' { 1 } else { -1 };
            sign * (oh * 3600 + om * 60)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(secs)
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(nanos)
}

/// Days since 1970-01-01 of a date in the proleptic Gregorian calendar
/// (eras of 400 years, from March, as `host::rfc3339` counts back).
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

    #[test]
    fn since_takes_rfc3339_unix_times_and_durations() {
        let now = 1_795_651_200_000_000_000; // 2026-11-26T00:00:00Z
        assert_eq!(parse_since("2026-11-26T00:00:00Z", 0), Ok(now));
        // What the events print parses back to the same nanosecond.
        for t in [0, now, now + 123_456_789, 951_827_696_500_000_000] {
            assert_eq!(parse_since(&host::rfc3339(t), 0), Ok(t), "{t}");
        }
        assert_eq!(
            parse_since("2026-11-26T01:30:00.5+01:30", 0),
            Ok(now + 500_000_000)
        );
        assert_eq!(parse_since("2026-11-25T22:00:00-02:00", 0), Ok(now));
        assert_eq!(parse_since("1795651200", 0), Ok(now));
        assert_eq!(parse_since("1795651200.25", 0), Ok(now + 250_000_000));
        assert_eq!(parse_since("10m", now), Ok(now - 600_000_000_000));
        assert_eq!(parse_since("1h30m", now), Ok(now - 5_400_000_000_000));
        assert_eq!(parse_since("500ms", now), Ok(now - 500_000_000));
        assert_eq!(parse_since("2d", now), Ok(now - 172_800_000_000_000));
        for bad in [
            "",
            "10x",
            "m",
            "2026-13-01T00:00:00Z",
            "2026-11-26T00:00:00",
            "1.2.3",
            "-5",
        ] {
            assert!(parse_since(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn text_lines_name_the_daemon_dash() {
        let e = EventLine {
            time: "2026-11-29T17:40:00.123000000Z".into(),
            time_ns: 0,
            name: "web".into(),
            event: "exit".into(),
            detail: "exit-code 1".into(),
            exit_code: Some(1),
        };
        assert_eq!(
            text_line(&e),
            "2026-11-29T17:40:00.123000000Z web exit exit-code 1"
        );
        let r = EventLine {
            name: String::new(),
            event: "reload".into(),
            detail: String::new(),
            ..e
        };
        assert_eq!(text_line(&r), "2026-11-29T17:40:00.123000000Z - reload");
    }
}
