//! Start-up: read the configuration and every record in run-dir and
//! state-dir, re-attach to containers that kept running while no daemon
//! was there, account for those that ended meanwhile, then start what the
//! definitions ask for.
//!
//! A record is trusted only if it is whole, in a format this binary knows,
//! from this boot, and its monitor is the same process (pid and start
//! time). Anything else is named in the log and in `ps`, and never acted
//! on blindly.

use std::os::fd::AsRawFd;
use std::path::Path;

use log::{debug, error, info, warn};
use mio::Interest;
use mio::unix::SourceFd;

use super::lifecycle::{AfterExit, Ctr, Ended, Run, Status, StopReason};
use super::{Daemon, Source};
use crate::config::{self, RestartPolicy};
use crate::host;
use crate::state::{self, ContainerState, ExitRecord, FORMAT_VERSION, Loaded, RuntimeRecord};
use crate::sys::process;

impl Daemon {
    pub(super) fn restore(&mut self) {
        let specs = match config::read_containers_dir(&self.cfg.containers_dir) {
            Ok(list) => list,
            Err(e) => {
                error!(
                    "{} (containers-dir in {}); starting with no containers",
                    e,
                    self.opts.config.display()
                );
                Vec::new()
            }
        };
        for (name, result) in specs {
            let mut c = Ctr::new(&name);
            match result {
                Ok(spec) => c.spec = Some(spec),
                Err(e) => {
                    error!("{e}");
                    c.invalid = Some(e.to_string());
                    c.status = Status::Failed;
                }
            }
            self.containers.insert(name, c);
        }
        // Containers known only from records: their definition is gone.
        let run_root = self.cfg.run_dir.join("containers");
        for name in state::list_names(&run_root) {
            if config::validate_name(&name).is_ok() && !self.containers.contains_key(&name) {
                self.containers.insert(name.clone(), Ctr::new(&name));
            }
        }
        let names: Vec<String> = self.containers.keys().cloned().collect();
        for name in &names {
            self.load_persist(name);
            self.restore_one(name);
        }
        for name in &names {
            let Some(c) = self.containers.get(name) else {
                continue;
            };
            let fresh = c.status == Status::Stopped && c.run.is_none();
            // A user's stop holds across daemon restarts, except under
            // "always", which (as in Docker) starts again with the daemon.
            let wanted = c.spec.as_ref().is_some_and(|s| {
                s.autostart && (!c.persist.stopped_by_user || s.restart == RestartPolicy::Always)
            });
            if fresh && wanted {
                let _ = self.start_or_fail(name);
            }
        }
    }

    /// Reads state.json (restart count, user stop); an unreadable or
    /// newer one is named and replaced by defaults.
    pub(super) fn load_persist(&mut self, name: &str) {
        let path = self.paths(name).state();
        let loaded = state::load::<ContainerState>(&path);
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        match loaded {
            Loaded::Ok(p) => c.persist = p,
            Loaded::Missing => {}
            Loaded::Newer(v) => {
                warn!(
                    "{name}: {} is in format {v}, newer than this berth ({FORMAT_VERSION}); using defaults",
                    path.display()
                );
                c.persist = ContainerState {
                    version: FORMAT_VERSION,
                    ..ContainerState::default()
                };
            }
            Loaded::Corrupt(why) => {
                warn!("{name}: {}: {why}; using defaults", path.display());
            }
        }
        // Records written by an older format are upgraded on next write.
        c.persist.version = FORMAT_VERSION;
    }

