//! The client verbs: requests to the daemon over its unix socket, the
//! answers printed for a person (or as JSON), and the exit code 0 done,
//! 1 error, 2 usage. Options are Docker's where they mean the same (long
//! and short forms, `-ft` bundles, `--flag=value`); verbs that Docker lets
//! take several names take several here, one request each, an error line
//! each on stderr, exit 1 if any failed. `--help`/`-h` on every verb and
//! `berth help VERB` print its usage to stdout; a usage error prints the
//! error and the verb's own usage to stderr, exit 2. A closed stdout ends
//! the client by SIGPIPE, quietly, as any writer in a pipeline. `logs`
//! lives in `logs_cli`, `stats` in `stats`.

use std::io::{self, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nanoserde::SerJson;

use crate::api::{self, Info, Request, Response, Verb};
use crate::config;
use crate::errors;
use crate::host;
use crate::logs_cli;
use crate::signals;
use crate::stats;
use crate::sys::signal;
use crate::wait_cli;
use crate::when;
use crate::wire;

/// A failure to report: the message, and the exit code.
pub struct Failure(pub String, pub i32);

fn usage(msg: impl Into<String>) -> Failure {
    Failure(msg.into(), 2)
}

/// How a connection failure starts: a verb about several names stops at
/// the first one (the others would fail the same way).
pub const CANNOT_CONNECT: &str = "cannot connect to the daemon at ";

/// The daemon configuration read when no --config is given.
pub const DEFAULT_CONFIG: &str = "/etc/berth/daemon.json";

/// One verb's help: its synopsis lines, what it does, its options.
pub struct Help {
    pub verb: &'static str,
    /// For the list of commands.
    pub summary: &'static str,
    pub synopsis: &'static [&'static str],
    pub about: &'static str,
    pub options: &'static [(&'static str, &'static str)],
}

