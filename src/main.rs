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
mod logger;
mod logs_cli;
mod net;
mod plan;
mod policy;
mod sha256;
mod signals;
mod state;
mod stats;
mod sys;
#[cfg(test)]
mod testing;
mod wait_cli;
mod when;
mod wire;

use std::path::PathBuf;
use std::process::ExitCode;

const DEFAULT_CONFIG: &str = cli::DEFAULT_CONFIG;

fn main() -> ExitCode {
    // berth's init in a container (argv[0] "berth-init" and pid 1), before
    // anything else: it must stay small.
    if container::init::selected() {
        return ExitCode::from(container::init::main().clamp(0, 255) as u8);
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("daemon") if wants_help(&args[1..]) => cli::main(&args),
        Some("daemon") => run_daemon(&args[1..]),
        Some("monitor") => match args.get(1) {
            Some(name) if args.len() == 2 => container::monitor::main(Some(name)),
            None => container::monitor::main(None),
            _ => fail(2, "monitor is started by the daemon: berth monitor [NAME]"),
        },
        None => fail(2, &format!("a command is needed\n{}", cli::main_help())),
        Some(_) => cli::main(&args),
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
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
    // Checks the configuration instead of running; the other options are
    // taken as a run takes them (an init script may add --validate to its
    // usual command line): --config says what is checked, a bad
    // --log-level is a usage error, --pidfile and --live-restore change
    // nothing that is checked (no pidfile is written).
    let mut validate = false;
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
            "--validate" => match inline {
                None => {
                    validate = true;
                    Ok(())
                }
                Some(_) => Err("--validate takes no value".to_string()),
            },
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
            return fail(2, &format!("{e}\n{}", cli::short_usage("daemon")));
        }
    }
    if validate {
        return daemon::validate(&opts.config);
    }
    daemon::main(opts)
}
