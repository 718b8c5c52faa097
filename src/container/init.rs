//! berth's own init: PID 1 of a container whose definition says
//! `"init": true`, so that no init program is needed in the rootfs.
//!
//! The container's child execs the berth binary (an fd the monitor opened
//! before clone) with argv[0] [`ARGV0`], after every other step: the
//! namespaces, mounts, user, capabilities, limits, no_new_privs and
//! seccomp filter are the init's and, through it, the command's. Only a
//! process named so and running as pid 1 takes this path (see `main.rs`),
//! so no command line reaches it by accident.
//!
//! The init blocks every signal, starts the command as its child, then
//! waits for signals one at a time: SIGCHLD reaps every exited process
//! (the init is the reaper of the whole pid namespace), any other signal
//! is forwarded to the command. When the command ends the init exits with
//! its status: its exit code, or 128 + N when signal N killed it. The
//! kernel then ends whatever else still runs in the namespace.
//!
//! The report pipe stays open across the init's execve on fd
//! [`REPORT_FD`]: the command's child writes the failure of its execve
//! there as the program's exec step, and a successful execve closes it,
//! so the monitor hears "started" only once the command really runs.

use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStringExt;

use crate::sys::child::{self, Failure};
use crate::sys::process::{self, Argv, Envp};
use crate::sys::{fd, signal};

/// argv[0] of berth's init.
pub const ARGV0: &str = "berth-init";
/// The fd the report pipe is moved onto for the init.
pub const REPORT_FD: i32 = 3;

/// What the init runs, from its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// The index of the exec step in the child's program, reported with
    /// the errno if the command cannot be exec'd.
    pub step: u32,
    /// Paths to try in turn, like execvp (see `spawn`).
    pub candidates: Vec<CString>,
    pub argv: Vec<CString>,
}

/// The init's argv: [`ARGV0`], the step, the number of candidates, the
/// candidates, then the command's argv.
pub fn argv(command: &Command) -> Vec<CString> {
    let mut out = Vec::with_capacity(3 + command.candidates.len() + command.argv.len());
    out.push(CString::from(c"berth-init"));
    for n in [command.step as usize, command.candidates.len()] {
        out.push(CString::new(n.to_string()).unwrap_or_default());
    }
    out.extend(command.candidates.iter().cloned());
    out.extend(command.argv.iter().cloned());
    out
}

/// The command from the init's argv (see [`argv`]); `None` if malformed.
pub fn parse(args: Vec<Vec<u8>>) -> Option<Command> {
    let mut it = args.into_iter();
    if it.next()? != ARGV0.as_bytes() {
        return None;
    }
    let number = |a: Vec<u8>| String::from_utf8(a).ok()?.parse::<u32>().ok();
    let step = number(it.next()?)?;
    let count = number(it.next()?)? as usize;
    let rest: Vec<CString> = it.map(CString::new).collect::<Result<_, _>>().ok()?;
    if rest.len() <= count || count == 0 {
        return None;
    }
    let (candidates, argv) = rest.split_at(count);
    Some(Command {
        step,
        candidates: candidates.to_vec(),
        argv: argv.to_vec(),
    })
}

/// Whether this process is berth's init: named so and pid 1.
pub fn selected() -> bool {
    std::env::args_os().next().is_some_and(|a| a == ARGV0) && process::getpid() == 1
}

/// Runs the init; returns the exit status for the process.
pub fn main() -> i32 {
    if let Err(e) = signal::block_all() {
        eprintln!("berth-init: block signals: {e}");
        return 127;
    }
    let args = std::env::args_os().map(OsStringExt::into_vec).collect();
    let Some(command) = parse(args) else {
        eprintln!("berth-init: is started by berth for a container with \"init\": true");
        return 127;
    };
    let report = match fd::take_inherited(REPORT_FD) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("berth-init: report pipe on fd {REPORT_FD}: {e}");
            return 127;
        }
    };
    let envp: Vec<CString> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut kv = k.into_vec();
            kv.push(b'=');
            kv.extend(v.into_vec());
            CString::new(kv).ok()
        })
        .collect();
    let (argv, envp) = (Argv::new(command.argv), Envp::new(envp));
    let started = child::start_command(
        &command.candidates,
        &argv,
        &envp,
        report.as_fd(),
        command.step,
    );
    let (pid, pidfd) = match started {
        Ok(child) => child,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            child::report_failure(
                report.as_fd(),
                Failure {
                    step: command.step,
                    errno,
                },
            );
            return 127;
        }
    };
    // The command's copy is the last: its execve closes the pipe.
    drop(report);
    drop((argv, envp));
    loop {
        let sig = match signal::wait_any() {
            Ok(sig) => sig,
            Err(e) => {
                eprintln!("berth-init: wait for signals: {e}");
                return 127;
            }
        };
        if sig != libc::SIGCHLD {
            // The command is not reaped before it is seen to exit, so the
            // pidfd cannot name another process.
            let _ = process::pidfd_send_signal(&pidfd, sig);
            continue;
        }
        while let Some((reaped, how)) = process::reap_any_status() {
            if reaped == pid {
                return how.code();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    #[test]
    fn the_argv_round_trips() {
        let command = Command {
            step: 42,
            candidates: vec![c("/usr/bin/sh"), c("/bin/sh")],
            argv: vec![c("sh"), c("-c"), c(""), c("2")],
        };
        let args: Vec<Vec<u8>> = argv(&command).into_iter().map(|s| s.into_bytes()).collect();
        assert_eq!(
            args[..3],
            [b"berth-init".to_vec(), b"42".to_vec(), b"2".to_vec()]
        );
        assert_eq!(parse(args), Some(command));
    }

    #[test]
    fn anything_else_is_not_a_command() {
        let bytes = |v: &[&str]| v.iter().map(|s| s.as_bytes().to_vec()).collect();
        for bad in [
            vec![],
            vec!["berth", "1", "1", "/bin/sh", "sh"],
            vec!["berth-init"],
            vec!["berth-init", "x", "1", "/bin/sh", "sh"],
            vec!["berth-init", "1", "0", "sh"],
            vec!["berth-init", "1", "2", "/bin/sh", "sh"],
            vec!["berth-init", "1", "1", "/bin/sh"],
        ] {
            assert_eq!(parse(bytes(&bad)), None, "{bad:?}");
        }
    }
}
