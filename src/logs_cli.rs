//! `berth logs`: reads a container's log files itself. Where they are:
//! the daemon says (inspect's `log-dir`) when it answers; when no daemon
//! answers, or it no longer knows the container (its definition was
//! removed), or with `--removed`, the client looks in `log-dir/NAME` of
//! the daemon configuration (`--config FILE`, else /etc/berth/daemon.json;
//! log-dir defaults to state-dir/logs), as the daemon would. The files of
//! a removed container stay until `berth rm NAME` deletes them.
//!
//! Files are read oldest first, each next one found by the inode of the
//! one before, so that rotations while they are read skip none and read
//! none twice. `--follow` follows the live file through rotations until the
//! container's monitor exits (a pidfd on it: no daemon needed), or while
//! it waits to restart, until the daemon's `wait` answers.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::api::{Request, Verb};
use crate::cli::{CANNOT_CONNECT, DEFAULT_CONFIG, Failure, call, checked, closed_stdout, send};
use crate::config;
use crate::container::logs::{self, Assembler, Line, Stream};
use crate::errors;
use crate::host;
use crate::state::{self, Loaded, Paths, RuntimeRecord};
use crate::sys::{fd, process};

/// What `berth logs` was asked for.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub tail: Option<u64>,
    pub timestamps: bool,
    pub follow: bool,
    /// Nanoseconds since the epoch: lines before are left out.
    pub since: Option<u64>,
    /// Lines after are left out.
    pub until: Option<u64>,
    /// Read the files without asking the daemon.
    pub removed: bool,
}

impl Options {
    fn keeps(&self, line: &Line) -> bool {
        if self.since.is_none() && self.until.is_none() {
            return true;
        }
        // A line whose time no record gave is kept.
        let t = line.time;
        t == 0 || self.since.is_none_or(|s| t >= s) && self.until.is_none_or(|u| t <= u)
    }
}

/// What tells the end of a followed container's output.
enum Source {
    /// From the daemon's answer.
    Daemon {
        dir: PathBuf,
        status: String,
        monitor: (i32, u64),
    },
    /// From the files, with what the runtime record says of its monitor.
    Files { dir: PathBuf, monitor: (i32, u64) },
}

/// `berth logs NAME`.
pub fn run(
    name: &str,
    opts: &Options,
    socket: &Path,
    config_file: Option<&Path>,
) -> Result<(), Failure> {
    config::validate_name(name).map_err(|e| Failure(e, 2))?;
    let source = if opts.removed {
        offline(name, config_file, None)?
    } else {
        match call(
            socket,
            &Request {
                verb: Verb::Logs.as_str().into(),
                name: name.to_string(),
                ..Request::default()
            },
        )
        .and_then(checked)
        {
            Ok(resp) => {
                let info = resp
                    .container
                    .ok_or_else(|| Failure("the daemon sent no container".into(), 1))?;
                Source::Daemon {
                    dir: PathBuf::from(&info.log_dir),
                    status: info.status,
                    monitor: (info.monitor_pid, info.monitor_start),
                }
            }
            // No daemon: the files are all a client needs.
            Err(Failure(msg, _)) if msg.starts_with(CANNOT_CONNECT) => {
                offline(name, config_file, Some(&msg))?
            }
            // Not the daemon's any more: its files may still be there.
            Err(Failure(msg, _)) if msg.starts_with("no such container") => {
                offline(name, config_file, Some(&msg))?
            }
            Err(f) => return Err(f),
        }
    };
    print_logs(name, source, opts, socket)
}