    /// One container's runtime record: attach, account for an exit, or
    /// refuse to touch it.
    fn restore_one(&mut self, name: &str) {
        let path = self.paths(name).runtime();
        let rec = match self.runtime_record(name) {
            Loaded::Missing => {
                if let Loaded::Ok(rec) = state::load::<RuntimeRecord>(&self.paths(name).last_run())
                {
                    if rec.boot_id == self.boot_id {
                        self.ended_while_away(name, rec, true);
                        return;
                    }
                }
                if self
                    .containers
                    .get(name)
                    .is_some_and(|c| c.spec.is_none() && c.invalid.is_none())
                {
                    self.forget(name);
                }
                return;
            }
            Loaded::Newer(v) => {
                let msg = format!(
                    "runtime record {} is in format {v}, newer than this berth (format {FORMAT_VERSION}): left untouched",
                    path.display()
                );
                self.mark_unknown(name, msg);
                return;
            }
            Loaded::Corrupt(why) => {
                let msg = format!(
                    "runtime record {} cannot be trusted ({why}): left untouched",
                    path.display()
                );
                self.mark_unknown(name, msg);
                return;
            }
            Loaded::Ok(rec) => rec,
        };
        if rec.boot_id != self.boot_id {
            info!("{name}: runtime record is from an earlier boot; ignoring it");
            let _ = std::fs::remove_file(&path);
            if self
                .containers
                .get(name)
                .is_some_and(|c| c.spec.is_none() && c.invalid.is_none())
            {
                self.forget(name);
            }
            return;
        }
        // Identity: open a pidfd first, then check the start time, so the
        // process behind the fd is the recorded one.
        let monitor = process::pidfd_open(rec.monitor_pid)
            .ok()
            .filter(|_| host::same_process(rec.monitor_pid, rec.monitor_start));
        match monitor {
            Some(pidfd) => self.attach(name, rec, pidfd),
            None => self.ended_while_away(name, rec, false),
        }
    }

    fn mark_unknown(&mut self, name: &str, msg: String) {
        warn!("{name}: {msg}");
        // Read what can be read, to show whether it still runs; never to
        // act on it.
        let text = std::fs::read_to_string(self.paths(name).runtime()).unwrap_or_default();
        let seen = crate::json::decode::<RuntimeRecord>(&text).ok();
        if let Some(c) = self.containers.get_mut(name) {
            c.untouched = seen.map(|r| (r.init_pid, r.init_start));
            c.status = Status::Unknown;
            c.warning = Some(msg);
        }
    }

