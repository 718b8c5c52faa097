//! berth: a container daemon for edge and embedded Linux.
//!
//! One binary, three roles chosen by the first argument: `daemon` (the
//! event loop that owns the configuration and decisions), `monitor` (one
//! per container, started by the daemon, never by hand) and the client
//! verbs that talk to the daemon over its socket; and a fourth chosen by
//! argv[0] `berth-init` in a process that is pid 1: berth's own init in a
//! container with `"init": true` (see `container::init`).

#![deny(unsafe_code)]
// nanoserde's derives expand to `match` blocks clippy would write with `?`.
#![allow(clippy::question_mark)]

mod api;
mod cli;
mod config;
mod container;
mod daemon;
mod errors;
mod events_cli;
mod exec_cli;
mod host;
mod json;
mod plan;
mod policy;
mod sha256;
mod signals;
mod state;
mod sys;
#[cfg(test)]
mod testing;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
usage: berth daemon [--config FILE] [--live-restore] [--pidfile FILE] [--log-level LEVEL]
       berth [--socket PATH | --config FILE] COMMAND [ARGS]

commands:
  ps [--json]                      list containers
  start NAME [--wait]              start; with --wait, exit with its exit code
  stop NAME [--time SECS]          stop signal, then SIGKILL after SECS
  restart NAME [--time SECS]       stop, then start
  kill NAME [--signal SIG]         send a signal (default SIGKILL)
  wait NAME                        wait for it to exit, print the exit code
  logs NAME [--follow] [--tail N] [--timestamps]
  inspect NAME                     one JSON object
  reload                           re-read the configuration (as SIGHUP does)
  rm NAME                          delete what is kept of a container whose
                                   definition is gone (its persistent layer)
  exec NAME [--user U] [--env K=V]... [--workdir D] [-t] [-i] [--] CMD...
                                   run a command inside the running container
  version

The client finds the daemon by --socket, $BERTH_SOCKET, the socket named in
--config FILE, or /run/berth/berth.sock.";

const DEFAULT_CONFIG: &str = "/etc/berth/daemon.json";

fn main() -> ExitCode {
    // berth's init in a container (argv[0] "berth-init" and pid 1), before
    // anything else: it must stay small.
    if container::init::selected() {
        return ExitCode::from(container::init::main().clamp(0, 255) as u8);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("daemon") => run_daemon(&args[1..]),
        Some("monitor") => match args.get(1) {
            Some(name) if args.len() == 2 => container::monitor::main(name),
            _ => fail(2, "monitor is started by the daemon: berth monitor NAME"),
        },
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            0
        }
        None => fail(2, USAGE),
        Some(_) => run_client(&args),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn fail(code: i32, msg: &str) -> i32 {
    eprintln!("berth: {msg}");
    code
}

fn run_daemon(args: &[String]) -> i32 {
    let mut opts = daemon::Options {
        config: PathBuf::from(DEFAULT_CONFIG),
        ..Default::default()
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{name} needs a value"))
        };
        let result = match flag {
            "--config" => value("--config").map(|v| opts.config = PathBuf::from(v)),
            "--pidfile" => value("--pidfile").map(|v| opts.pidfile = Some(PathBuf::from(v))),
            "--live-restore" => {
                opts.live_restore = true;
                Ok(())
            }
            "--log-level" => value("--log-level").and_then(|v| {
                config::parse_log_level(&v)
                    .map(|l| opts.log_level = Some(l))
                    .ok_or(format!(
                        "--log-level must be off, error, warn, info, debug or trace, not {v:?}"
                    ))
            }),
            other => Err(format!("daemon: unknown option {other}")),
        };
        if let Err(e) = result {
            return fail(2, &e);
        }
    }
    daemon::main(opts)
}

fn run_client(args: &[String]) -> i32 {
    // Global options may come before or after the command.
    let mut socket = None;
    let mut config_file = None;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (a.as_str(), None),
        };
        match flag {
            "--socket" | "--config" => {
                let Some(v) = inline.or_else(|| it.next().cloned()) else {
                    return fail(2, &format!("{flag} needs a value"));
                };
                if flag == "--socket" {
                    socket = Some(PathBuf::from(v));
                } else {
                    config_file = Some(PathBuf::from(v));
                }
            }
            _ => rest.push(a.clone()),
        }
    }
    let Some((verb, rest)) = rest.split_first() else {
        return fail(2, USAGE);
    };
    let socket = match cli::socket_path(socket, config_file.as_deref()) {
        Ok(s) => s,
        Err(cli::Failure(msg, code)) => return fail(code, &msg),
    };
    match cli::run(verb, rest, &socket) {
        Ok(code) => code,
        Err(cli::Failure(msg, code)) => {
            let code = fail(code, &msg);
            if code == 2 {
                eprintln!("{USAGE}");
            }
            code
        }
    }
}