/// The files of `name` as the daemon configuration places them. `why`:
/// why the daemon was not asked or could not say, for the error when there
/// are no files either.
fn offline(name: &str, config_file: Option<&Path>, why: Option<&str>) -> Result<Source, Failure> {
    let file = config_file.unwrap_or(Path::new(DEFAULT_CONFIG));
    let cfg = config::read_daemon_file(file).map_err(|e| {
        let e = e.to_string();
        Failure(
            match why {
                Some(why) => format!("{why}; and no log dir is known: {e}"),
                None => e,
            },
            1,
        )
    })?;
    let dir = cfg.log_dir.join(name);
    if logs::files_oldest_first(&dir).is_empty() {
        let none = format!("no logs of {name} in {}", dir.display());
        return Err(Failure(
            match why {
                Some(why) if why.starts_with("no such container") => format!("{why}; {none}"),
                _ => none,
            },
            1,
        ));
    }
    let runtime = Paths::new(&cfg.run_dir, &cfg.state_dir, name).runtime();
    let monitor = match state::load::<RuntimeRecord>(&runtime) {
        Loaded::Ok(r) => (r.monitor_pid, r.monitor_start),
        _ => (0, 0),
    };
    Ok(Source::Files { dir, monitor })
}

/// A pidfd on the monitor (pid, start time) if it is still that process.
fn monitor_pidfd((pid, start): (i32, u64)) -> Option<OwnedFd> {
    if pid <= 0 || start == 0 {
        return None;
    }
    match process::pidfd_open(pid) {
        Ok(fd) if host::same_process(pid, start) => Some(fd),
        _ => None, // already over
    }
}

fn print_logs(name: &str, source: Source, opts: &Options, socket: &Path) -> Result<(), Failure> {
    // With --follow, get hold of what tells the end before reading, so
    // that an exit between the read and that cannot be missed: a pidfd on
    // the container's monitor (it exits when the container has and its
    // output is in the files; no daemon needed, so following survives a
    // daemon restart), or, while it waits to restart, the daemon's `wait`.
    let (dir, end): (PathBuf, Option<OwnedFd>) = match source {
        Source::Daemon {
            dir,
            status,
            monitor,
        } => {
            let end = match (opts.follow, status.as_str()) {
                (false, _) => None,
                (true, "running") if monitor.0 > 0 => monitor_pidfd(monitor),
                (true, "running" | "restarting") => {
                    let mut s = crate::cli::connect(socket)?;
                    send(
                        &mut s,
                        &Request {
                            verb: Verb::Wait.as_str().into(),
                            name: name.to_string(),
                            ..Request::default()
                        },
                    )?;
                    Some(OwnedFd::from(s))
                }
                _ => None,
            };
            (dir, end)
        }
        Source::Files { dir, monitor } => {
            let end = if opts.follow {
                monitor_pidfd(monitor)
            } else {
                None
            };
            (dir, end)
        }
    };
    let mut asm = Assembler::default();
    let mut lines = Vec::new();
    // File by file, oldest first, each next one found by the inode of
    // the one before, so that rotations meanwhile skip none and read none
    // twice.
    let live = logs::file_path(&dir, 0);
    let mut file = file_after(&dir, None);
    while let Some(f) = file.as_mut() {
        let mut buf = Vec::new();
        let _ = f.read_to_end(&mut buf);
        asm.feed(&buf, &mut lines);
        let ino = f.metadata().ok().map(|m| m.ino());
        if ino.is_none() || std::fs::metadata(&live).ok().map(|m| m.ino()) == ino {
            break;
        }
        // Rotated: complete once read to its end.
        buf.clear();
        let _ = f.read_to_end(&mut buf);
        asm.feed(&buf, &mut lines);
        asm.end_file(&mut lines);
        file = file_after(&dir, ino);
    }
    let live_file = file;
    if end.is_none() {
        asm.finish(&mut lines);
    }
    lines.retain(|l| opts.keeps(l));
    if let Some(n) = opts.tail {
        let n = n as usize;
        if lines.len() > n {
            lines.drain(..lines.len() - n);
        }
    }
    emit(&lines, opts.timestamps);
    let Some(end) = end else { return Ok(()) };
    follow_logs(&dir, live_file, asm, end, opts)
}