/// Every verb, in the order `berth --help` lists them.
pub const HELP: &[Help] = &[
    Help {
        verb: "ps",
        summary: "list containers",
        synopsis: &["ps [-a|--all] [-q|--quiet] [--json]"],
        about: "List the containers (all of them: -a is accepted for Docker's habit).",
        options: &[
            ("-q, --quiet", "names only, one a line"),
            ("--json", "an array of inspect objects"),
        ],
    },
    Help {
        verb: "start",
        summary: "start containers",
        synopsis: &["start NAME...", "start --wait NAME"],
        about: "Start containers; with --wait, wait until it exits and exit with its code.",
        options: &[("--wait", "wait for the exit (one name only)")],
    },
    Help {
        verb: "stop",
        summary: "stop containers",
        synopsis: &["stop [-t|--time SECS] NAME..."],
        about: "Send the stop signal, then SIGKILL after the grace time.",
        options: &[(
            "-t, --time SECS",
            "grace before SIGKILL (default: the definition's stop-timeout)",
        )],
    },
    Help {
        verb: "restart",
        summary: "stop, then start containers",
        synopsis: &["restart [-t|--time SECS] NAME..."],
        about: "Stop, then start.",
        options: &[("-t, --time SECS", "grace before SIGKILL")],
    },
    Help {
        verb: "kill",
        summary: "send a signal to containers",
        synopsis: &["kill [-s|--signal SIG] NAME..."],
        about: "Send a signal to the container's init.",
        options: &[(
            "-s, --signal SIG",
            "by name (TERM, SIGTERM) or number; default SIGKILL",
        )],
    },
    Help {
        verb: "wait",
        summary: "wait for containers to exit",
        synopsis: &[
            "wait NAME...",
            "wait --condition running|healthy [--timeout SECS] NAME...",
        ],
        about: "Wait for containers to exit; print each exit code. With --condition, \
                wait instead until each runs its current definition (not one a reload \
                is replacing) and, for healthy, passes its healthcheck (one without a \
                healthcheck only has to run); print `NAME running` or `NAME healthy` \
                each. Fails at once for a container that is not defined or has ended \
                with no restart coming.",
        options: &[
            ("--condition C", "running or healthy"),
            (
                "--timeout SECS",
                "give up after SECS, naming what is not there yet; a daemon that \
                 cannot be reached is tried again until then",
            ),
        ],
    },
    Help {
        verb: "logs",
        summary: "print a container's output",
        synopsis: &[
            "logs [-f|--follow] [-n|--tail N] [-t|--timestamps] [--since T] [--until T] NAME",
            "logs --removed NAME",
        ],
        about: "Print a container's output, from its log files. Works with no daemon \
                running (the log dir is read from daemon.json), and for a container \
                whose definition is gone until `berth rm NAME` deletes its logs.",
        options: &[
            ("-f, --follow", "keep printing while it runs"),
            ("-n, --tail N", "the last N lines only (or all)"),
            ("-t, --timestamps", "each line's time first"),
            (
                "--since T, --until T",
                "RFC 3339, unix seconds, or a duration back from now (10m, 1h30m)",
            ),
            (
                "--removed",
                "read the files of a container the daemon no longer knows",
            ),
        ],
    },
    Help {
        verb: "inspect",
        summary: "print containers as JSON",
        synopsis: &["inspect NAME..."],
        about: "Print one JSON object per container, one a line (one name: one object).",
        options: &[],
    },
    Help {
        verb: "stats",
        summary: "CPU, memory, pids and log bytes of containers",
        synopsis: &["stats [--no-stream] [--json] [NAME...]"],
        about: "CPU %, memory use and limit, pids and log bytes, read from the \
                containers' cgroups; a fresh table every second until interrupted. \
                No names: every running container.",
        options: &[
            ("--no-stream", "one table (or one set of lines) and exit"),
            ("--json", "one JSON object per container per sample"),
        ],
    },
    Help {
        verb: "exec",
        summary: "run a process in a running container",
        synopsis: &["exec [-i] [-t] [-u U] [-e K=V]... [-w D] NAME [--] CMD [ARG...]"],
        about: "Run CMD in the running container NAME, confined as its init is; exit \
                with its exit code (128 + N when signal N ended it). Options go before \
                CMD: every word from CMD on is the command's, --help included. Needs \
                root: the client joins the container itself.",
        options: &[
            (
                "-i, --interactive",
                "keep stdin open to the command (else /dev/null)",
            ),
            ("-t, --tty", "run it on a terminal of the container's own"),
            (
                "-u, --user U",
                "user or user:group, by name or number, instead of the definition's",
            ),
            (
                "-e, --env K=V",
                "set a variable (K alone: this shell's value); may be repeated",
            ),
            (
                "-w, --workdir D",
                "start in D instead of the definition's workdir",
            ),
        ],
    },
    Help {
        verb: "events",
        summary: "print state changes as they happen",
        synopsis: &["events [--json] [--since T]"],
        about: "Print state changes (start, exit, oom, restart, health, reload, \
                reattach) as they happen, until interrupted.",
        options: &[
            ("--json", "one JSON object a line"),
            (
                "--since T",
                "also those kept since T (RFC 3339, unix seconds, 10m)",
            ),
        ],
    },
    Help {
        verb: "reload",
        summary: "re-read the configuration",
        synopsis: &["reload"],
        about: "Re-read the configuration, as SIGHUP does; print what changed.",
        options: &[],
    },
    Help {
        verb: "rm",
        summary: "delete what is kept of removed containers",
        synopsis: &["rm NAME..."],
        about: "Delete what is kept of containers whose definition is gone: \
                persistent layer, records, logs.",
        options: &[],
    },
    Help {
        verb: "version",
        summary: "print versions",
        synopsis: &["version"],
        about: "This binary's version, and the daemon's if one answers.",
        options: &[],
    },
    Help {
        verb: "help",
        summary: "help on a command",
        synopsis: &["help [VERB]"],
        about: "This text, or one verb's.",
        options: &[],
    },
    Help {
        verb: "daemon",
        summary: "run the daemon",
        synopsis: &[
            "daemon [--config FILE] [--live-restore] [--pidfile FILE] [--log-level LEVEL]",
            "daemon --validate [--config FILE]",
        ],
        about: "Run the daemon. With --validate, check daemon.json and every container \
                file as a start or a reload would, print each problem (file, field, \
                reason) on a line of its own and exit 1 if there is any, else print a \
                summary and exit 0; nothing is started, created or locked, so a daemon \
                running on the same configuration is not disturbed. Checks made only \
                when a container starts (its devices, its user in the rootfs, the \
                command, mounting the image) are not made.",
        options: &[
            (
                "--config FILE",
                "daemon.json (default /etc/berth/daemon.json)",
            ),
            (
                "--live-restore",
                "leave containers running when the daemon stops",
            ),
            (
                "--pidfile FILE",
                "write the daemon's pid there (not with --validate)",
            ),
            (
                "--log-level LEVEL",
                "off, error, warn, info, debug or trace (over daemon.json's)",
            ),
            ("--validate", "check the configuration, start nothing"),
        ],
    },
];

pub fn help_of(verb: &str) -> Option<&'static Help> {
    HELP.iter().find(|h| h.verb == verb)
}

/// The few lines a usage error shows.
pub fn short_usage(verb: &str) -> String {
    match help_of(verb) {
        Some(h) => {
            let mut s = String::new();
            for (i, line) in h.synopsis.iter().enumerate() {
                let lead = if i == 0 { "usage:" } else { "      " };
                s.push_str(&format!("{lead} berth {line}\n"));
            }
            s.push_str(&format!("Run 'berth help {verb}' for more."));
            s
        }
        None => "Run 'berth --help' for the commands.".to_string(),
    }
}

/// `berth help VERB`, `berth VERB --help`.
pub fn verb_help(h: &Help) -> String {
    let mut s = String::new();
    for (i, line) in h.synopsis.iter().enumerate() {
        let lead = if i == 0 { "usage:" } else { "      " };
        s.push_str(&format!("{lead} berth {line}\n"));
    }
    s.push('\n');
    s.push_str(&wrap(h.about, 76));
    if !h.options.is_empty() {
        s.push_str("\noptions:\n");
        let w = h.options.iter().map(|(o, _)| o.len()).max().unwrap_or(0);
        for (o, what) in h.options {
            s.push_str(&format!("  {o:<w$}  {what}\n"));
        }
    }
    s
}

