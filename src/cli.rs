//! The client verbs: one request to the daemon over its unix socket, the
//! answer printed for a person (or as JSON), and the exit code
//! 0 done, 1 error, 2 usage. `logs` reads the log files itself, from the
//! directory the daemon names, and follows them while the container runs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nanoserde::SerJson;

use crate::api::{self, Info, Request, Response, Verb};
use crate::config;
use crate::container::logs::{self, Assembler, Line, Stream};
use crate::errors;
use crate::host;
use crate::signals;
use crate::sys::{fd, process};
use crate::wire;

/// A failure to report: the message, and the exit code.
pub struct Failure(pub String, pub i32);

fn usage(msg: impl Into<String>) -> Failure {
    Failure(msg.into(), 2)
}

/// Finds the daemon's socket: --socket, $BERTH_SOCKET, the socket named by
/// --config, or the default.
pub fn socket_path(
    socket: Option<PathBuf>,
    config_file: Option<&Path>,
) -> Result<PathBuf, Failure> {
    if let Some(s) = socket {
        return Ok(s);
    }
    if let Some(s) = std::env::var_os("BERTH_SOCKET").filter(|s| !s.is_empty()) {
        return Ok(PathBuf::from(s));
    }
    if let Some(file) = config_file {
        return config::read_daemon_file(file)
            .map(|c| c.socket)
            .map_err(|e| Failure(e.to_string(), 1));
    }
    Ok(config::default_daemon().socket)
}

/// The largest response read: `ps --json` of many containers.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Sends one request and reads the one response line.
pub fn call(socket: &Path, req: &Request) -> Result<Response, Failure> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        Failure(
            format!(
                "connect to the daemon at {}: {err}",
                socket.display(),
                err = errors::io_text(&e)
            ),
            1,
        )
    })?;
    if let Err(failure) = send(&mut stream, req) {
        // The daemon may have answered (say, "too many clients") and
        // closed before reading: its answer says more than EPIPE.
        return receive(stream).map_err(|_| failure);
    }
    receive(stream)
}

fn send(stream: &mut UnixStream, req: &Request) -> Result<(), Failure> {
    wire::send(stream, req)
        .map_err(|e| Failure(format!("send request: {err}", err = errors::io_text(&e)), 1))
}

fn receive(mut stream: UnixStream) -> Result<Response, Failure> {
    match wire::receive::<Response>(&mut stream, MAX_RESPONSE) {
        Ok(Some(resp)) => Ok(resp),
        Ok(None) => Err(Failure(
            "the daemon closed the connection without answering".into(),
            1,
        )),
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Err(Failure(
            format!("malformed response from the daemon: {e}"),
            1,
        )),
        Err(e) => Err(Failure(
            format!("read response: {err}", err = errors::io_text(&e)),
            1,
        )),
    }
}

pub fn checked(resp: Response) -> Result<Response, Failure> {
    if resp.ok {
        Ok(resp)
    } else {
        Err(Failure(
            resp.error
                .unwrap_or_else(|| "the daemon reported an error".into()),
            1,
        ))
    }
}

/// Flags of a client verb: `--name value` pairs and bare switches.
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse(args: &[String], with_value: &[&str], switches: &[&str]) -> Result<Args, Failure> {
        let mut out = Args {
            positional: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(flag) = a.strip_prefix("--") {
                let (flag, inline) = match flag.split_once('=') {
                    Some((f, v)) => (f, Some(v.to_string())),
                    None => (flag, None),
                };
                if with_value.contains(&flag) {
                    let v = match inline {
                        Some(v) => v,
                        None => it
                            .next()
                            .cloned()
                            .ok_or_else(|| usage(format!("--{flag} needs a value")))?,
                    };
                    out.flags.push((flag.to_string(), Some(v)));
                } else if switches.contains(&flag) && inline.is_none() {
                    out.flags.push((flag.to_string(), None));
                } else {
                    return Err(usage(format!("unknown option --{flag}")));
                }
            } else if a == "-f" && switches.contains(&"follow") {
                out.flags.push(("follow".into(), None));
            } else {
                out.positional.push(a.clone());
            }
        }
        Ok(out)
    }
    fn has(&self, f: &str) -> bool {
        self.flags.iter().any(|(k, _)| k == f)
    }
    fn value(&self, f: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| k == f)
            .and_then(|(_, v)| v.as_deref())
    }
    fn one_name(&self, verb: &str) -> Result<String, Failure> {
        match self.positional.as_slice() {
            [name] => Ok(name.clone()),
            [] => Err(usage(format!("{verb}: a container name is needed"))),
            _ => Err(usage(format!(
                "{verb}: exactly one container name is needed"
            ))),
        }
    }
    fn number(&self, f: &str) -> Result<Option<u64>, Failure> {
        self.value(f)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| usage(format!("--{f} needs a whole number, not {v:?}")))
            })
            .transpose()
    }
}

