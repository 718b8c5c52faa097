//! Reload (SIGHUP or `berth reload`): parse, validate, plan, apply.
//!
//! daemon.json and every container file are read and validated first; any
//! error refuses the whole reload and changes nothing. Then `plan` says
//! what differs and the actions go through the same paths as start-up.
//! Unchanged containers are not touched.

use log::{info, warn};

use super::Daemon;
use super::lifecycle::{Event, Phase, StopReason, Then};
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
            .iter()
            .map(|c| Current {
                name: c.name().to_string(),
                hash: c.spec().map(|s| s.hash),
                active: c.phase().is_active(),
                stopped_by_user: c.persist().stopped_by_user,
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
        let name = action.name().to_string();
        let untrusted = self
            .containers
            .get(&name)
            .is_some_and(|c| matches!(c.phase(), Phase::Untrusted { .. }));
        if untrusted {
            // Its records cannot be trusted: no start, stop or forgetting
            // on a guess.
            return format!("{name}: left untouched (its records cannot be trusted)");
        }
        let grace = self.containers.get(&name).map(|c| c.grace());
        match action {
            Action::Add { start, .. } => {
                self.containers.add(&name, spec_of(&name), None, &self.cfg);
                let stopped = self
                    .containers
                    .get(&name)
                    .is_some_and(|c| c.persist().stopped_by_user);
                if !start || stopped {
                    return format!("{name}: added");
                }
                self.feed(
                    &name,
                    Event::Start {
                        cause: super::lifecycle::Cause::Daemon,
                        waiter: None,
                    },
                );
                match self.start_failure(&name) {
                    Some(e) => format!("{name}: added, start failed: {e}"),
                    None => format!("{name}: added and started"),
                }
            }
            Action::Remove { .. } => {
                let active = self
                    .containers
                    .get(&name)
                    .is_some_and(|c| c.phase().is_active());
                if active {
                    let stop = Event::Stop {
                        reason: StopReason::Reconcile,
                        grace: grace.unwrap_or_default(),
                        then: Then::Forget,
                        client: None,
                    };
                    self.feed(&name, stop);
                    // No definition any more: one that comes back before the
                    // stop is done is a new one, not "unchanged".
                    self.containers.redefine(&name, None);
                    format!("{name}: removed, stopping")
                } else {
                    self.containers.redefine(&name, None);
                    self.feed(&name, Event::Undefined);
                    format!("{name}: removed")
                }
            }
            Action::Replace { stop, start, .. } => {
                if stop {
                    // Stopped as its running definition says (its stop
                    // signal and timeout), then started from the new one.
                    let then = if start { Then::Start } else { Then::Nothing };
                    let stop = Event::Stop {
                        reason: StopReason::Reconcile,
                        grace: grace.unwrap_or_default(),
                        then,
                        client: None,
                    };
                    self.feed(&name, stop);
                    self.containers.redefine(&name, spec_of(&name));
                    return format!("{name}: changed, recreating");
                }
                self.containers.redefine(&name, spec_of(&name));
                self.feed(&name, Event::Redefined { start });
                if !start {
                    return format!("{name}: changed");
                }
                match self.start_failure(&name) {
                    Some(e) => format!("{name}: changed, start failed: {e}"),
                    None => format!("{name}: changed, started"),
                }
            }
        }
    }

    /// Why the start just asked for failed, if it did.
    fn start_failure(&self, name: &str) -> Option<String> {
        let c = self.containers.get(name)?;
        if c.phase().is_active() {
            return None;
        }
        Some(c.error().unwrap_or("not started").to_string())
    }
}
