//! `berth exec`: asks the daemon where the running container is, then
//! joins it from this process (see `container::exec`) and relays stdio
//! until the command ends; the exit code is the command's (128 + N when
//! signal N ended it).
//!
//! Without `-t` the command's stdout and stderr are pipes this process
//! copies to its own; its stdin is /dev/null, or with `-i` this process's
//! stdin (a pipe relayed, or a file given as it is). With `-t` it runs on
//! a terminal of the container's own; this process copies between its
//! stdin and stdout and the terminal's master side, puts its own terminal
//! (if it has one) in raw mode for the time, and passes its window size
//! on, at the start and on every SIGWINCH. SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT sent to this process are passed on to the command.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::api::{Request, Verb};
use crate::cli::{self, Failure};
use crate::config;
use crate::container::exec::{self, ExecError, Options, Stdio, Target};
use crate::container::spawn::SpawnError;
use crate::errors;
use crate::sys::pty::{self, WindowSize};
use crate::sys::{fd, process, signal};

/// Signals passed on to the command.
const FORWARDED: [i32; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];
/// The window size when this process has no terminal to take one from.
const DEFAULT_WINDOW: WindowSize = WindowSize { rows: 24, cols: 80 };

/// `berth exec`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecArgs {
    pub name: String,
    pub argv: Vec<String>,
    pub user: Option<String>,
    /// KEY=VALUE, or KEY alone: its value here, if it has one.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub tty: bool,
    pub interactive: bool,
    /// `--help` (or `-h`) came before the command.
    pub help: bool,
}

/// A usage error; the client adds exec's usage lines.
fn usage(msg: impl Into<String>) -> Failure {
    Failure(format!("exec: {}", msg.into()), 2)
}

/// Parses what follows `exec`: flags before and after NAME, up to `--` or
/// the first word that is not a flag, which starts the command.
pub fn parse(args: &[String]) -> Result<ExecArgs, Failure> {
    let mut out = ExecArgs {
        name: String::new(),
        argv: Vec::new(),
        user: None,
        env: Vec::new(),
        workdir: None,
        tty: false,
        interactive: false,
        help: false,
    };
    let mut name = None;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            break;
        }
        if !arg.starts_with('-') || arg == "-" {
            if name.is_none() {
                name = Some(arg.clone());
                continue;
            }
            i -= 1;
            break;
        }
        // --flag=value, --flag value, -f value, -fvalue; -it
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if arg.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = matches!(
            flag.as_str(),
            "--user" | "-u" | "--env" | "-e" | "--workdir" | "-w"
        );
        if takes_value {
            let value = match inline {
                Some(v) => v,
                None => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| usage(format!("{flag} needs a value")))?;
                    i += 1;
                    v.clone()
                }
            };
            match flag.as_str() {
                "--user" | "-u" => out.user = Some(value),
                "--env" | "-e" => out.env.push(value),
                _ => out.workdir = Some(value),
            }
            continue;
        }
        match flag.as_str() {
            "--help" | "-h" => {
                out.help = true;
                return Ok(out);
            }
            "--tty" => out.tty = true,
            "--interactive" => out.interactive = true,
            short if !short.starts_with("--") && short.len() > 1 => {
                // -t, -i, -it, -ti; -uNAME, -eK=V, -wDIR
                let letters = &short[1..];
                if let Some(rest) = letters
                    .strip_prefix('u')
                    .or(letters.strip_prefix('e'))
                    .or(letters.strip_prefix('w'))
                {
                    match &letters[..1] {
                        "u" => out.user = Some(rest.to_string()),
                        "e" => out.env.push(rest.to_string()),
                        _ => out.workdir = Some(rest.to_string()),
                    }
                    continue;
                }
                for c in letters.chars() {
                    match c {
                        't' => out.tty = true,
                        'i' => out.interactive = true,
                        _ => return Err(usage(format!("unknown option: -{c}"))),
                    }
                }
            }
            _ => return Err(usage(format!("unknown option: {flag}"))),
        }
    }
    out.name = name.ok_or_else(|| usage("a container name is needed"))?;
    config::validate_name(&out.name).map_err(usage)?;
    out.argv = args[i.min(args.len())..].to_vec();
    if out.argv.is_empty() {
        return Err(usage("a command is needed"));
    }
    if let Some(bad) = out.env.iter().find(|e| e.starts_with('=') || e.is_empty()) {
        return Err(usage(format!("--env {bad:?}: a variable needs a name")));
    }
    if out.workdir.as_deref().is_some_and(|w| !w.starts_with('/')) {
        return Err(usage("--workdir must be an absolute path"));
    }
    Ok(out)
}