/// Writes lines to stdout and stderr as their streams were.
fn emit(lines: &[Line], timestamps: bool) {
    let stdout = io::stdout();
    let stderr = io::stderr();
    let mut o = stdout.lock();
    let mut e = stderr.lock();
    let mut result = Ok(());
    // Lines read at once share a time: formatted once.
    let mut stamp = (u64::MAX, String::new());
    for l in lines {
        let w: &mut dyn Write = if l.stream == Stream::Stdout {
            &mut o
        } else {
            &mut e
        };
        result = (|| {
            if timestamps {
                if stamp.0 != l.time {
                    stamp = (l.time, host::rfc3339(l.time));
                }
                write!(w, "{} ", stamp.1)?;
            }
            w.write_all(&l.text)?;
            if l.newline {
                w.write_all(b"\n")?;
            }
            Ok(())
        })();
        if result.is_err() {
            break;
        }
    }
    let result = result.and_then(|_| o.flush()).and_then(|_| e.flush());
    if let Err(err) = result {
        closed_stdout(&err);
    }
}

/// Follows the live log file through rotations until the container exits.
fn follow_logs(
    dir: &Path,
    mut file: Option<File>,
    mut asm: Assembler,
    end: OwnedFd,
    opts: &Options,
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
                // The file read so far was rotated away: what was written
                // to it since the read above is read, and it is complete.
                if let Some(f) = file.as_mut() {
                    let mut buf = Vec::new();
                    let _ = f.read_to_end(&mut buf);
                    asm.feed(&buf, &mut lines);
                    asm.end_file(&mut lines);
                }
                // Next, the file written after it: rotated too, if the
                // rotations were quicker than this.
                file = match current_ino {
                    Some(_) => file_after(dir, current_ino),
                    None => File::open(&live).ok(),
                };
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
        lines.retain(|l| opts.keeps(l));
        emit(&lines, opts.timestamps);
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

/// The log file written after the one whose inode is `ino`, opened (with
/// none, the oldest); the oldest there is if that one was rotated away;
/// none if it is the newest.
fn file_after(dir: &Path, ino: Option<u64>) -> Option<File> {
    let inodes = |files: &[PathBuf]| -> Vec<Option<u64>> {
        files
            .iter()
            .map(|p| std::fs::metadata(p).ok().map(|m| m.ino()))
            .collect()
    };
    // A rotation while the files are listed renames them all: the list
    // is taken until two in a row agree, and the inode opened must be the
    // one listed.
    let mut listed = (Vec::new(), Vec::new());
    for _ in 0..100 {
        let files = logs::files_oldest_first(dir);
        let now = inodes(&files);
        if (&files, &now) != (&listed.0, &listed.1) {
            listed = (files, now);
            continue;
        }
        let next = match ino {
            Some(ino) => now
                .iter()
                .position(|i| *i == Some(ino))
                .map_or(0, |k| k + 1),
            None => 0,
        };
        let path = files.get(next)?;
        let Ok(f) = File::open(path) else { continue };
        if f.metadata().ok().map(|m| m.ino()) == now[next] {
            return Some(f);
        }
        listed = (Vec::new(), Vec::new());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::when;

    fn line(time: &str) -> Line {
        Line {
            time: when::parse_rfc3339(time).unwrap_or(0),
            stream: Stream::Stdout,
            text: b"x".to_vec(),
            newline: true,
        }
    }

    #[test]
    fn since_and_until_bound_the_lines() {
        let t = |s: &str| when::parse_rfc3339(s).unwrap();
        let opts = Options {
            since: Some(t("2026-11-29T10:00:00Z")),
            until: Some(t("2026-11-29T11:00:00Z")),
            ..Options::default()
        };
        assert!(!opts.keeps(&line("2026-11-29T09:59:59.999999999Z")));
        assert!(opts.keeps(&line("2026-11-29T10:00:00.000000000Z")));
        assert!(opts.keeps(&line("2026-11-29T11:00:00.000000000Z")));
        assert!(!opts.keeps(&line("2026-11-29T11:00:00.000000001Z")));
        assert!(Options::default().keeps(&line("garbage")));
        // A line of unknown time is kept.
        assert!(opts.keeps(&line("garbage")));
    }
}
