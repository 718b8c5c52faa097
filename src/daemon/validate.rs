//! `berth daemon --validate`: the configuration read and checked as a
//! start and a reload take it, every problem printed, one a line, and
//! nothing else done.
//!
//! The checks are the daemon's own functions: `config::check_config`,
//! which a reload runs and whose every problem refuses it (daemon.json,
//! the containers directory and its app directories, each definition with
//! its seccomp profile, env files, rootfs or image and bind sources, names
//! defined twice, `depends-on`, the network keys across files), and the
//! two checks of daemon.json that only a start makes (`Access::new` for
//! `socket-group`, `socket_in_place` for `socket`). Addresses and ports
//! claimed twice are given to the containers run-dir has records of, as a
//! start gives them (`restore::incumbents`). What only happens when a container starts (its
//! devices, its user in the rootfs's /etc/passwd, the command, the image
//! mounted and verified, the cgroup limits, the bridges) is not checked.
//!
//! It creates, locks and binds nothing and writes no file: it may run
//! beside a daemon on the same configuration without disturbing it.

use std::path::Path;

use super::access::{self, Access};
use crate::config::{self, DaemonConfig};

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