/// Variables as the command gets them: KEY alone takes this process's
/// value (and is left out if it has none); with a terminal, TERM is
/// passed on unless given.
fn variables(args: &ExecArgs, lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    let mut vars: Vec<String> = args
        .env
        .iter()
        .filter_map(|e| {
            if e.contains('=') {
                Some(e.clone())
            } else {
                lookup(e).map(|v| format!("{e}={v}"))
            }
        })
        .collect();
    if args.tty && !vars.iter().any(|e| e.starts_with("TERM=")) {
        vars.push(format!(
            "TERM={}",
            lookup("TERM").unwrap_or_else(|| "xterm".to_string())
        ));
    }
    vars
}

/// Runs `berth exec`; returns the command's exit code.
pub fn run(rest: &[String], socket: &Path) -> Result<i32, Failure> {
    let args = parse(rest)?;
    if args.help {
        // The client answers --help before it gets here; this is the same.
        cli::out(cli::verb_help(cli::help_of("exec").expect("exec has help")));
        return Ok(0);
    }
    let resp = cli::call(
        socket,
        &Request {
            verb: Verb::Exec.as_str().into(),
            name: args.name.clone(),
            command: args.argv.clone(),
            user: args.user.clone(),
            ..Request::default()
        },
    )?;
    let resp = cli::checked(resp)?;
    let found = resp
        .exec
        .ok_or_else(|| Failure("exec: the daemon's answer names no container".into(), 1))?;
    let origin = PathBuf::from(format!("{}.json", args.name));
    let spec = config::parse_container(&args.name, &found.spec, &origin).map_err(|e| {
        Failure(
            format!("exec {}: the daemon's definition: {e}", args.name),
            1,
        )
    })?;
    let target = Target {
        name: found.name,
        init_pid: found.init_pid,
        init_start: found.init_start,
        cgroups: found.cgroups.iter().map(PathBuf::from).collect(),
        spec,
    };
    let opts = Options {
        argv: args.argv.clone(),
        user: args.user.clone(),
        env: variables(&args, |k| std::env::var(k).ok()),
        workdir: args.workdir.clone(),
        tty: args.tty.then(own_window),
    };
    let fail =
        |what: &str, e: io::Error| Failure(format!("exec: {what}: {}", errors::io_text(&e)), 1);
    // Before the command exists, so that none of these signals is lost.
    signal::block(&[&FORWARDED[..], &[libc::SIGWINCH]].concat())
        .map_err(|e| fail("block signals", e))?;
    let signals = signal::signalfd(&[&FORWARDED[..], &[libc::SIGWINCH]].concat())
        .map_err(|e| fail("signalfd", e))?;
    let mut relay = Relay::new(&args, signals);
    let spawned = relay.start(&target, &opts).map_err(|e| {
        let code = match &e {
            ExecError::Spawn(SpawnError::Step { what, errno }) if what.starts_with("exec ") => {
                if *errno == libc::ENOENT {
                    127
                } else {
                    126
                }
            }
            _ => 1,
        };
        if e.needs_root() {
            return Failure(format!("exec needs root: exec {}: {e}", args.name), code);
        }
        Failure(format!("exec {}: {e}", args.name), code)
    })?;
    relay
        .run(spawned)
        .map_err(|e| fail("relay the command's stdio", e))
}

