//! The daemon's own log: every line starts with its time (RFC 3339, UTC,
//! milliseconds) and level, on stderr; or, with `"log-target": "syslog"`,
//! each message is one RFC 3164 datagram (`<PRI>Mmm dd hh:mm:ss
//! berth[PID]: msg`, facility daemon, the time in UTC: the time zone
//! database is not read) to /dev/log (or the socket `"syslog:PATH"`
//! names).
//!
//! The syslog socket never blocks the loop: sends are non-blocking, and a
//! message the socket cannot take now is dropped and counted; the count is
//! reported in the next message that goes through. A syslog daemon that
//! restarted (the socket refuses, or is a new file) is connected to again
//! at the next message. When the socket is missing at start, the messages
//! go to stderr, after a warning that says so.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::config::LogTarget;
use crate::{errors, host};

/// syslog facility "daemon" (3), shifted as PRI wants it.
const FACILITY_DAEMON: u8 = 3 << 3;

/// The time at the start of a stderr line: RFC 3339, UTC, milliseconds.
pub fn stamp(ns: u64) -> String {
    let full = host::rfc3339(ns); // ...T22:50:32.123456789Z
    format!("{}Z", &full[..full.len() - 7])
}

/// One stderr line, without its newline.
pub fn stderr_line(ns: u64, level: log::Level, msg: &str) -> String {
    format!("{} {:<5} {msg}", stamp(ns), level.as_str())
}

/// syslog severity of a level.
fn severity(level: log::Level) -> u8 {
    match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    }
}

/// One RFC 3164 message: `<PRI>Mmm dd hh:mm:ss berth[PID]: msg`, the
/// time in UTC (RFC 3164 has no zone; readers assume their local one).
pub fn syslog_line(ns: u64, level: log::Level, pid: i32, msg: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let full = host::rfc3339(ns); // 2026-11-29T17:30:05.123456789Z
    let month: usize = full[5..7].parse().unwrap_or(1);
    let day: u32 = full[8..10].parse().unwrap_or(1);
    format!(
        "<{}>{} {day:>2} {} berth[{pid}]: {msg}",
        FACILITY_DAEMON | severity(level),
        MONTHS[month.clamp(1, 12) - 1],
        &full[11..19]
    )
}

/// Where lines go.
enum Sink {
    Stderr,
    Syslog(Syslog),
}

struct Syslog {
    path: PathBuf,
    socket: Option<UnixDatagram>,
    /// Messages dropped since the last one that went through.
    dropped: u64,
    pid: i32,
}

impl Syslog {
    fn connect(path: &Path) -> io::Result<UnixDatagram> {
        let s = UnixDatagram::unbound()?;
        s.connect(path)?;
        s.set_nonblocking(true)?;
        Ok(s)
    }

    fn send(&mut self, ns: u64, level: log::Level, msg: &str) {
        let text = if self.dropped > 0 {
            format!(
                "({} earlier messages dropped: the syslog socket was full or gone) {msg}",
                self.dropped
            )
        } else {
            msg.to_string()
        };
        let line = syslog_line(ns, level, self.pid, &text);
        // One try on the socket we have, and one on a new connection if
        // that one is refused (the syslog daemon restarted).
        for attempt in 0..2 {
            if self.socket.is_none() {
                self.socket = Syslog::connect(&self.path).ok();
            }
            let Some(s) = &self.socket else { break };
            match s.send(line.as_bytes()) {
                Ok(_) => {
                    self.dropped = 0;
                    return;
                }
                Err(e) if attempt == 0 && reconnectable(&e) => self.socket = None,
                Err(_) => break,
            }
        }
        self.dropped += 1;
    }
}

/// A send error after which a new connection may work.
fn reconnectable(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ECONNREFUSED | libc::ENOTCONN | libc::ECONNRESET | libc::ENOENT | libc::EPIPE)
    )
}

