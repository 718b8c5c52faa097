//! `berth events [--json] [--since TIME]`: what happens to the containers,
//! one line per event, streamed until the daemon goes away or the reader
//! does (a closed stdout ends it quietly).
//!
//! `--since` takes an RFC 3339 time (`2026-11-29T17:40:00Z`, with any
//! fraction of a second and a `Z` or `+HH:MM` offset), a unix time in
//! seconds (`1795651200`, `1795651200.5`) or a duration back from now
//! (`10m`, `90s`, `1h30m`, `2d`; see `when`); the kept events after it come first
//! (the daemon keeps the last 1000 of the last 10 minutes, across its
//! restarts). Passing the time of the last event seen gets each later
//! event once.

use std::io::{self, BufRead, Write};
use std::path::Path;

use nanoserde::SerJson;

use crate::api::{EventLine, Request, Response, Verb};
use crate::cli::{self, Args, Failure, Opt};
use crate::{errors, host, when, wire};

const OPTS: &[Opt] = &[
    Opt {
        long: "json",
        short: None,
        value: false,
    },
    Opt {
        long: "since",
        short: None,
        value: true,
    },
];

/// The largest line read from the daemon.
const MAX_LINE: usize = 64 * 1024;

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
    let a = Args::parse(args, OPTS)?;
    if !a.positional.is_empty() {
        return Err(Failure("events takes no names".into(), 2));
    }
    let json = a.has("json");
    let since = a
        .value("since")
        .map(|v| when::parse_point(v, host::now_ns()))
        .transpose()
        .map_err(|e| Failure(format!("--since: {e}"), 2))?;
    let mut stream = cli::connect(socket)?;
    let req = Request {
        verb: Verb::Events.as_str().into(),
        since,
        ..Request::default()
    };
    cli::send(&mut stream, &req)?;
    let mut reader = io::BufReader::new(stream);
    first_answer(&mut reader)?;
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

/// Reads the daemon's answer to an events request, the line before the
/// events: an error it names is the client's error.
pub fn first_answer(reader: &mut impl BufRead) -> Result<(), Failure> {
    let first = read_line(reader)?.ok_or_else(|| {
        Failure(
            "the daemon closed the connection without answering".into(),
            1,
        )
    })?;
    let resp: Response = wire::decode(&first)
        .map_err(|e| Failure(format!("malformed response from the daemon: {e}"), 1))?;
    cli::checked(resp).map(drop)
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

pub fn read_line(r: &mut impl BufRead) -> Result<Option<Vec<u8>>, Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