/// This process's terminal's size, or the default.
fn own_window() -> WindowSize {
    [
        io::stdout().as_fd(),
        io::stdin().as_fd(),
        io::stderr().as_fd(),
    ]
    .into_iter()
    .find_map(|f| pty::window_size(&f).ok())
    .filter(|w| w.rows > 0 && w.cols > 0)
    .unwrap_or(DEFAULT_WINDOW)
}

const IN: Token = Token(0);
const OUT: Token = Token(1);
const ERR: Token = Token(2);
const SIGNALS: Token = Token(3);
const CHILD: Token = Token(4);
/// The command's stdin side (its pipe or the terminal's master), when
/// waiting for room.
const TO_CHILD: Token = Token(5);

/// The copying between this process and the command.
struct Relay {
    tty: bool,
    interactive: bool,
    signals: OwnedFd,
    /// Our ends of the command's pipes (without a terminal).
    stdin_w: Option<OwnedFd>,
    stdout_r: Option<OwnedFd>,
    stderr_r: Option<OwnedFd>,
    /// This process's stdin, relayed (a pipe or a terminal).
    relay_stdin: bool,
    /// Our terminal's settings, to put back.
    saved: Option<pty::Saved>,
}

impl Relay {
    fn new(args: &ExecArgs, signals: OwnedFd) -> Relay {
        Relay {
            tty: args.tty,
            interactive: args.interactive,
            signals,
            stdin_w: None,
            stdout_r: None,
            stderr_r: None,
            relay_stdin: false,
            saved: None,
        }
    }

    /// Starts the command, with pipes (or a terminal) for its stdio.
    fn start(&mut self, target: &Target, opts: &Options) -> Result<exec::Spawned, ExecError> {
        let devnull = fd::open(c"/dev/null", libc::O_RDWR, 0).map_err(ExecError::Pipe)?;
        if self.tty {
            let spawned = exec::spawn(
                target,
                opts,
                Stdio {
                    stdin: devnull.as_fd(),
                    stdout: devnull.as_fd(),
                    stderr: devnull.as_fd(),
                },
            )?;
            self.relay_stdin = self.interactive;
            if self.interactive && io::stdin().is_terminal() {
                self.saved = pty::make_raw(io::stdin().as_fd()).ok();
            }
            return Ok(spawned);
        }
        let (out_r, out_w) = fd::pipe().map_err(ExecError::Pipe)?;
        let (err_r, err_w) = fd::pipe().map_err(ExecError::Pipe)?;
        // stdin: /dev/null; with -i a pipe relayed from ours, or ours as
        // it is when it is a file or a device that cannot be polled.
        let mut stdin_pipe = None;
        let stdin_direct = self.interactive && !pollable(io::stdin().as_fd());
        if self.interactive && !stdin_direct {
            stdin_pipe = Some(fd::pipe().map_err(ExecError::Pipe)?);
        }
        let our_stdin = io::stdin();
        let stdin = match (&stdin_pipe, stdin_direct) {
            (Some((r, _)), _) => r.as_fd(),
            (None, true) => our_stdin.as_fd(),
            (None, false) => devnull.as_fd(),
        };
        let spawned = exec::spawn(
            target,
            opts,
            Stdio {
                stdin,
                stdout: out_w.as_fd(),
                stderr: err_w.as_fd(),
            },
        )?;
        self.stdout_r = Some(out_r);
        self.stderr_r = Some(err_r);
        if let Some((_, w)) = stdin_pipe {
            self.stdin_w = Some(w);
            self.relay_stdin = true;
        }
        Ok(spawned)
    }

    /// Copies until the command has ended and its output is read; returns
    /// its exit code.
    fn run(mut self, spawned: exec::Spawned) -> io::Result<i32> {
        let result = self.copy(spawned);
        if let Some(saved) = self.saved.take() {
            let _ = pty::restore(io::stdin().as_fd(), &saved);
        }
        result
    }