/// Runs a client verb; returns the exit code on success.
pub fn run(verb: &str, rest: &[String], socket: &Path) -> Result<i32, Failure> {
    let req = |verb: Verb, name: String| Request {
        verb: verb.as_str().into(),
        name,
        ..Request::default()
    };
    let Some(typed) = Verb::parse(verb) else {
        return Err(usage(format!("unknown command: {verb}")));
    };
    match typed {
        Verb::Exec => crate::exec_cli::run(rest, socket),
        Verb::Events => crate::events_cli::run(rest, socket),
        Verb::Version => {
            Args::parse(rest, &[], &[])?;
            Ok(version(socket))
        }
        Verb::Ps => {
            let a = Args::parse(rest, &[], &["json"])?;
            if !a.positional.is_empty() {
                return Err(usage("ps takes no names"));
            }
            let resp = checked(call(socket, &req(Verb::Ps, String::new()))?)?;
            let list = resp.containers.unwrap_or_default();
            if a.has("json") {
                println!("{}", list.serialize_json());
            } else {
                print_table(&list);
            }
            Ok(0)
        }
        Verb::Start => {
            let a = Args::parse(rest, &[], &["wait"])?;
            let name = a.one_name(verb)?;
            let wait = a.has("wait");
            let resp = checked(call(
                socket,
                &Request {
                    wait,
                    ..req(Verb::Start, name)
                },
            )?)?;
            if wait { exit_code_of(resp) } else { Ok(0) }
        }
        Verb::Stop | Verb::Restart => {
            let a = Args::parse(rest, &["time", "t"], &[])?;
            let name = a.one_name(verb)?;
            let time = match a.number("time")? {
                Some(t) => Some(t),
                None => a.number("t")?,
            };
            checked(call(
                socket,
                &Request {
                    time,
                    ..req(typed, name)
                },
            )?)?;
            Ok(0)
        }
        Verb::Kill => {
            let a = Args::parse(rest, &["signal", "s"], &[])?;
            let name = a.one_name(verb)?;
            let signal = a.value("signal").or(a.value("s")).map(str::to_string);
            if let Some(s) = &signal {
                if signals::parse_signal(s).is_none() {
                    return Err(usage(format!("unknown signal: {s}")));
                }
            }
            checked(call(
                socket,
                &Request {
                    signal,
                    ..req(Verb::Kill, name)
                },
            )?)?;
            Ok(0)
        }
        Verb::Wait => {
            let a = Args::parse(rest, &[], &[])?;
            let name = a.one_name(verb)?;
            let resp = checked(call(socket, &req(Verb::Wait, name))?)?;
            let code = exit_code_of(resp)?;
            println!("{code}");
            Ok(0)
        }
        Verb::Inspect => {
            let a = Args::parse(rest, &[], &[])?;
            let name = a.one_name(verb)?;
            let resp = checked(call(socket, &req(Verb::Inspect, name))?)?;
            let info = resp
                .container
                .ok_or_else(|| Failure("the daemon sent no container".into(), 1))?;
            println!("{}", info.serialize_json());
            Ok(0)
        }
        Verb::Rm => {
            let a = Args::parse(rest, &[], &[])?;
            let name = a.one_name(verb)?;
            let resp = checked(call(socket, &req(Verb::Rm, name))?)?;
            for line in resp.actions.unwrap_or_default() {
                println!("{line}");
            }
            Ok(0)
        }
        Verb::Reload => {
            Args::parse(rest, &[], &[])?;
            let resp = checked(call(socket, &req(Verb::Reload, String::new()))?)?;
            for line in resp.actions.unwrap_or_default() {
                println!("{line}");
            }
            Ok(0)
        }
        Verb::Logs => {
            let a = Args::parse(rest, &["tail", "n"], &["follow", "timestamps"])?;
            let name = a.one_name(verb)?;
            let tail = match a.number("tail")? {
                Some(t) => Some(t),
                None => a.number("n")?,
            };
            let resp = checked(call(socket, &req(Verb::Logs, name.clone()))?)?;
            let info = resp
                .container
                .ok_or_else(|| Failure("the daemon sent no container".into(), 1))?;
            print_logs(&info, tail, a.has("timestamps"), a.has("follow"), socket)?;
            Ok(0)
        }
    }
}