/// `text` broken into lines of at most `width` characters (words longer
/// than that stand alone).
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// `berth --help`.
pub fn main_help() -> String {
    let mut s =
        String::from("usage: berth [--socket PATH | --config FILE] COMMAND [ARGS]\n\ncommands:\n");
    let w = HELP.iter().map(|h| h.verb.len()).max().unwrap_or(0);
    for h in HELP {
        s.push_str(&format!("  {:<w$}  {}\n", h.verb, h.summary));
    }
    s.push_str(
        "\nThe client finds the daemon by --socket, $BERTH_SOCKET, the socket named in\n\
         --config FILE, or /run/berth/berth.sock. 'berth help VERB' or\n\
         'berth VERB --help' shows a command's options. Exit codes: 0 done,\n\
         1 error, 2 usage.",
    );
    s
}

/// Writes to stdout; a reader that has gone away ends the client as it
/// ends any writer in a pipeline: by SIGPIPE, without a word.
pub fn out(text: impl AsRef<[u8]>) {
    let mut o = io::stdout().lock();
    if let Err(e) = o.write_all(text.as_ref()).and_then(|_| o.flush()) {
        closed_stdout(&e);
    }
}

/// What a failed write to stdout means: EPIPE ends the process quietly.
pub fn closed_stdout(e: &io::Error) {
    if e.kind() == io::ErrorKind::BrokenPipe {
        let _ = signal::raise_default(libc::SIGPIPE);
        std::process::exit(128 + libc::SIGPIPE);
    }
}

/// Prints one line to stdout.
pub fn outln(text: impl AsRef<str>) {
    out(format!("{}\n", text.as_ref()));
}

/// The options that may come before or after the verb.
struct Globals {
    socket: Option<PathBuf>,
    config: Option<PathBuf>,
}

/// Entry point of every client verb (argv without the program name);
/// returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut g = Globals {
        socket: None,
        config: None,
    };
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        rest.push(a.clone());
        // From `--` or exec's command on, every word is passed on as it is.
        let at_command = match rest.split_first() {
            Some((verb, after)) if verb == "exec" => command_at(verb, after) < after.len(),
            _ => false,
        };
        if a == "--" || at_command {
            rest.extend(it.by_ref().cloned());
            break;
        }
        rest.pop();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match flag {
            "--socket" | "--config" => {
                let Some(v) = inline.or_else(|| it.next().cloned()) else {
                    eprintln!("berth: {flag} needs a value\n{}", short_usage(""));
                    return 2;
                };
                if flag == "--socket" {
                    g.socket = Some(PathBuf::from(v));
                } else {
                    g.config = Some(PathBuf::from(v));
                }
            }
            _ => rest.push(a.clone()),
        }
    }
    let Some((verb, rest)) = rest.split_first() else {
        eprintln!("berth: a command is needed\n{}", main_help());
        return 2;
    };
    match dispatch(verb, rest, &g) {
        Ok(code) => code,
        Err(Failure(msg, 2)) => {
            eprintln!("berth: {msg}\n{}", short_usage(verb));
            2
        }
        Err(Failure(msg, code)) => {
            eprintln!("berth: {msg}");
            code
        }
    }
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
        return config::read_socket(file).map_err(|e| Failure(e.to_string(), 1));
    }
    Ok(config::default_daemon().socket)
}

/// The largest response read: `ps --json` of many containers.
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Connects to the daemon's socket.
pub fn connect(socket: &Path) -> Result<UnixStream, Failure> {
    UnixStream::connect(socket).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EACCES | libc::EPERM) => "only root and the socket-group may connect",
            _ => "is the daemon running?",
        };
        Failure(
            format!(
                "{CANNOT_CONNECT}{}: {err} ({hint})",
                socket.display(),
                err = errors::io_text(&e)
            ),
            1,
        )
    })
}

/// Sends one request and reads the one response line.
pub fn call(socket: &Path, req: &Request) -> Result<Response, Failure> {
    call_within(socket, req, None)
}

/// `call`, giving up on a daemon that does not answer within `limit`.
pub fn call_within(
    socket: &Path,
    req: &Request,
    limit: Option<std::time::Duration>,
) -> Result<Response, Failure> {
    let mut stream = connect(socket)?;
    if let Some(limit) = limit {
        let limit = Some(limit.max(std::time::Duration::from_millis(1)));
        stream
            .set_read_timeout(limit)
            .and_then(|()| stream.set_write_timeout(limit))
            .map_err(|e| Failure(format!("set a socket timeout: {e}"), 1))?;
    }
    if let Err(failure) = send(&mut stream, req) {
        // The daemon may have answered (say, "too many clients") and
        // closed before reading: its answer says more than EPIPE.
        return receive_response(stream).map_err(|_| failure);
    }
    receive_response(stream)
}

