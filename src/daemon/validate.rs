//! `berth daemon --validate`: the configuration read and checked as a
//! start and a reload take it, every problem printed, one a line, and
//! nothing else done.
//!
//! The checks are the daemon's own functions: `config::check_config`,
//! which a reload runs and whose every problem refuses it (daemon.json,
//! the containers directory and its app directories, each definition with
//! its seccomp profile, env files, rootfs or image and bind sources, names
//! defined twice, `depends-on`, the network keys across files), and the
//! checks of daemon.json that only a start makes (`Access::new` for
//! `socket-group`, `socket_in_place` for `socket`, and that run-dir,
//! state-dir, log-dir and the socket's directory are directories or can
//! be made). Addresses and ports
//! claimed twice are given to the containers run-dir has records of, as a
//! start gives them (`restore::incumbents`). What only happens when a container starts (its
//! devices, its user in the rootfs's /etc/passwd, the command, the image
//! mounted and verified, the cgroup limits, the bridges) is not checked.
//!
//! It creates, locks and binds nothing and writes no file: it may run
//! beside a daemon on the same configuration without disturbing it.

use std::fs;
use std::io;
use std::path::Path;

use super::access::{self, Access};
use crate::config::{self, DaemonConfig};
use crate::errors;

/// Checks `config` and what it points to; prints each problem on stderr
/// and a summary (on stdout when all is well). Returns the exit code: 0
/// when there is no problem, else 1.
pub fn validate(config: &Path) -> i32 {
    let problems = problems(config);
    match problems {
        Ok((cfg, containers)) => {
            let plural = if containers == 1 { "" } else { "s" };
            crate::cli::outln(format!(
                "config OK: {}, {containers} container{plural} in {}",
                config.display(),
                cfg.containers_dir.display()
            ));
            0
        }
        Err(problems) => {
            for line in &problems {
                eprintln!("{line}");
            }
            let plural = if problems.len() == 1 { "" } else { "s" };
            eprintln!(
                "berth: {} problem{plural} in {} and its containers",
                problems.len(),
                config.display()
            );
            1
        }
    }
}

/// Whether a start could make `dir` (it makes it with its parents, as
/// `mkdir -p`): it is a directory, or the nearest of its ancestors that
/// exists is one. Creates nothing.
fn can_be_directory(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    loop {
        match fs::metadata(at) {
            Ok(m) if m.is_dir() => return Ok(()),
            Ok(_) if at == dir => return Err("exists and is not a directory".to_string()),
            Ok(_) => return Err(format!("{} is not a directory", at.display())),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                match at.parent() {
                    Some(parent) if !parent.as_os_str().is_empty() => at = parent,
                    _ => return Ok(()),
                }
            }
            Err(e) => return Err(format!("{}: {}", at.display(), errors::io_text(&e))),
        }
    }
}

/// daemon.json and how many containers it defines, or every problem:
/// the start's own checks of daemon.json first, then a reload's.
fn problems(config: &Path) -> Result<(DaemonConfig, usize), Vec<String>> {
    let checked = config::check_config(config, super::restore::incumbents);
    let mut problems = Vec::new();
    if let Some(cfg) = &checked.daemon {
        let group_file = Path::new(access::GROUP_FILE);
        if let Err(e) = Access::new(cfg.socket_group.as_ref(), group_file, config) {
            problems.push(e);
        }
        if let Err(e) = super::socket_in_place(&cfg.socket, config) {
            problems.push(e);
        }
        let socket_dir = cfg.socket.parent().unwrap_or(Path::new("/"));
        for (field, dir) in [
            ("run-dir", cfg.run_dir.as_path()),
            ("state-dir", &cfg.state_dir),
            ("log-dir", &cfg.log_dir),
            ("socket", socket_dir),
        ] {
            if let Err(e) = can_be_directory(dir) {
                problems.push(format!(
                    "{}: field \"{field}\": {}: {e}",
                    config.display(),
                    dir.display()
                ));
            }
        }
    }
    match checked.into_result() {
        Ok((cfg, specs)) if problems.is_empty() => Ok((cfg, specs.len())),
        Ok(_) => Err(problems),
        Err(more) => {
            problems.extend(more);
            Err(problems)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_is_one_or_can_be_made_under_a_directory() {
        let tmp = crate::testing::TempDir::new("validate-dirs");
        let dir = tmp.path();
        let file = dir.join("file");
        fs::write(&file, "x").unwrap();
        assert_eq!(can_be_directory(dir), Ok(()));
        assert_eq!(can_be_directory(&dir.join("a/b/c")), Ok(()));
        assert_eq!(
            can_be_directory(&file),
            Err("exists and is not a directory".to_string())
        );
        assert_eq!(
            can_be_directory(&file.join("run")),
            Err(format!("{} is not a directory", file.display()))
        );
        assert_eq!(can_be_directory(Path::new("relative/x")), Ok(()));
    }
}