/// The exit code in a response to `wait` or `start --wait`, or why there
/// is none.
fn exit_code_of(resp: Response) -> Result<i32, Failure> {
    match (resp.exit_code, resp.error) {
        (Some(code), _) => Ok(code),
        (None, Some(why)) => Err(Failure(format!("no exit code: {why}"), 1)),
        (None, None) => Err(Failure("it has not run yet: no exit code".into(), 1)),
    }
}

/// `berth version`: this binary's version, and the daemon's if one answers.
fn version(socket: &Path) -> i32 {
    println!("{}", api::version());
    if let Ok(resp) = call(
        socket,
        &Request {
            verb: Verb::Version.as_str().into(),
            ..Request::default()
        },
    ) {
        if let Some(v) = resp.version {
            println!("daemon: {v}");
        }
    }
    0
}

fn print_table(list: &[Info]) {
    println!(
        "{:<20} {:<11} {:>7} {:>5} {:>8}  {:<20} NOTE",
        "NAME", "STATUS", "PID", "EXIT", "RESTARTS", "STARTED"
    );
    for c in list {
        let exit = c.exit_code.map_or("-".to_string(), |e| e.to_string());
        let started = c
            .started_at
            .as_deref()
            .map_or("-".to_string(), |s| s.chars().take(19).collect());
        let note = c.warning.as_deref().or(c.error.as_deref()).unwrap_or("");
        println!(
            "{:<20} {:<11} {:>7} {:>5} {:>8}  {:<20} {}",
            c.name, c.status, c.pid, exit, c.restart_count, started, note
        );
    }
}

fn emit(lines: &[Line], timestamps: bool) {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut o = stdout.lock();
    let mut e = stderr.lock();
    for l in lines {
        let w: &mut dyn Write = if l.stream == Stream::Stdout {
            &mut o
        } else {
            &mut e
        };
        if timestamps {
            let _ = write!(w, "{} ", l.time);
        }
        let _ = w.write_all(&l.text);
        if l.newline {
            let _ = w.write_all(b"\n");
        }
    }
    let _ = o.flush();
    let _ = e.flush();
}