fn receive_response(mut stream: UnixStream) -> Result<Response, Failure> {
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

pub fn send(stream: &mut UnixStream, req: &Request) -> Result<(), Failure> {
    wire::send(stream, req)
        .map_err(|e| Failure(format!("send request: {err}", err = errors::io_text(&e)), 1))
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

/// An option a verb takes: its long name, its short letter, and whether
/// it takes a value.
#[derive(Clone, Copy)]
pub struct Opt {
    pub long: &'static str,
    pub short: Option<char>,
    pub value: bool,
}

const fn switch(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        value: false,
    }
}

const fn valued(long: &'static str, short: Option<char>) -> Opt {
    Opt {
        long,
        short,
        value: true,
    }
}

/// A verb's arguments: names (and words after `--`) and options by long
/// name.
#[derive(Debug)]
pub struct Args {
    pub positional: Vec<String>,
    pub flags: Vec<(&'static str, Option<String>)>,
}

impl Args {
    /// Parses `--long`, `--long=V`, `--long V`, `-s`, `-s V`, `-sV` and
    /// bundles of short switches (`-ft`); `--` ends the options.
    pub fn parse(args: &[String], opts: &[Opt]) -> Result<Args, Failure> {
        let mut out = Args {
            positional: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if a == "--" {
                out.positional.extend(it.by_ref().cloned());
                break;
            }
            if let Some(long) = a.strip_prefix("--") {
                let (name, inline) = match long.split_once('=') {
                    Some((f, v)) => (f, Some(v.to_string())),
                    None => (long, None),
                };
                let opt = opts
                    .iter()
                    .find(|o| o.long == name)
                    .ok_or_else(|| usage(format!("unknown option --{name}")))?;
                let v = match (opt.value, inline) {
                    (true, Some(v)) => Some(v),
                    (true, None) => Some(
                        it.next()
                            .cloned()
                            .ok_or_else(|| usage(format!("--{name} needs a value")))?,
                    ),
                    (false, None) => None,
                    (false, Some(_)) => {
                        return Err(usage(format!("--{name} takes no value")));
                    }
                };
                out.flags.push((opt.long, v));
            } else if let Some(shorts) = a.strip_prefix('-').filter(|s| !s.is_empty()) {
                for (i, c) in shorts.char_indices() {
                    let opt = opts
                        .iter()
                        .find(|o| o.short == Some(c))
                        .ok_or_else(|| usage(format!("unknown option -{c}")))?;
                    if !opt.value {
                        out.flags.push((opt.long, None));
                        continue;
                    }
                    let attached = &shorts[i + c.len_utf8()..];
                    let v = if attached.is_empty() {
                        it.next()
                            .cloned()
                            .ok_or_else(|| usage(format!("-{c} needs a value")))?
                    } else {
                        attached.to_string()
                    };
                    out.flags.push((opt.long, Some(v)));
                    break;
                }
            } else {
                out.positional.push(a.clone());
            }
        }
        Ok(out)
    }

    pub fn has(&self, f: &str) -> bool {
        self.flags.iter().any(|(k, _)| *k == f)
    }

    /// The value of the last use of an option.
    pub fn value(&self, f: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(k, _)| *k == f)
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

    fn names(&self, verb: &str) -> Result<&[String], Failure> {
        if self.positional.is_empty() {
            return Err(usage(format!("{verb}: a container name is needed")));
        }
        Ok(&self.positional)
    }

    fn none(&self, verb: &str) -> Result<(), Failure> {
        match self.positional.first() {
            None => Ok(()),
            Some(_) => Err(usage(format!("{verb} takes no names"))),
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

/// Asks whether the verb's own words (those before its command, see
/// [`command_at`]) ask for help.
fn wants_help(verb: &str, rest: &[String]) -> bool {
    rest[..command_at(verb, rest)]
        .iter()
        .any(|a| a == "-h" || a == "--help")
}

/// exec's options that take the next word as their value.
const EXEC_VALUED: &[&str] = &["-u", "--user", "-e", "--env", "-w", "--workdir"];

/// Where the words that are not the verb's own begin in `rest` (the words
/// after the verb): at `--`, and for exec at the command, the first word
/// after NAME that is neither an option nor an option's value.
fn command_at(verb: &str, rest: &[String]) -> usize {
    let end = rest.iter().position(|a| a == "--").unwrap_or(rest.len());
    if verb != "exec" {
        return end;
    }
    let mut named = false;
    let mut i = 0;
    while i < end {
        let a = rest[i].as_str();
        if EXEC_VALUED.contains(&a) {
            i += 2;
            continue;
        }
        if !a.starts_with('-') || a == "-" {
            if named {
                return i;
            }
            named = true;
        }
        i += 1;
    }
    end
}

/// Runs one request per name; an error line each for those that fail
/// (all of them tried), exit 1 if any did. A daemon that cannot be reached
/// is one error, not one per name.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<(), Failure>) -> Result<i32, Failure> {
    let mut code = 0;
    for name in names {
        match f(name) {
            Ok(()) => {}
            Err(Failure(msg, c)) if c == 2 || msg.starts_with(CANNOT_CONNECT) => {
                return Err(Failure(msg, c));
            }
            Err(Failure(msg, _)) => {
                eprintln!("berth: {msg}");
                code = 1;
            }
        }
    }
    Ok(code)
}

fn request(verb: Verb, name: &str) -> Request {
    Request {
        verb: verb.as_str().into(),
        name: name.to_string(),
        ..Request::default()
    }
}

const PS_OPTS: &[Opt] = &[
    switch("all", Some('a')),
    switch("quiet", Some('q')),
    switch("json", None),
];
const START_OPTS: &[Opt] = &[switch("wait", None)];
const WAIT_OPTS: &[Opt] = &[valued("condition", None), valued("timeout", None)];
const STOP_OPTS: &[Opt] = &[valued("time", Some('t'))];
const KILL_OPTS: &[Opt] = &[valued("signal", Some('s'))];
pub const LOGS_OPTS: &[Opt] = &[
    switch("follow", Some('f')),
    valued("tail", Some('n')),
    switch("timestamps", Some('t')),
    valued("since", None),
    valued("until", None),
    switch("removed", None),
];
const STATS_OPTS: &[Opt] = &[switch("no-stream", None), switch("json", None)];

/// Runs a client verb; returns the exit code on success.
fn dispatch(verb: &str, rest: &[String], g: &Globals) -> Result<i32, Failure> {
    if verb == "help" || verb == "-h" || verb == "--help" {
        return match rest.first().map(String::as_str) {
            None => {
                outln(main_help());
                Ok(0)
            }
            Some("-h" | "--help") => {
                out(verb_help(help_of("help").expect("help has help")));
                Ok(0)
            }
            Some(v) => match help_of(v) {
                Some(h) => {
                    out(verb_help(h));
                    Ok(0)
                }
                None => Err(usage(format!("help: unknown command: {v}"))),
            },
        };
    }
    if let Some(h) = help_of(verb).filter(|_| wants_help(verb, rest)) {
        out(verb_help(h));
        return Ok(0);
    }
    let socket = || socket_path(g.socket.clone(), g.config.as_deref());
    if verb == "stats" {
        let a = Args::parse(rest, STATS_OPTS)?;
        return stats::run(
            &socket()?,
            &a.positional,
            !a.has("no-stream"),
            a.has("json"),
        );
    }
    let Some(typed) = Verb::parse(verb) else {
        return Err(usage(format!("unknown command: {verb}")));
    };
    match typed {
        Verb::Exec => crate::exec_cli::run(rest, &socket()?),
        Verb::Events => crate::events_cli::run(rest, &socket()?),
        Verb::Version => {
            Args::parse(rest, &[])?.none(verb)?;
            Ok(version(&socket()?))
        }
        Verb::Ps => {
            let a = Args::parse(rest, PS_OPTS)?;
            a.none(verb)?;
            let resp = checked(call(&socket()?, &request(Verb::Ps, ""))?)?;
            let list = resp.containers.unwrap_or_default();
            if a.has("json") {
                outln(list.serialize_json());
            } else if a.has("quiet") {
                let names: String = list.iter().map(|c| format!("{}\n", c.name)).collect();
                out(names);
            } else {
                out(ps_table(&list, host::now_ns()));
            }
            Ok(0)
        }
        Verb::Start => {
            let a = Args::parse(rest, START_OPTS)?;
            let socket = socket()?;
            if a.has("wait") {
                let name = a.one_name("start --wait")?;
                let resp = checked(call(
                    &socket,
                    &Request {
                        wait: true,
                        ..request(Verb::Start, &name)
                    },
                )?)?;
                return exit_code_of(resp);
            }
            each(a.names(verb)?, |name| {
                checked(call(&socket, &request(Verb::Start, name))?).map(drop)
            })
        }
        Verb::Stop | Verb::Restart => {
            let a = Args::parse(rest, STOP_OPTS)?;
            let time = a.number("time")?;
            let names = a.names(verb)?;
            let socket = socket()?;
            each(names, |name| {
                checked(call(
                    &socket,
                    &Request {
                        time,
                        ..request(typed, name)
                    },
                )?)
                .map(drop)
            })
        }
        Verb::Kill => {
            let a = Args::parse(rest, KILL_OPTS)?;
            let signal = a.value("signal").map(str::to_string);
            if let Some(s) = &signal {
                if signals::parse_signal(s).is_none() {
                    return Err(usage(format!("unknown signal: {s}")));
                }
            }
            let names = a.names(verb)?;
            let socket = socket()?;
            each(names, |name| {
                checked(call(
                    &socket,
                    &Request {
                        signal: signal.clone(),
                        ..request(Verb::Kill, name)
                    },
                )?)
                .map(drop)
            })
        }
        Verb::Wait => {
            let a = Args::parse(rest, WAIT_OPTS)?;
            let names = a.names(verb)?;
            if let Some(c) = a.value("condition") {
                let condition = wait_cli::Condition::parse(c).map_err(usage)?;
                let timeout = a.number("timeout")?.map(std::time::Duration::from_secs);
                return wait_cli::run(names, condition, timeout, &socket()?);
            }
            if a.has("timeout") {
                return Err(usage("wait: --timeout needs --condition".to_string()));
            }
            let socket = socket()?;
            each(names, |name| {
                let resp = checked(call(&socket, &request(Verb::Wait, name))?)?;
                let code = exit_code_of(resp)
                    .map_err(|Failure(m, c)| Failure(format!("{name}: {m}"), c))?;
                outln(code.to_string());
                Ok(())
            })
        }
        Verb::Inspect => {
            let a = Args::parse(rest, &[])?;
            let names = a.names(verb)?;
            let socket = socket()?;
            each(names, |name| {
                let resp = checked(call(&socket, &request(Verb::Inspect, name))?)?;
                let info = resp
                    .container
                    .ok_or_else(|| Failure("the daemon sent no container".into(), 1))?;
                outln(info.serialize_json());
                Ok(())
            })
        }
        Verb::Rm => {
            let a = Args::parse(rest, &[])?;
            let names = a.names(verb)?;
            let socket = socket()?;
            each(names, |name| {
                let resp = checked(call(&socket, &request(Verb::Rm, name))?)?;
                for line in resp.actions.unwrap_or_default() {
                    outln(line);
                }
                Ok(())
            })
        }
        Verb::Reload => {
            Args::parse(rest, &[])?.none(verb)?;
            let resp = checked(call(&socket()?, &request(Verb::Reload, ""))?)?;
            for line in resp.actions.unwrap_or_default() {
                outln(line);
            }
            Ok(0)
        }
        Verb::Logs => {
            let a = Args::parse(rest, LOGS_OPTS)?;
            let name = a.one_name(verb)?;
            let tail = match a.value("tail") {
                Some("all") => None,
                _ => a.number("tail")?,
            };
            let now = host::now_ns();
            let point = |f: &str| {
                a.value(f)
                    .map(|v| when::parse_point(v, now).map_err(|e| usage(format!("--{f}: {e}"))))
                    .transpose()
            };
            let opts = logs_cli::Options {
                tail,
                timestamps: a.has("timestamps"),
                follow: a.has("follow"),
                since: point("since")?,
                until: point("until")?,
                removed: a.has("removed"),
            };
            if opts.removed && opts.follow {
                return Err(usage("--removed and --follow do not go together"));
            }
            let socket = socket()?;
            logs_cli::run(&name, &opts, &socket, g.config.as_deref())?;
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
    outln(api::version());
    if let Ok(resp) = call(socket, &request(Verb::Version, "")) {
        if let Some(v) = resp.version {
            outln(format!("daemon: {v}"));
        }
    }
    0
}

/// The STATUS column: "Up 5 minutes (healthy)", "Exited (0) 2 hours ago",
/// "Restarting (1) 3 seconds ago", "Created", ...
pub fn status_text(c: &Info, now_ns: u64) -> String {
    let ago = |t: &Option<String>| {
        t.as_deref()
            .and_then(when::parse_rfc3339)
            .map(|t| when::human(now_ns.saturating_sub(t)))
    };
    let code = c
        .exit_code
        .map_or(String::new(), |code| format!(" ({code})"));
    let base = match c.status.as_str() {
        "running" => match ago(&c.started_at) {
            Some(span) => format!("Up {span}"),
            None => "Up".to_string(),
        },
        "created" => "Created".to_string(),
        other => {
            let word = match other {
                "exited" => "Exited",
                "stopped" => "Stopped",
                "restarting" => "Restarting",
                "failed" => "Failed",
                s => s,
            };
            match ago(&c.finished_at) {
                Some(span) => format!("{word}{code} {span} ago"),
                None => format!("{word}{code}"),
            }
        }
    };
    match &c.health {
        Some(h) if c.status == "running" && !h.status.is_empty() => {
            format!("{base} ({status})", status = h.status)
        }
        _ => base,
    }
}

/// `ps` as a table whose columns fit their longest cell.
pub fn ps_table(list: &[Info], now_ns: u64) -> String {
    let head = ["NAME", "STATUS", "PID", "RESTARTS", "NOTE"].map(String::from);
    let rows: Vec<[String; 5]> = list
        .iter()
        .map(|c| {
            let pid = if c.pid > 0 {
                c.pid.to_string()
            } else {
                "-".to_string()
            };
            let note = c.warning.as_deref().or(c.error.as_deref()).unwrap_or("");
            [
                c.name.clone(),
                status_text(c, now_ns),
                pid,
                c.restart_count.to_string(),
                note.replace('\n', " "),
            ]
        })
        .collect();
    let mut width = [0usize; 5];
    for row in std::iter::once(&head).chain(&rows) {
        for (w, cell) in width.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(&head).chain(&rows) {
        let line = format!(
            "{:<w0$}   {:<w1$}   {:>w2$}   {:>w3$}   {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = width[0],
            w1 = width[1],
            w2 = width[2],
            w3 = width[3],
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
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

    fn parse(args: &[&str], opts: &[Opt]) -> Args {
        match Args::parse(&strings(args), opts) {
            Ok(a) => a,
            Err(Failure(msg, code)) => panic!("{args:?}: {msg} ({code})"),
        }
    }

    fn parse_err(args: &[&str], opts: &[Opt]) -> (String, i32) {
        match Args::parse(&strings(args), opts) {
            Ok(a) => panic!("{args:?} parsed: {a:?}"),
            Err(Failure(msg, code)) => (msg, code),
        }
    }

    fn usage_err(msg: &str) -> (String, i32) {
        (msg.to_string(), 2)
    }

    fn globals() -> Globals {
        Globals {
            socket: Some(PathBuf::from(NO_DAEMON)),
            config: None,
        }
    }

    /// What `berth VERB ARGS` fails with when no daemon is there.
    fn run_err(verb: &str, args: &[&str]) -> (String, i32) {
        match dispatch(verb, &strings(args), &globals()) {
            Ok(code) => panic!("{verb} {args:?} succeeded with {code}"),
            Err(Failure(msg, code)) => (msg, code),
        }
    }

    /// The options were accepted: the verb went on to call the daemon.
    fn reaches_daemon(verb: &str, args: &[&str]) {
        let (msg, code) = run_err(verb, args);
        let expected = format!("{CANNOT_CONNECT}{NO_DAEMON}: ");
        assert!(msg.starts_with(&expected), "{verb} {args:?}: {msg}");
        assert!(msg.ends_with("(is the daemon running?)"), "{msg}");
        assert_eq!(code, 1, "{verb} {args:?}");
    }

    #[test]
    fn long_and_short_forms() {
        for args in [
            &["app", "--tail", "5"][..],
            &["--tail", "5", "app"],
            &["--tail=5", "app"],
            &["app", "-n", "5"],
            &["-n5", "app"],
            &["-fn", "5", "app"],
            &["-tfn5", "app"],
        ] {
            let a = parse(args, LOGS_OPTS);
            assert_eq!(a.positional, ["app"], "{args:?}");
            assert_eq!(a.value("tail"), Some("5"), "{args:?}");
            assert_eq!(a.number("tail").ok().flatten(), Some(5), "{args:?}");
        }
        let a = parse(&["-ft", "app"], LOGS_OPTS);
        assert!(a.has("follow") && a.has("timestamps"));
        // Only the first '=' separates, and an empty value is a value.
        assert_eq!(
            parse(&["--signal=a=b"], KILL_OPTS).value("signal"),
            Some("a=b")
        );
        assert_eq!(parse(&["--signal="], KILL_OPTS).value("signal"), Some(""));
        // The word after an option that takes a value is its value.
        let a = parse(&["--tail", "--follow"], LOGS_OPTS);
        assert_eq!(a.value("tail"), Some("--follow"));
        assert!(!a.has("follow"));
        // The last of a repeated option counts.
        let a = parse(&["--tail", "1", "-n2"], LOGS_OPTS);
        assert_eq!(a.value("tail"), Some("2"));
        // `--` ends the options.
        let a = parse(&["app", "--", "-f", "--tail"], LOGS_OPTS);
        assert_eq!(a.positional, ["app", "-f", "--tail"]);
        assert!(!a.has("follow"));
        assert_eq!(parse(&["-"], &[]).positional, ["-"]);
    }

    #[test]
    fn bad_options() {
        assert_eq!(
            parse_err(&["app", "--tail"], LOGS_OPTS),
            usage_err("--tail needs a value")
        );
        assert_eq!(
            parse_err(&["app", "-n"], LOGS_OPTS),
            usage_err("-n needs a value")
        );
        assert_eq!(
            parse_err(&["--json=1"], PS_OPTS),
            usage_err("--json takes no value")
        );
        assert_eq!(
            parse_err(&["app", "--bogus"], LOGS_OPTS),
            usage_err("unknown option --bogus")
        );
        assert_eq!(parse_err(&["-x"], PS_OPTS), usage_err("unknown option -x"));
        assert_eq!(parse_err(&["-ax"], PS_OPTS), usage_err("unknown option -x"));
    }

    #[test]
    fn names_and_numbers() {
        let a = parse(&[], &[]);
        assert!(
            matches!(a.one_name("logs"), Err(Failure(m, 2)) if m == "logs: a container name is needed")
        );
        assert!(matches!(a.names("stop"), Err(Failure(_, 2))));
        let a = parse(&["a", "b"], &[]);
        assert!(
            matches!(a.one_name("logs"), Err(Failure(m, 2)) if m == "logs: exactly one container name is needed")
        );
        assert_eq!(a.names("stop").ok().map(<[String]>::len), Some(2));
        for bad in ["abc", "-1", "1.5", "", "18446744073709551616"] {
            let a = parse(&["--time", bad], STOP_OPTS);
            let Err(Failure(msg, code)) = a.number("time") else {
                panic!("{bad:?} taken as a number");
            };
            assert_eq!(
                (msg, code),
                usage_err(&format!("--time needs a whole number, not {bad:?}"))
            );
        }
    }

    #[test]
    fn verbs_reject_bad_options_before_calling_the_daemon() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("ps", &["app"], "ps takes no names"),
            ("ps", &["--json=yes"], "--json takes no value"),
            ("start", &[], "start: a container name is needed"),
            (
                "start",
                &["a", "b", "--wait"],
                "start --wait: exactly one container name is needed",
            ),
            (
                "stop",
                &["app", "--time", "soon"],
                "--time needs a whole number, not \"soon\"",
            ),
            (
                "stop",
                &["app", "-t", "-1"],
                "--time needs a whole number, not \"-1\"",
            ),
            ("stop", &[], "stop: a container name is needed"),
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
            ("kill", &["app", "-s0"], "unknown signal: 0"),
            ("kill", &["app", "--signal="], "unknown signal: "),
            ("kill", &["app", "--time", "1"], "unknown option --time"),
            ("wait", &[], "wait: a container name is needed"),
            ("inspect", &["app", "--json"], "unknown option --json"),
            ("inspect", &[], "inspect: a container name is needed"),
            ("reload", &["--force"], "unknown option --force"),
            ("reload", &["app"], "reload takes no names"),
            (
                "logs",
                &["app", "--tail", "some"],
                "--tail needs a whole number, not \"some\"",
            ),
            ("logs", &["app", "--follow=1"], "--follow takes no value"),
            (
                "logs",
                &["app", "-f", "other"],
                "logs: exactly one container name is needed",
            ),
            (
                "logs",
                &["app", "--removed", "-f"],
                "--removed and --follow do not go together",
            ),
            ("stats", &["--stream"], "unknown option --stream"),
            ("frob", &["app"], "unknown command: frob"),
            ("help", &["frob"], "help: unknown command: frob"),
            ("", &[], "unknown command: "),
        ];
        for &(verb, args, msg) in cases {
            assert_eq!(run_err(verb, args), usage_err(msg), "{verb} {args:?}");
        }
        let (msg, code) = run_err("logs", &["app", "--since", "soon"]);
        assert_eq!(code, 2);
        assert!(msg.starts_with("--since: \"soon\" is not a time"), "{msg}");
    }

    #[test]
    fn verbs_accept_their_options() {
        reaches_daemon("ps", &[]);
        reaches_daemon("ps", &["--json"]);
        reaches_daemon("ps", &["-a", "-q"]);
        reaches_daemon("ps", &["-aq"]);
        reaches_daemon("start", &["app", "--wait"]);
        reaches_daemon("start", &["a", "b"]);
        reaches_daemon("stop", &["app"]);
        reaches_daemon("stop", &["--time=0", "a", "b"]);
        reaches_daemon("stop", &["-t", "3", "app"]);
        reaches_daemon("restart", &["app", "-t", "30"]);
        reaches_daemon("kill", &["app", "b"]);
        reaches_daemon("kill", &["app", "--signal", "term"]);
        reaches_daemon("kill", &["app", "-s", "15"]);
        reaches_daemon("wait", &["app"]);
        reaches_daemon("inspect", &["app", "b"]);
        reaches_daemon("rm", &["app", "b"]);
        reaches_daemon("reload", &[]);
        reaches_daemon("stats", &["--no-stream", "--json"]);
    }

    #[test]
    fn help_for_every_verb() {
        for verb in Verb::ALL {
            let h = help_of(verb.as_str()).unwrap_or_else(|| panic!("no help for {verb:?}"));
            assert!(verb_help(h).starts_with(&format!("usage: berth {}", verb.as_str())));
            let short = short_usage(verb.as_str());
            assert!(short.lines().count() <= 4, "{short}");
            assert!(main_help().contains(&format!("\n  {}", verb.as_str())));
        }
        for verb in ["stats", "exec", "events"] {
            assert!(help_of(verb).is_some(), "{verb}");
        }
        let help = |verb: &str, args: &[&str]| wants_help(verb, &strings(args));
        assert!(help("logs", &["app", "-h"]));
        assert!(help("logs", &["--help"]));
        assert!(!help("logs", &["app", "--", "-h"]));
        // exec: its own options come before the command; from the
        // command on, every word is the command's.
        assert!(help("exec", &["--help"]));
        assert!(help("exec", &["-h", "app", "ls"]));
        assert!(help("exec", &["-it", "app", "-h"]));
        assert!(help("exec", &["-u", "root", "app", "--help"]));
        assert!(!help("exec", &["app", "ls", "--help"]));
        assert!(!help("exec", &["-u", "root", "app", "ls", "-h"]));
        assert!(!help("exec", &["app", "sh", "-c", "echo ok", "--help"]));
        assert!(!help("exec", &["app", "--", "-h"]));
        let at = |args: &[&str]| command_at("exec", &strings(args));
        assert_eq!(at(&["app", "ls", "-l"]), 1);
        assert_eq!(at(&["-e", "A=1", "--user=root", "-it", "app", "ls"]), 5);
        assert_eq!(at(&["app", "--", "ls"]), 1);
        assert_eq!(at(&["app"]), 1);
        let out = dispatch("stop", &strings(&["--help"]), &globals());
        assert!(matches!(out, Ok(0)));
    }

    fn health(status: &str) -> crate::api::Health {
        crate::api::Health {
            status: status.into(),
            ..crate::api::Health::default()
        }
    }

    fn info(name: &str, status: &str) -> Info {
        Info {
            name: name.into(),
            status: status.into(),
            ..Info::default()
        }
    }

    #[test]
    fn statuses_as_docker_shows_them() {
        let now = when::parse_rfc3339("2026-11-29T12:00:00Z").unwrap();
        let mut up = info("web", "running");
        up.pid = 42;
        up.started_at = Some("2026-11-29T11:55:00.000000000Z".into());
        assert_eq!(status_text(&up, now), "Up 5 minutes");
        let mut checked = up.clone();
        checked.health = Some(health("healthy"));
        assert_eq!(status_text(&checked, now), "Up 5 minutes (healthy)");
        let mut ex = info("job", "exited");
        ex.exit_code = Some(0);
        ex.finished_at = Some("2026-11-29T10:00:00Z".into());
        assert_eq!(status_text(&ex, now), "Exited (0) 2 hours ago");
        ex.health = Some(health("unhealthy"));
        assert_eq!(status_text(&ex, now), "Exited (0) 2 hours ago");
        let mut rs = info("loop", "restarting");
        rs.exit_code = Some(1);
        rs.finished_at = Some("2026-11-29T11:59:57Z".into());
        assert_eq!(status_text(&rs, now), "Restarting (1) 3 seconds ago");
        assert_eq!(status_text(&info("new", "created"), now), "Created");
        assert_eq!(status_text(&info("s", "stopped"), now), "Stopped");
        let long = "a-container-name-longer-than-twenty-characters";
        up.health = Some(health("starting"));
        let t = ps_table(&[up.clone(), info(long, "created")], now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        let col = lines[0].find("STATUS").unwrap();
        assert_eq!(col, long.len() + 3);
        assert_eq!(lines[1].find("Up 5 minutes (starting)"), Some(col));
        assert_eq!(lines[2].find("Created"), Some(col));
        assert!(lines[2].starts_with(long));
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
