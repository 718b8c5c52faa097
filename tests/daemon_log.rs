//! The daemon's own log, through the real binary: every line starts with
//! its time (RFC 3339, UTC, milliseconds) and level; what an operator
//! asked (restart, stop) shows even after a crash loop has used up the
//! container's message budget; `"log-target": "syslog:PATH"` sends RFC
//! 3164 datagrams to a socket the test binds, connects again when that
//! socket is made anew, and a missing socket falls back to stderr with a
//! warning.

mod common;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use common::*;

/// `2026-11-29T17:30:05.123Z INFO  ` and the like.
fn well_formed(line: &str) -> bool {
    let b = line.as_bytes();
    if b.len() < 31 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19)
        && b[19] == b'.'
        && digits(20..23)
        && b[23] == b'Z'
        && b[24] == b' '
        && ["ERROR ", "WARN  ", "INFO  ", "DEBUG ", "TRACE "]
            .iter()
            .any(|l| line[25..].starts_with(l))
}

#[test]
fn lines_are_stamped_and_operators_are_never_rate_limited() {
    let w = World::new();
    let body = "test -e /data/ok && exec sleep 1000; exit 1";
    w.add_container(
        "crash",
        &["sh", "-c", body],
        &format!(r#"{{"restart": "always", "mounts": [{}]}}"#, w.data_mount()),
    );
    let daemon = w.start_daemon(&[]);
    let t0 = Instant::now();
    // Each round logs at least three lines (monitor started, exited,
    // restarting): five rounds are well over the budget of ten a minute.
    w.wait_inspect("crash", "to have restarted five times", LONG, |i| {
        i.restart_count >= 5
    });
    let about = |log: &str| log.lines().filter(|l| l.contains(" crash: ")).count();
    let before = daemon.stderr();
    assert!(
        about(&before) <= 10,
        "the crash loop's messages were not limited:\n{before}"
    );

    // The operator fixes it and restarts it: that shows, and so does its
    // outcome, though the budget is spent.
    std::fs::write(w.host_dir().join("ok"), "").unwrap();
    w.berth_ok(&["restart", "crash"]);
    let pid = w.wait_running("crash").pid;
    daemon.wait_for_log_line(&[" crash: restart requested by a client"]);
    daemon.wait_for_log_line(&[&format!(" crash: started, pid {pid}")]);
    // (sleep as pid 1 ignores SIGTERM: SIGKILL after a second.)
    w.berth_ok(&["stop", "-t", "1", "crash"]);
    w.wait_status("crash", "stopped", SHORT);
    daemon.wait_for_log_line(&[" crash: stop requested by a client"]);
    let log = daemon.stderr();
    let stop_at = log.find(" crash: stop requested").unwrap();
    assert!(
        log[stop_at..].contains(" crash: exited with code 137"),
        "the stop's outcome is logged:\n{log}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(55),
        "all this must happen within the limiter's minute to mean anything"
    );

    // Every line: time and level first.
    for line in log.lines() {
        assert!(well_formed(line), "{line:?}");
    }
    let first = log.lines().next().unwrap();
    assert!(is_rfc3339(&first[..24]), "{first}");
}

/// Receives datagrams until one contains `needle`; each must be a
/// well-formed RFC 3164 message from `pid`. Returns that one.
fn receive_until(sock: &UnixDatagram, pid: u32, needle: &str) -> String {
    receive_within(sock, pid, needle, SHORT)
        .unwrap_or_else(|seen| panic!("no syslog message with {needle:?}; got {seen:#?}"))
}

/// As `receive_until`, for at most `within`; what else came if none did.
fn receive_within(
    sock: &UnixDatagram,
    pid: u32,
    needle: &str,
    within: Duration,
) -> Result<String, Vec<String>> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let end = Instant::now() + within;
    let mut buf = vec![0u8; 8192];
    let mut seen = Vec::new();
    while Instant::now() < end {
        let Ok(n) = sock.recv(&mut buf) else { continue };
        let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
        let (pri, rest) = msg[1..].split_once('>').expect("<PRI>");
        assert!(msg.starts_with('<'), "{msg}");
        let pri: u8 = pri.parse().expect("a number");
        assert!(
            (27..=31).contains(&pri) && pri != 29,
            "facility daemon: {msg}"
        );
        let month = &rest[..3];
        assert!(
            [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
            ]
            .contains(&month),
            "{msg}"
        );
        let b = rest.as_bytes();
        assert!(
            b[3] == b' ' && b[6] == b' ' && b[9] == b':' && b[12] == b':',
            "{msg}"
        );
        assert!(rest[15..].starts_with(&format!(" berth[{pid}]: ")), "{msg}");
        if msg.contains(needle) {
            return Ok(msg);
        }
        seen.push(msg);
    }
    Err(seen)
}

#[test]
fn syslog_target_reconnects_and_falls_back_to_stderr() {
    let w = World::new();
    let path = w.host_dir().join("log.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    w.write_daemon_json(&format!(r#"{{"log-target": "syslog:{}"}}"#, path.display()));
    let daemon = w.start_daemon(&[]);
    let ready = receive_until(&sock, daemon.pid(), "ready on");
    assert!(ready.starts_with("<30>"), "info: {ready}");
    assert!(
        !daemon.stderr().contains("ready on"),
        "not on stderr: {}",
        daemon.stderr()
    );
    // The syslog daemon restarts: a new socket at the same path.
    drop(sock);
    std::fs::remove_file(&path).unwrap();
    let sock = UnixDatagram::bind(&path).unwrap();
    // The old socket dies with its last descriptor, which a process this
    // test binary forks meanwhile (the other test's) holds until it execs:
    // a message sent until then goes to the old one and is lost, as it
    // would be with a real syslog daemon. The next ones reach the new one.
    let mut seen = Vec::new();
    let end = Instant::now() + SHORT;
    let reloaded = loop {
        w.berth_ok(&["reload"]);
        let needle = "reload requested by a client";
        match receive_within(&sock, daemon.pid(), needle, Duration::from_secs(2)) {
            Ok(msg) => break msg,
            Err(more) => seen.extend(more),
        }
        assert!(
            Instant::now() < end,
            "no {needle:?} on the new socket; got {seen:#?}"
        );
    };
    assert!(reloaded.starts_with("<30>"), "info: {reloaded}");
    drop(daemon);

    // No socket there: stderr, after a warning.
    let w = World::new();
    w.write_daemon_json(r#"{"log-target": "syslog:/nonexistent/berth-test/log.sock"}"#);
    let daemon = w.start_daemon(&[]);
    let warning = daemon.wait_for_log_line(&["log-target syslog: connect"]);
    assert!(well_formed(&warning), "{warning}");
    assert!(
        warning.contains(
            "WARN  log-target syslog: connect /nonexistent/berth-test/log.sock: No such file or directory; logging to stderr"
        ),
        "{warning}"
    );
    daemon.wait_for_log_line(&["ready on"]);
    drop(daemon);

    // A bad value: the daemon does not start, and says where.
    w.write_daemon_json(r#"{"log-target": "journal"}"#);
    let out = w.run_client(
        {
            let mut cmd = w.client_command();
            cmd.arg("daemon").arg("--config").arg(w.config_path());
            cmd
        },
        SHORT,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("log-target") && err.contains(&*w.config_path().to_string_lossy()),
        "{err}"
    );
    // Stamped too: the log is set up before the configuration is read.
    assert!(err.lines().all(well_formed), "{err}");
    assert!(err.contains(" ERROR "), "{err}");
}