    fn copy(&mut self, spawned: exec::Spawned) -> io::Result<i32> {
        let mut poll = Poll::new()?;
        let master = spawned.pty;
        let mut stdin_w = self.stdin_w.take();
        // Where the command's output comes from (its input goes to the
        // master too, with a terminal).
        let mut out_pipe = self.stdout_r.take();
        let mut err_pipe = self.stderr_r.take();
        let out_from = master.as_ref().or(out_pipe.as_ref());
        for f in [out_from, err_pipe.as_ref(), stdin_w.as_ref()]
            .into_iter()
            .flatten()
        {
            fd::set_nonblocking(f, true)?;
        }
        let reg = poll.registry();
        if let Some(f) = out_from {
            reg.register(&mut SourceFd(&f.as_raw_fd()), OUT, Interest::READABLE)?;
        }
        if let Some(f) = &err_pipe {
            reg.register(&mut SourceFd(&f.as_raw_fd()), ERR, Interest::READABLE)?;
        }
        let stdin_fd = io::stdin().as_raw_fd();
        let mut reading_stdin = self.relay_stdin
            && reg
                .register(&mut SourceFd(&stdin_fd), IN, Interest::READABLE)
                .is_ok();
        reg.register(
            &mut SourceFd(&self.signals.as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
        reg.register(
            &mut SourceFd(&spawned.pidfd.as_raw_fd()),
            CHILD,
            Interest::READABLE,
        )?;
        // Input read but not yet taken by the command.
        let mut pending: Vec<u8> = Vec::new();
        let mut out_open = out_from.is_some();
        let mut waiting_room = false;
        let mut events = Events::with_capacity(16);
        let mut status = None;
        while status.is_none() {
            match poll.poll(&mut events, None) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            let mut input = false;
            for ev in events.iter() {
                match ev.token() {
                    OUT => {
                        let Some(f) = master.as_ref().or(out_pipe.as_ref()) else {
                            continue;
                        };
                        let drained = drain(f, &mut io::stdout())?;
                        if drained != Drained::More {
                            out_open = false;
                            let _ = poll.registry().deregister(&mut SourceFd(&f.as_raw_fd()));
                        }
                        if drained == Drained::ReaderGone {
                            // As when a pipeline's reader ends: the
                            // command's next write fails (SIGPIPE), or its
                            // terminal hangs up.
                            if master.is_some() {
                                let _ = process::pidfd_send_signal(&spawned.pidfd, libc::SIGHUP);
                            }
                            out_pipe = None;
                        }
                        input |= master.is_some() && out_open;
                    }
                    ERR => {
                        let Some(f) = &err_pipe else { continue };
                        let drained = drain(f, &mut io::stderr())?;
                        if drained != Drained::More {
                            let _ = poll.registry().deregister(&mut SourceFd(&f.as_raw_fd()));
                        }
                        if drained == Drained::ReaderGone {
                            err_pipe = None;
                        }
                    }
                    IN | TO_CHILD => input = true,
                    SIGNALS => {
                        while let Some(sig) = signal::read_signalfd(&self.signals)? {
                            if sig == libc::SIGWINCH {
                                if let Some(m) = &master {
                                    let _ = pty::set_window_size(m, own_window());
                                }
                            } else {
                                let _ = process::pidfd_send_signal(&spawned.pidfd, sig);
                            }
                        }
                    }
                    CHILD => status = process::waitid_pidfd(&spawned.pidfd, false)?,
                    _ => {}
                }
            }
            if !input {
                continue;
            }
            let Some(to) = master.as_ref().or(stdin_w.as_ref()) else {
                continue;
            };
            let ended = self.feed(to, &mut pending, reading_stdin)?;
            let reg = poll.registry();
            if ended && reading_stdin {
                reading_stdin = false;
                let _ = reg.deregister(&mut SourceFd(&stdin_fd));
                if master.is_some() {
                    // The end of our input ends the terminal's: its EOF
                    // character (^D) after what was typed.
                    pending.push(4);
                    self.feed(to, &mut pending, false)?;
                }
            }
            // Wait for room for what is pending (else only for output).
            let want_room = !pending.is_empty();
            let to_raw = to.as_raw_fd();
            if master.is_some() {
                if out_open {
                    let interest = if want_room {
                        Interest::READABLE | Interest::WRITABLE
                    } else {
                        Interest::READABLE
                    };
                    reg.reregister(&mut SourceFd(&to_raw), OUT, interest)?;
                }
            } else if want_room != waiting_room {
                if want_room {
                    reg.register(&mut SourceFd(&to_raw), TO_CHILD, Interest::WRITABLE)?;
                } else {
                    let _ = reg.deregister(&mut SourceFd(&to_raw));
                }
                waiting_room = want_room;
            }
            if ended && pending.is_empty() && master.is_none() {
                // The command sees the end of its input.
                if waiting_room {
                    let _ = reg.deregister(&mut SourceFd(&to_raw));
                }
                stdin_w = None;
            }
        }
        // What the command wrote before it ended is in the pipes (or the
        // terminal) now: read it, without waiting for processes it left
        // behind that hold them open.
        if let Some(f) = master.as_ref().or(out_pipe.as_ref()) {
            let _ = drain(f, &mut io::stdout());
        }
        if let Some(f) = &err_pipe {
            let _ = drain(f, &mut io::stderr());
        }
        let _ = io::stdout().flush();
        Ok(status.map_or(1, process::ExitStatus::code))
    }

    /// Moves input to the command: what is pending first, then what stdin
    /// has. Returns whether stdin has ended.
    fn feed(&self, to: &OwnedFd, pending: &mut Vec<u8>, reading: bool) -> io::Result<bool> {
        let mut ended = !reading;
        loop {
            if !pending.is_empty() {
                match fd::write(to, pending) {
                    Ok(n) => {
                        pending.drain(..n);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ended),
                    // The command closed its input (or its terminal is
                    // gone): drop what it will never read.
                    Err(_) => {
                        pending.clear();
                        return Ok(true);
                    }
                }
            }
            if ended {
                return Ok(true);
            }
            // Our stdin may be blocking (and is not ours to change): read
            // only what is there.
            let stdin = io::stdin();
            if !fd::readable_now(&stdin.as_fd())? {
                return Ok(false);
            }
            let mut buf = [0u8; 16 * 1024];
            match fd::read(&stdin.as_fd(), &mut buf) {
                Ok(0) => ended = true,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => ended = true,
            }
        }
    }
}

/// How far [`drain`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drained {
    /// All there was; more may come.
    More,
    /// `from` has ended (end of file, or EIO: a terminal whose last user
    /// is gone).
    Ended,
    /// Writing to `to` failed: its reader is gone.
    ReaderGone,
}

/// Copies what `from` has now to `to`.
fn drain(from: &OwnedFd, to: &mut impl Write) -> io::Result<Drained> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match fd::read(from, &mut buf) {
            Ok(0) => return Ok(Drained::Ended),
            Ok(n) => {
                if to.write_all(&buf[..n]).and_then(|()| to.flush()).is_err() {
                    return Ok(Drained::ReaderGone);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Drained::More),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(Drained::Ended),
            Err(e) => return Err(e),
        }
    }
}