fn print_logs(
    info: &Info,
    tail: Option<u64>,
    timestamps: bool,
    follow: bool,
    socket: &Path,
) -> Result<(), Failure> {
    let dir = PathBuf::from(&info.log_dir);
    // With --follow, get hold of what tells the end before reading, so
    // that an exit between the read and that cannot be missed: a pidfd on
    // the container's monitor (it exits when the container has and its
    // output is in the files; no daemon needed, so following survives a
    // daemon restart), or, while it waits to restart, the daemon's `wait`.
    let end: Option<OwnedFd> = match (follow, info.status.as_str()) {
        (true, "running") if info.monitor_pid > 0 && info.monitor_start > 0 => {
            match process::pidfd_open(info.monitor_pid) {
                Ok(fd) if host::same_process(info.monitor_pid, info.monitor_start) => Some(fd),
                _ => None, // already over
            }
        }
        (true, "running" | "restarting") => {
            let mut s = UnixStream::connect(socket).map_err(|e| {
                Failure(
                    format!("connect to the daemon: {err}", err = errors::io_text(&e)),
                    1,
                )
            })?;
            send(
                &mut s,
                &Request {
                    verb: "wait".into(),
                    name: info.name.clone(),
                    ..Request::default()
                },
            )?;
            Some(OwnedFd::from(s))
        }
        _ => None,
    };
    let mut asm = Assembler::default();
    let mut lines = Vec::new();
    let files = logs::files_oldest_first(&dir);
    let live = logs::file_path(&dir, 0);
    let mut live_file: Option<File> = None;
    for path in &files {
        let Ok(mut f) = File::open(path) else {
            continue;
        };
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        asm.feed(&buf, &mut lines);
        if *path == live {
            live_file = Some(f);
        }
    }
    if end.is_none() {
        asm.finish(&mut lines);
    }
    if let Some(n) = tail {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    emit(&lines, timestamps);
    let Some(end) = end else { return Ok(()) };
    follow_logs(&dir, live_file, asm, end, timestamps)
}

/// Follows the live log file through rotations until the container exits.
fn follow_logs(
    dir: &Path,
    mut file: Option<File>,
    mut asm: Assembler,
    end: OwnedFd,
    timestamps: bool,
) -> Result<(), Failure> {
    let fail =
        |what: &str, e: io::Error| Failure(format!("{what}: {err}", err = errors::io_text(&e)), 1);
    let notify = fd::inotify().map_err(|e| fail("inotify", e))?;
    let cdir = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| Failure("log dir contains NUL".into(), 1))?;
    let mask = libc::IN_MODIFY | libc::IN_CREATE | libc::IN_MOVED_TO | libc::IN_MOVED_FROM;
    fd::inotify_watch(&notify, &cdir, mask).map_err(|e| fail("watch log dir", e))?;
    let mut poll = Poll::new().map_err(|e| fail("poll", e))?;
    const NOTIFY: Token = Token(0);
    const EXIT: Token = Token(1);
    poll.registry()
        .register(
            &mut SourceFd(&notify.as_raw_fd()),
            NOTIFY,
            Interest::READABLE,
        )
        .map_err(|e| fail("poll", e))?;
    poll.registry()
        .register(&mut SourceFd(&end.as_raw_fd()), EXIT, Interest::READABLE)
        .map_err(|e| fail("poll", e))?;
    let live = logs::file_path(dir, 0);
    let mut events = Events::with_capacity(8);
    let mut exited = false;
    loop {
        let mut lines = Vec::new();
        // Read what the current file has, then move to a new live file if
        // it was rotated away.
        loop {
            if let Some(f) = file.as_mut() {
                let mut buf = Vec::new();
                let _ = f.read_to_end(&mut buf);
                asm.feed(&buf, &mut lines);
            }
            let current_ino = file
                .as_ref()
                .and_then(|f| f.metadata().ok())
                .map(|m| m.ino());
            let live_ino = std::fs::metadata(&live).ok().map(|m| m.ino());
            if live_ino.is_some() && live_ino != current_ino {
                file = File::open(&live).ok();
                if let Some(f) = file.as_mut() {
                    let _ = f.seek(SeekFrom::Start(0));
                }
                continue;
            }
            break;
        }
        if exited {
            asm.finish(&mut lines);
        }
        emit(&lines, timestamps);
        if exited {
            return Ok(());
        }
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(fail("poll", e));
            }
        }
        for ev in events.iter() {
            if ev.token() == NOTIFY {
                let mut buf = [0u8; 4096];
                while matches!(fd::read(&notify, &mut buf), Ok(n) if n > 0) {}
            } else {
                // The monitor exited, or the daemon answered the wait (or
                // went away): one last read.
                exited = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No daemon listens here: a verb that gets past its options fails to
    /// connect, with exit code 1.
    const NO_DAEMON: &str = "/nonexistent/berth-test/berth.sock";

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    fn parse(args: &[&str], with_value: &[&str], switches: &[&str]) -> Args {
        match Args::parse(&strings(args), with_value, switches) {
            Ok(a) => a,
            Err(Failure(msg, code)) => panic!("{args:?}: {msg} ({code})"),
        }
    }

    fn parse_err(args: &[&str], with_value: &[&str], switches: &[&str]) -> (String, i32) {
        match Args::parse(&strings(args), with_value, switches) {
            Ok(a) => panic!("{args:?} parsed: {:?} {:?}", a.positional, a.flags),
            Err(Failure(msg, code)) => (msg, code),
        }
    }

    fn usage_err(msg: &str) -> (String, i32) {
        (msg.to_string(), 2)
    }

    /// What `berth VERB ARGS` fails with when no daemon is there.
    fn run_err(verb: &str, args: &[&str]) -> (String, i32) {
        match run(verb, &strings(args), Path::new(NO_DAEMON)) {
            Ok(code) => panic!("{verb} {args:?} succeeded with {code}"),
            Err(Failure(msg, code)) => (msg, code),
        }
    }

    /// The options were accepted: the verb went on to call the daemon.
    fn reaches_daemon(verb: &str, args: &[&str]) {
        let (msg, code) = run_err(verb, args);
        let expected = format!("connect to the daemon at {NO_DAEMON}: ");
        assert!(msg.starts_with(&expected), "{verb} {args:?}: {msg}");
        assert_eq!(code, 1, "{verb} {args:?}");
    }

    #[test]
    fn flags_with_values() {
        for args in [
            &["app", "--tail", "5"][..],
            &["--tail", "5", "app"],
            &["--tail=5", "app"],
            &["app", "--tail=5"],
        ] {
            let a = parse(args, &["tail"], &[]);
            assert_eq!(a.positional, ["app"], "{args:?}");
            assert_eq!(a.value("tail"), Some("5"), "{args:?}");
            assert_eq!(a.number("tail").ok().flatten(), Some(5), "{args:?}");
        }
        // Only the first '=' separates, and an empty value is a value.
        assert_eq!(
            parse(&["--signal=a=b"], &["signal"], &[]).value("signal"),
            Some("a=b")
        );
        assert_eq!(
            parse(&["--signal="], &["signal"], &[]).value("signal"),
            Some("")
        );
        // The word after a flag is its value, whatever it looks like.
        let a = parse(&["--tail", "--follow"], &["tail"], &["follow"]);
        assert_eq!(a.value("tail"), Some("--follow"));
        assert!(!a.has("follow"));
        // The last of a repeated flag counts.
        let a = parse(&["--tail", "1", "--tail=2"], &["tail"], &[]);
        assert_eq!(a.value("tail"), Some("2"));
        assert_eq!(a.value("n"), None);
        assert!(!a.has("n"));
        assert_eq!(
            parse_err(&["app", "--tail"], &["tail"], &[]),
            usage_err("--tail needs a value")
        );
    }

    #[test]
    fn switches_and_unknown_options() {
        let a = parse(
            &["--follow", "app", "--timestamps"],
            &["tail"],
            &["follow", "timestamps"],
        );
        assert!(a.has("follow") && a.has("timestamps"));
        assert_eq!(a.positional, ["app"]);
        assert_eq!(a.value("follow"), None);
        // -f is short for --follow, where --follow is a switch.
        assert!(parse(&["-f"], &[], &["follow"]).has("follow"));
        let a = parse(&["-f"], &[], &["json"]);
        assert_eq!(
            (a.positional.as_slice(), a.flags.len()),
            (&["-f".to_string()][..], 0)
        );
        // Other single-dash words are positional.
        assert_eq!(parse(&["-x"], &[], &[]).positional, ["-x"]);
        // A switch takes no value.
        assert_eq!(
            parse_err(&["--json=1"], &[], &["json"]),
            usage_err("unknown option --json")
        );
        assert_eq!(
            parse_err(&["app", "--bogus"], &["tail"], &["follow"]),
            usage_err("unknown option --bogus")
        );
        assert_eq!(
            parse_err(&["--bogus=1"], &[], &[]),
            usage_err("unknown option --bogus")
        );
        assert_eq!(parse_err(&["--"], &[], &[]), usage_err("unknown option --"));
    }

    #[test]
    fn names_and_numbers() {
        let a = parse(&[], &[], &[]);
        assert!(
            matches!(a.one_name("stop"), Err(Failure(m, 2)) if m == "stop: a container name is needed")
        );
        let a = parse(&["a", "b"], &[], &[]);
        assert!(
            matches!(a.one_name("stop"), Err(Failure(m, 2)) if m == "stop: exactly one container name is needed")
        );
        assert_eq!(
            parse(&["a"], &[], &[]).one_name("stop").ok().as_deref(),
            Some("a")
        );
        for bad in ["abc", "-1", "1.5", "", "18446744073709551616"] {
            let a = parse(&["--time", bad], &["time"], &[]);
            let Err(Failure(msg, code)) = a.number("time") else {
                panic!("{bad:?} taken as a number");
            };
            assert_eq!(
                (msg, code),
                usage_err(&format!("--time needs a whole number, not {bad:?}"))
            );
        }
        assert_eq!(parse(&[], &["time"], &[]).number("time").ok(), Some(None));
    }

    #[test]
    fn verbs_reject_bad_options_before_calling_the_daemon() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("ps", &["app"], "ps takes no names"),
            ("ps", &["--all"], "unknown option --all"),
            ("ps", &["--json=yes"], "unknown option --json"),
            ("start", &[], "start: a container name is needed"),
            (
                "start",
                &["a", "b"],
                "start: exactly one container name is needed",
            ),
            ("start", &["app", "--wait=1"], "unknown option --wait"),
            (
                "stop",
                &["app", "--time", "soon"],
                "--time needs a whole number, not \"soon\"",
            ),
            (
                "stop",
                &["app", "--t=-1"],
                "--t needs a whole number, not \"-1\"",
            ),
            ("restart", &["app", "--time"], "--time needs a value"),
            (
                "restart",
                &["--signal", "9", "app"],
                "unknown option --signal",
            ),
            (
                "kill",
                &["app", "--signal", "SIGFOO"],
                "unknown signal: SIGFOO",
            ),
            ("kill", &["app", "--s=0"], "unknown signal: 0"),
            ("kill", &["app", "--signal="], "unknown signal: "),
            ("kill", &["app", "--time", "1"], "unknown option --time"),
            ("wait", &[], "wait: a container name is needed"),
            ("wait", &["app", "--time=1"], "unknown option --time"),
            ("inspect", &["app", "--json"], "unknown option --json"),
            ("reload", &["--force"], "unknown option --force"),
            (
                "logs",
                &["app", "--tail", "all"],
                "--tail needs a whole number, not \"all\"",
            ),
            ("logs", &["app", "--n"], "--n needs a value"),
            ("logs", &["app", "--follow=1"], "unknown option --follow"),
            (
                "logs",
                &["app", "-f", "other"],
                "logs: exactly one container name is needed",
            ),
            ("frob", &["app"], "unknown command: frob"),
            ("", &[], "unknown command: "),
        ];
        for &(verb, args, msg) in cases {
            assert_eq!(run_err(verb, args), usage_err(msg), "{verb} {args:?}");
        }
    }

    #[test]
    fn verbs_accept_their_options() {
        reaches_daemon("ps", &[]);
        reaches_daemon("ps", &["--json"]);
        reaches_daemon("start", &["app", "--wait"]);
        reaches_daemon("stop", &["app"]);
        reaches_daemon("stop", &["--time=0", "app"]);
        reaches_daemon("restart", &["app", "--t", "30"]);
        reaches_daemon("kill", &["app"]);
        reaches_daemon("kill", &["app", "--signal", "term"]);
        reaches_daemon("kill", &["app", "--s=15"]);
        reaches_daemon("wait", &["app"]);
        reaches_daemon("inspect", &["app"]);
        reaches_daemon("reload", &[]);
        reaches_daemon("logs", &["app", "-f", "--tail=3", "--timestamps"]);
        reaches_daemon("logs", &["--follow", "--n", "0", "app"]);
    }

    #[test]
    fn an_explicit_socket_wins() {
        // The config file is not read when --socket is given.
        let s = socket_path(
            Some("/x/b.sock".into()),
            Some(Path::new("/nonexistent.json")),
        );
        assert_eq!(s.ok(), Some(PathBuf::from("/x/b.sock")));
    }
}
