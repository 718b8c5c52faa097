//! Facts about this host and its processes read from /proc, and wall-clock
//! time in RFC 3339: the identity of a process is (pid, start time, boot id),
//! never a bare pid.

use std::fs;
use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

/// The kernel's boot id: records from another boot are never trusted.
pub fn boot_id() -> io::Result<String> {
    Ok(fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Field 22 of /proc/PID/stat: the start time in clock ticks after boot.
/// `None` when the process does not exist.
pub fn start_time(pid: i32) -> Option<u64> {
    with_stat(pid, parse_stat).ok()?.map(|(_, start)| start)
}

/// Room for any /proc/PID/stat line: 52 fields of at most 20 digits, and
/// a command name of at most 64 bytes.
const STAT_MAX: usize = 2048;

/// `f` over /proc/PID/stat, read into a buffer on the stack: the file
/// reports no size, and one read of a buffer with room for any line
/// returns all of it (the daemon reads two of these per container at
/// start-up and for each `ps`, so no heap memory is taken for them).
fn with_stat<R>(pid: i32, f: impl FnOnce(&[u8]) -> R) -> io::Result<R> {
    let mut buf = [0u8; STAT_MAX];
    // "/proc/PID/stat" and its NUL, on the stack.
    let mut name = [0u8; 32];
    let unused = {
        let mut w = &mut name[..];
        io::Write::write_fmt(&mut w, format_args!("/proc/{pid}/stat\0"))?;
        w.len()
    };
    let path = std::ffi::CStr::from_bytes_with_nul(&name[..name.len() - unused])
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut file = fs::File::from(crate::sys::fd::open(path, libc::O_RDONLY, 0)?);
    let mut n = 0;
    while n < buf.len() {
        match io::Read::read(&mut file, &mut buf[n..]) {
            Ok(0) => return Ok(f(&buf[..n])),
            Ok(got) => n += got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "/proc/{pid}/stat is longer than {STAT_MAX} bytes"
    )))
}

/// (state, start time) from a /proc/PID/stat line. The command name (field
/// 2) may contain spaces, parentheses and bytes that are not UTF-8 (a
/// process can name itself anything), so fields are counted from the last
/// ')' and only the bytes after it are decoded.
pub fn parse_stat(stat: &[u8]) -> Option<(char, u64)> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&stat[close + 1..]).ok()?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3), field 22 is the 19th.
    let start = fields.nth(18)?.parse().ok()?;
    Some((state, start))
}

/// Is the process `pid` alive and the one that started at `start`? A
/// zombie has ended: it only waits for a parent (or an init that may never
/// reap it) to collect its status.
pub fn same_process(pid: i32, start: u64) -> bool {
    if pid <= 0 {
        return false;
    }
    match with_stat(pid, parse_stat).ok().flatten() {
        Some((state, started)) => state != 'Z' && state != 'X' && started == start,
        None => false,
    }
}

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Formats nanoseconds since the epoch as RFC 3339 UTC with nanoseconds,
/// e.g. `2026-11-26T22:50:32.123456789Z`.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian
/// calendar, by counting 400-year eras of 146097 days from 0000-03-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..365, from March
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_skips_odd_command_names() {
        let stat = b"42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        assert_eq!(parse_stat(stat), Some(('S', 987_654)));
        let mut odd =
            b"7 (\xff\xfe) Z 1 7 7 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 55 1000 10".to_vec();
        odd[3] = 0xff;
        assert_eq!(parse_stat(&odd), Some(('Z', 55)));
        assert_eq!(parse_stat(b"garbage"), None);
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let t = start_time(me).expect("own stat");
        assert!(same_process(me, t));
        assert!(!same_process(me, t + 1));
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29 12:34:56.5 UTC
        assert_eq!(
            rfc3339(951_827_696_500_000_000),
            "2000-02-29T12:34:56.500000000Z"
        );
        // 2026-11-26 00:00:00 UTC
        assert_eq!(
            rfc3339(1_795_651_200_000_000_000),
            "2026-11-26T00:00:00.000000000Z"
        );
    }
}
