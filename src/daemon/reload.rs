//! Reload (SIGHUP or `berth reload`): parse, validate, plan, apply.
//!
//! daemon.json and every container file are read and validated first; any
//! error refuses the whole reload and changes nothing. Then `plan` says
//! what differs and the actions go through the same paths as start-up.
//! Unchanged containers are not touched.

use std::time::Duration;

use log::{info, warn};

use super::Daemon;
use super::lifecycle::{AfterExit, Ctr, Status, StopReason};
use crate::config::{self, DaemonConfig};
use crate::plan::{self, Action, Current, Desired};

impl Daemon {
    /// Returns one line per action taken, or why nothing was.
    pub(super) fn reload(&mut self) -> Result<Vec<String>, String> {
        if self.shutdown.is_some() {
            return Err("the daemon is shutting down".to_string());
        }
        let new_cfg = config::read_daemon_file(&self.opts.config).map_err(|e| e.to_string())?;
        let entries = config::read_containers_dir(&new_cfg.containers_dir)
            .map_err(|e| format!("{e} (containers-dir in {})", self.opts.config.display()))?;
        let mut specs = Vec::new();
        let mut errors = Vec::new();
        for (_, result) in entries {
            match result {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.push(e.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(errors.join("; "));
        }

        let mut report = self.apply_options(new_cfg);
        let current: Vec<Current> = self
            .containers
            .values()
            .map(|c| Current {
                name: c.name.clone(),
                hash: c.spec.as_ref().map(|s| s.hash),
                active: c.is_active(),
                stopped_by_user: c.persist.stopped_by_user,
            })
            .collect();
        let desired: Vec<Desired> = specs
            .iter()
            .map(|s| Desired {
                name: s.name.clone(),
                hash: s.hash,
                autostart: s.autostart,
            })
            .collect();
        for action in plan::plan(&current, &desired) {
            report.push(self.apply(action, &specs));
        }
        for line in &report {
            info!("reload: {line}");
        }
        Ok(report)
    }

    /// Takes the reloadable options; names those that need a restart.
    fn apply_options(&mut self, new: DaemonConfig) -> Vec<String> {
        let mut report = Vec::new();
        let old = &self.cfg;
        let mut keep = Vec::new();
        if new.socket != old.socket {
            keep.push("socket");
        }
        if new.run_dir != old.run_dir {
            keep.push("run-dir");
        }
        if new.state_dir != old.state_dir {
            keep.push("state-dir");
        }
        if !keep.is_empty() {
            let msg = format!(
                "{} changed but need a daemon restart; keeping the old values",
                keep.join(", ")
            );
            warn!("reload: {msg}");
            report.push(msg);
        }
        let mut next = new;
        next.socket = old.socket.clone();
        next.run_dir = old.run_dir.clone();
        next.state_dir = old.state_dir.clone();
        if self.opts.live_restore {
            next.live_restore = true; // the command line wins
        }
        if next.live_restore != old.live_restore {
            report.push(format!(
                "live-restore {}",
                if next.live_restore { "on" } else { "off" }
            ));
        }
        let level = self.opts.log_level.unwrap_or(next.log_level);
        if level != log::max_level() {
            report.push(format!("log-level {}", level.as_str().to_lowercase()));
            log::set_max_level(level);
        }
        for (what, changed) in [
            ("log-max-size", next.log_max_size != old.log_max_size),
            ("log-max-files", next.log_max_files != old.log_max_files),
            ("log-dir", next.log_dir != old.log_dir),
            ("cgroup-parent", next.cgroup_parent != old.cgroup_parent),
            (
                "shutdown-timeout",
                next.shutdown_timeout != old.shutdown_timeout,
            ),
            ("containers-dir", next.containers_dir != old.containers_dir),
        ] {
            if changed {
                report.push(format!(
                    "{what} changed (applies to containers started from now on)"
                ));
            }
        }
        self.cfg = next;
        report
    }

    fn apply(&mut self, action: Action, specs: &[config::ContainerSpec]) -> String {
        let spec_of = |name: &str| specs.iter().find(|s| s.name == name).cloned();
        let untouchable = self
            .containers
            .get(action.name())
            .is_some_and(|c| c.status == Status::Unknown);
        if untouchable {
            // Its records cannot be trusted: no start, stop or forgetting
            // on a guess.
            return format!(
                "{}: left untouched (its records cannot be trusted)",
                action.name()
            );
        }
        match action {
            Action::Add { name, start } => {
                let mut c = Ctr::new(&name);
                c.spec = spec_of(&name);
                self.containers.insert(name.clone(), c);
                self.load_persist(&name);
                if start && !self.containers[&name].persist.stopped_by_user {
                    self.start_or_fail(&name).map_or_else(
                        |e| format!("{name}: added, start failed: {e}"),
                        |_| format!("{name}: added and started"),
                    )
                } else {
                    format!("{name}: added")
                }
            }
            Action::Remove { name } => {
                let active = self.containers.get(&name).is_some_and(|c| c.is_active());
                if active {
                    let grace = self
                        .containers
                        .get(&name)
                        .map_or(Duration::from_secs(10), Ctr::grace);
                    self.stop_container(&name, StopReason::Reconcile, grace, AfterExit::Forget);
                    // No definition any more: one that comes back before the
                    // stop is done is a new one, not "unchanged".
                    if let Some(c) = self.containers.get_mut(&name) {
                        c.spec = None;
                    }
                    format!("{name}: removed, stopping")
                } else {
                    self.forget(&name);
                    format!("{name}: removed")
                }
            }
            Action::Replace { name, stop, start } => {
                let new_spec = spec_of(&name);
                if stop {
                    // Stopped as its running definition says (its stop
                    // signal and timeout), then started from the new one.
                    let grace = self
                        .containers
                        .get(&name)
                        .map_or(Duration::from_secs(10), Ctr::grace);
                    let after = if start {
                        AfterExit::Start
                    } else {
                        AfterExit::Nothing
                    };
                    self.stop_container(&name, StopReason::Reconcile, grace, after);
                }
                let c = self
                    .containers
                    .get_mut(&name)
                    .expect("plan names known containers");
                c.spec = new_spec;
                c.invalid = None;
                c.warning = None;
                if stop {
                    return format!("{name}: changed, recreating");
                }
                let was_restarting = c.status == Status::Restarting;
                if was_restarting || (c.status == Status::Failed && !start) {
                    c.restart_at = None;
                    c.status = Status::Stopped;
                }
                if was_restarting {
                    let code = c.exit_code;
                    self.answer_exit_waiters(&name, code, None);
                }
                if !start {
                    return format!("{name}: changed");
                }
                match self.start_or_fail(&name) {
                    Ok(()) => format!("{name}: changed, started"),
                    Err(e) => format!("{name}: changed, start failed: {e}"),
                }
            }
        }
    }
}