/// Whether epoll can watch `f`: a pipe, socket or terminal, not a file
/// or another device (those are handed to the command as they are).
fn pollable(f: BorrowedFd<'_>) -> bool {
    let Ok(owned) = f.try_clone_to_owned() else {
        return false;
    };
    let file = File::from(owned);
    let is_tty = file.is_terminal();
    match file.metadata() {
        Ok(m) => {
            let t = m.file_type();
            t.is_fifo() || t.is_socket() || (t.is_char_device() && is_tty)
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    fn parsed(a: &[&str]) -> ExecArgs {
        parse(&args(a)).unwrap_or_else(|Failure(m, _)| panic!("{m}"))
    }

    fn refused(a: &[&str]) -> String {
        match parse(&args(a)) {
            Ok(p) => panic!("accepted: {p:?}"),
            Err(Failure(m, code)) => {
                assert_eq!(code, 2);
                m
            }
        }
    }

    #[test]
    fn the_command_starts_after_the_name_with_or_without_dashes() {
        let a = parsed(&["web", "--", "ls", "-l", "/"]);
        assert_eq!(a.name, "web");
        assert_eq!(a.argv, ["ls", "-l", "/"]);
        let b = parsed(&["web", "ls", "-l", "/"]);
        assert_eq!(b.argv, ["ls", "-l", "/"]);
        // A command's own "--" stays its own.
        let c = parsed(&["web", "--", "sh", "--", "x"]);
        assert_eq!(c.argv, ["sh", "--", "x"]);
    }

    #[test]
    fn every_option_in_every_form() {
        let a = parsed(&[
            "--user",
            "nobody",
            "web",
            "-e",
            "A=1",
            "--env=B=2",
            "-eC=3",
            "-w",
            "/tmp",
            "-it",
            "--",
            "sh",
        ]);
        assert_eq!(a.user.as_deref(), Some("nobody"));
        assert_eq!(a.env, ["A=1", "B=2", "C=3"]);
        assert_eq!(a.workdir.as_deref(), Some("/tmp"));
        assert!(a.tty && a.interactive);
        let b = parsed(&["web", "-u", "1000:1000", "--workdir=/", "-t", "-i", "id"]);
        assert_eq!(b.user.as_deref(), Some("1000:1000"));
        assert_eq!(b.workdir.as_deref(), Some("/"));
        assert!(b.tty && b.interactive);
        assert_eq!(b.argv, ["id"]);
        let c = parsed(&["web", "--tty", "--interactive", "-uroot", "sh"]);
        assert!(c.tty && c.interactive);
        assert_eq!(c.user.as_deref(), Some("root"));
        let d = parsed(&["web", "true"]);
        assert!(!d.tty && !d.interactive && d.user.is_none() && d.env.is_empty());
    }

    #[test]
    fn help_before_the_command_is_ours_after_it_the_commands() {
        assert!(parsed(&["--help"]).help);
        assert!(parsed(&["web", "-h"]).help);
        let a = parsed(&["web", "ls", "--help"]);
        assert!(!a.help);
        assert_eq!(a.argv, ["ls", "--help"]);
    }

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert!(refused(&[]).contains("a container name is needed"));
        assert!(refused(&["web"]).contains("a command is needed"));
        assert!(refused(&["web", "--"]).contains("a command is needed"));
        assert!(refused(&["web", "--nope", "sh"]).contains("unknown option: --nope"));
        assert!(refused(&["web", "-x", "sh"]).contains("unknown option: -x"));
        assert!(refused(&["web", "--user"]).contains("--user needs a value"));
        assert!(refused(&["web", "-w", "tmp", "sh"]).contains("absolute"));
        assert!(refused(&["web", "-e", "=1", "sh"]).contains("needs a name"));
        assert!(refused(&["../x", "sh"]).contains("exec:"));
    }

    #[test]
    fn a_bare_key_takes_the_callers_value_and_a_terminal_gets_term() {
        let a = parsed(&["web", "-e", "HOME", "-e", "NOPE", "-e", "X=1", "-t", "sh"]);
        let lookup = |k: &str| match k {
            "HOME" => Some("/root".to_string()),
            "TERM" => Some("screen".to_string()),
            _ => None,
        };
        assert_eq!(variables(&a, lookup), ["HOME=/root", "X=1", "TERM=screen"]);
        let b = parsed(&["web", "-t", "-e", "TERM=dumb", "sh"]);
        assert_eq!(variables(&b, |_| None), ["TERM=dumb"]);
        let c = parsed(&["web", "-t", "sh"]);
        assert_eq!(variables(&c, |_| None), ["TERM=xterm"]);
        let d = parsed(&["web", "sh"]);
        assert!(variables(&d, lookup).is_empty());
    }
}