struct Logger {
    sink: Mutex<Sink>,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ns = host::now_ns();
        let msg = record.args().to_string();
        let Ok(mut sink) = self.sink.lock() else {
            return;
        };
        match &mut *sink {
            Sink::Stderr => {
                // One write per line (stderr is unbuffered: `writeln!`
                // would make two).
                let mut line = stderr_line(ns, record.level(), &msg);
                line.push('\n');
                let _ = io::stderr().lock().write_all(line.as_bytes());
            }
            Sink::Syslog(s) => s.send(ns, record.level(), &msg),
        }
    }

    fn flush(&self) {}
}

/// The daemon's logger: stderr until `set_target` says otherwise.
static LOGGER: Logger = Logger {
    sink: Mutex::new(Sink::Stderr),
};

/// Installs the daemon's logger, on stderr, first thing (so that even a
/// configuration error is stamped); the level is set apart
/// (`log::set_max_level`).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Trace);
    }
}

/// Sends the log where daemon.json's `log-target` says. A syslog socket
/// that cannot be reached now leaves it on stderr, with a warning.
pub fn set_target(target: &LogTarget) {
    let (sink, warning) = match target {
        LogTarget::Stderr => (Sink::Stderr, None),
        LogTarget::Syslog(path) => match Syslog::connect(path) {
            Ok(socket) => (
                Sink::Syslog(Syslog {
                    path: path.clone(),
                    socket: Some(socket),
                    dropped: 0,
                    pid: std::process::id() as i32,
                }),
                None,
            ),
            Err(e) => (
                Sink::Stderr,
                Some(format!(
                    "log-target syslog: connect {}: {}; logging to stderr",
                    path.display(),
                    errors::io_text(&e)
                )),
            ),
        },
    };
    if let Ok(mut current) = LOGGER.sink.lock() {
        *current = sink;
    }
    if let Some(w) = warning {
        log::warn!("{w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    const T: u64 = 1_795_651_200_123_456_789; // 2026-11-26T00:00:00.123456789Z

    #[test]
    fn stderr_lines_carry_time_and_level() {
        assert_eq!(stamp(T), "2026-11-26T00:00:00.123Z");
        assert_eq!(
            stderr_line(T, log::Level::Warn, "app: exited"),
            "2026-11-26T00:00:00.123Z WARN  app: exited"
        );
        assert_eq!(stamp(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn syslog_lines_are_rfc3164() {
        assert_eq!(
            syslog_line(T, log::Level::Info, 42, "app: started"),
            "<30>Nov 26 00:00:00 berth[42]: app: started"
        );
        assert_eq!(
            syslog_line(T, log::Level::Error, 1, "x"),
            "<27>Nov 26 00:00:00 berth[1]: x"
        );
        assert_eq!(
            syslog_line(0, log::Level::Debug, 1, "x"),
            "<31>Jan  1 00:00:00 berth[1]: x"
        );
    }

    #[test]
    fn syslog_drops_without_blocking_and_reconnects() {
        let dir = TempDir::new("logger");
        let path = dir.path().join("log.sock");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut s = Syslog {
            path: path.clone(),
            socket: Some(Syslog::connect(&path).unwrap()),
            dropped: 0,
            pid: 7,
        };
        // Nobody reads: the socket fills, and sending never blocks.
        let mut n = 0;
        while s.dropped == 0 {
            s.send(T, log::Level::Info, "fill");
            n += 1;
            assert!(n < 100_000, "the socket never filled");
        }
        s.send(T, log::Level::Info, "more");
        assert_eq!(s.dropped, 2);
        // The syslog daemon restarts: a new socket at the same path.
        drop(server);
        std::fs::remove_file(&path).unwrap();
        let server = UnixDatagram::bind(&path).unwrap();
        s.send(T, log::Level::Info, "back");
        assert_eq!(s.dropped, 0);
        let mut buf = [0u8; 512];
        let got = server.recv(&mut buf).unwrap();
        assert_eq!(
            std::str::from_utf8(&buf[..got]).unwrap(),
            "<30>Nov 26 00:00:00 berth[7]: (2 earlier messages dropped: the syslog socket was full or gone) back"
        );
    }
}