    /// The monitor is alive: take it back.
    fn attach(&mut self, name: &str, rec: RuntimeRecord, monitor_pidfd: std::os::fd::OwnedFd) {
        let init_pidfd = process::pidfd_open(rec.init_pid)
            .ok()
            .filter(|_| host::same_process(rec.init_pid, rec.init_start));
        let monitor_token = self.sources.insert(Source::Monitor(name.to_string()));
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&monitor_pidfd.as_raw_fd()),
            monitor_token,
            Interest::READABLE,
        ) {
            error!("{name}: register monitor pidfd: {e}");
        }
        let hash = u64::from_str_radix(&rec.config_hash, 16).unwrap_or(0);
        let changed = self.changed_options(&rec);
        let c = self
            .containers
            .get_mut(name)
            .expect("restore iterates known names");
        c.run = Some(Run {
            run_id: rec.run_id.clone(),
            monitor_pid: rec.monitor_pid,
            monitor_start: rec.monitor_start,
            monitor_pidfd,
            monitor_token,
            channel: None,
            init_pid: rec.init_pid,
            init_start: rec.init_start,
            init_pidfd,
            started_at: rec.started_at,
            hash,
            options: rec.options.clone(),
        });
        c.status = Status::Running;
        c.started_at = Some(rec.started_at);
        info!(
            "{name}: re-attached to running container, pid {} (monitor {})",
            rec.init_pid, rec.monitor_pid
        );
        if !changed.is_empty() {
            let msg = format!(
                "started with other daemon options ({}); the new values apply at its next start",
                changed.join(", ")
            );
            self.warn_once(name, msg);
        }
        let c = &self.containers[name];
        let grace = c.grace();
        match &c.spec {
            None if c.invalid.is_none() => {
                info!("{name}: its definition is gone: stopping it");
                self.stop_container(name, StopReason::Reconcile, grace, AfterExit::Forget);
            }
            Some(spec) if spec.hash != hash => {
                info!("{name}: its definition changed while no daemon ran: recreating it");
                let after = if spec.autostart && !c.persist.stopped_by_user {
                    AfterExit::Start
                } else {
                    AfterExit::Nothing
                };
                self.stop_container(name, StopReason::Reconcile, grace, after);
            }
            Some(spec) if c.persist.stopped_by_user && spec.restart != RestartPolicy::Always => {
                // A user's stop was under way when the last daemon died.
                info!("{name}: finishing the stop a user asked for");
                self.stop_container(name, StopReason::User, grace, AfterExit::Nothing);
            }
            _ if !self.cfg.live_restore => {
                info!(
                    "{name}: live restore is off and the previous daemon did not stop it: restarting it"
                );
                self.stop_container(name, StopReason::Reconcile, grace, AfterExit::Autostart);
            }
            _ => {}
        }
    }

    /// Daemon options that differ from those the container started with.
    fn changed_options(&self, rec: &RuntimeRecord) -> Vec<String> {
        let o = &rec.options;
        let mut changed = Vec::new();
        if !o.log_dir.is_empty() && Path::new(&o.log_dir) != self.cfg.log_dir {
            changed.push(format!(
                "log-dir {} -> {}",
                o.log_dir,
                self.cfg.log_dir.display()
            ));
        }
        if o.log_max_size != 0 && o.log_max_size != self.cfg.log_max_size {
            changed.push(format!(
                "log-max-size {} -> {}",
                o.log_max_size, self.cfg.log_max_size
            ));
        }
        if o.log_max_files != 0 && o.log_max_files != self.cfg.log_max_files {
            changed.push(format!(
                "log-max-files {} -> {}",
                o.log_max_files, self.cfg.log_max_files
            ));
        }
        if !o.cgroup_parent.is_empty() && o.cgroup_parent != self.cfg.cgroup_parent {
            changed.push(format!(
                "cgroup-parent {} -> {}",
                o.cgroup_parent, self.cfg.cgroup_parent
            ));
        }
        changed
    }

    /// The monitor is gone: the container ended while no daemon watched.
    /// The run in `rec` is over: it ended while no daemon ran, or (`seen`)
    /// a previous daemon already handled its end. Either way its status
    /// comes from the exit record and the restart policy is applied again;
    /// a restart only happens once, as it writes a new runtime record.
    fn ended_while_away(&mut self, name: &str, rec: RuntimeRecord, seen: bool) {
        let exit_path = self.paths(name).exit();
        let ending = match state::load::<ExitRecord>(&exit_path) {
            Loaded::Ok(ex) if ex.run_id == rec.run_id => Ok(ex),
            // A handled run followed by a start that failed before exec
            // (no runtime record of its own): the exit record is the newer
            // truth.
            Loaded::Ok(ex) if seen && ex.started_at >= rec.started_at => Ok(ex),
            Loaded::Ok(_) | Loaded::Missing => Err(format!(
                "monitor (pid {}) is gone and left no exit record: the container was killed with it",
                rec.monitor_pid
            )),
            Loaded::Newer(v) => Err(format!(
                "exit record is in format {v}, newer than this berth"
            )),
            Loaded::Corrupt(why) => Err(format!("exit record {}: {why}", exit_path.display())),
        };
        if let (Err(why), false) = (&ending, seen) {
            warn!("{name}: {why}");
        }
        let ended = Ended {
            init_pid: rec.init_pid,
            init_start: rec.init_start,
            init_pidfd: process::pidfd_open(rec.init_pid)
                .ok()
                .filter(|_| host::same_process(rec.init_pid, rec.init_start)),
            started_at: rec.started_at,
            cgroups: rec.options.cgroups.clone(),
        };
        let code = ending.as_ref().ok().and_then(|e| e.exit_code);
        let code_text = code.map_or("unknown".to_string(), |c| c.to_string());
        if seen {
            debug!("{name}: last run ended with exit code {code_text}");
        } else {
            info!("{name}: ended while no daemon ran (exit code {code_text})");
        }
        let keep_spec = self
            .containers
            .get(name)
            .is_some_and(|c| c.spec.is_some() || c.invalid.is_some());
        if !keep_spec {
            self.forget(name);
            return;
        }
        // A handled end was logged by the daemon that saw it.
        self.run_ended(name, ended, ending, !seen);
        let Some(c) = self.containers.get_mut(name) else {
            return;
        };
        if c.persist.stopped_by_user && !c.is_active() {
            let always = c
                .spec
                .as_ref()
                .is_some_and(|s| s.restart == RestartPolicy::Always);
            if always && c.spec.as_ref().is_some_and(|s| s.autostart) {
                // As in Docker, "always" starts again with the daemon even
                // after a user's stop.
                let _ = self.start_or_fail(name);
            } else {
                c.status = Status::StoppedByUser;
            }
        }
    }
}
