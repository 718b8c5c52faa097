//! Start-up: read the configuration and every record in run-dir and
//! state-dir, and turn what they say into events for each container's
//! lifecycle: a live monitor is `Attached`, a run that ended meanwhile is
//! `Ended` (found), records that cannot be trusted are `Distrusted`, a
//! container known only from records is `Undefined`; then `Boot` starts
//! what the definitions ask for.
//!
//! A record is trusted only if it is whole, in a format this binary knows,
//! from this boot, and its monitor is the same process (pid and start
//! time). Anything else is named in the log and in `ps`, and never acted
//! on blindly.

use std::collections::BTreeSet;
use std::path::Path;

use log::{debug, error, info, warn};

use super::containers::{self, Containers, Env};
use super::lifecycle::{Answers, Event};
use super::tokens::{self, Tag};
use crate::config::{self, DaemonConfig};
use crate::host;
use crate::net::Net;
use crate::state::{self, FORMAT_VERSION, Loaded, Paths, RuntimeRecord};
use crate::sys::process;

/// Loads every definition and record into `ctrs`, re-attaching and
/// accounting for each, then starts what should run.
pub fn restore(ctrs: &mut Containers, env: &Env, config_file: &Path, boot_id: &str) {
    let cfg = env.cfg;
    // The containers with records in run-dir, listed once (see
    // `incumbents`).
    let recorded = state::list_names(&cfg.run_dir.join("containers"));
    let incumbents: BTreeSet<String> = recorded.iter().cloned().collect();
    let mut specs = match config::read_checked_definitions(cfg, config_file, &incumbents) {
        Ok(found) => {
            // The name's first file is run; the later ones are named.
            for e in &found.duplicates {
                error!("{e}");
            }
            found.entries
        }
        Err(e) => {
            error!("{e}; starting with no containers");
            Vec::new()
        }
    };
    let mut defined: Vec<&mut config::ContainerSpec> = specs
        .iter_mut()
        .filter_map(|(_, r)| r.as_mut().ok())
        .collect();
    crate::net::fold_hashes(&cfg.networks, &mut defined);
    let defined: Vec<&config::ContainerSpec> = defined.into_iter().map(|s| &*s).collect();
    ctrs.net = start_networks(env, &defined);
    for (name, result) in specs {
        match result {
            Ok(spec) => ctrs.add(&name, Some(spec), None, cfg),
            Err(e) => {
                error!("{e}");
                ctrs.add(&name, None, Some(e.to_string()), cfg);
            }
        }
    }
    // Containers known only from records: their definition is gone.
    for name in &recorded {
        if config::validate_name(name).is_ok() && ctrs.get(name).is_none() {
            ctrs.add(name, None, None, cfg);
        }
    }
    let names = ctrs.names();
    for name in &names {
        let has_records = incumbents.contains(name);
        restore_one(ctrs, env, name, boot_id, has_records);
    }
    for name in &names {
        drop_answers(ctrs.feed(env, name, Event::Boot));
    }
}

/// The containers a start lets keep the addresses and ports they hold when
/// another definition claims them too: those that ran before this daemon
/// (a runtime record's directory in run-dir).
pub(super) fn incumbents(cfg: &DaemonConfig) -> BTreeSet<String> {
    state::list_names(&cfg.run_dir.join("containers"))
        .into_iter()
        .collect()
}

/// The bridge networks: daemon.json's bridges made or checked, and what a
/// previous daemon made for the containers taken in again; the watches
/// that tell when someone else deletes a bridge or the table.
fn start_networks(env: &Env, specs: &[&config::ContainerSpec]) -> Result<Net, String> {
    let cfg = env.cfg;
    let mut net = Net::new(&cfg.run_dir, &cfg.state_dir).inspect_err(|e| {
        error!("{e}: containers on bridge networks cannot start");
    })?;
    for line in net.configure(&cfg.networks, specs) {
        info!("{line}");
    }
    net.restore(specs);
    let tokens = (tokens::fixed(Tag::NetLinks), tokens::fixed(Tag::NetTable));
    if let Err(e) = net.watch(env.registry, tokens.0, tokens.1) {
        warn!("networks: {e}: a deleted bridge or table is only made again at the next reload");
    }
    Ok(net)
}

/// Temp files of record writes cut short by a crash: nobody finishes them,
/// nothing reads them, so they go once the daemon has answered (its loop
/// first idle), not before.
pub(super) fn remove_stale_temps(cfg: &DaemonConfig) {
    let mut dirs = vec![cfg.run_dir.clone()];
    for root in [
        cfg.run_dir.join("containers"),
        cfg.state_dir.join("containers"),
    ] {
        dirs.extend(state::list_names(&root).iter().map(|n| root.join(n)));
    }
    for dir in dirs {
        for path in state::remove_stale_temps(&dir) {
            info!("removed {}, left by a write cut short", path.display());
        }
    }
}

/// Nobody waits at start-up.
fn drop_answers(answers: Answers) {
    debug_assert!(answers.is_empty());
}

/// One container's runtime record: attach, account for an exit, or
/// refuse to touch it. `has_records`: its directory is in run-dir.
fn restore_one(ctrs: &mut Containers, env: &Env, name: &str, boot_id: &str, has_records: bool) {
    // The watch on its directory comes before the one read of the record:
    // what its monitor writes after the read (a new init) is then an
    // event for the loop. Kept only for a monitor re-attached to.
    if has_records {
        ctrs.watch_records(env, name);
    }
    if !restore_record(ctrs, env, name, boot_id) && has_records {
        ctrs.unwatch_records(name);
    }
}

/// As [`restore_one`], once the watch is in place; whether it re-attached
/// to a live monitor.
fn restore_record(ctrs: &mut Containers, env: &Env, name: &str, boot_id: &str) -> bool {
    let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
    let path = paths.runtime();
    let rec = match state::load::<RuntimeRecord>(&path) {
        Loaded::Missing => {
            if let Loaded::Ok(rec) = state::load::<RuntimeRecord>(&paths.last_run()) {
                if rec.boot_id == boot_id {
                    ended_while_away(ctrs, env, name, rec, true);
                    return false;
                }
            }
            drop_answers(ctrs.feed(env, name, Event::Undefined));
            return false;
        }
        Loaded::Newer(v) => {
            let why = format!(
                "runtime record {} is in format {v}, newer than this berth (format {FORMAT_VERSION}): left untouched",
                path.display()
            );
            distrust(ctrs, env, name, &path, why);
            return false;
        }
        Loaded::Corrupt(why) => {
            let why = format!(
                "runtime record {} cannot be trusted ({why}): left untouched",
                path.display()
            );
            distrust(ctrs, env, name, &path, why);
            return false;
        }
        Loaded::Ok(rec) => rec,
    };
    if rec.boot_id != boot_id {
        info!("{name}: runtime record is from an earlier boot; ignoring it");
        let _ = std::fs::remove_file(&path);
        drop_answers(ctrs.feed(env, name, Event::Undefined));
        return false;
    }
    // Identity: open a pidfd first, then check the start time, so the
    // process behind the fd is the recorded one.
    let monitor = process::pidfd_open(rec.monitor_pid)
        .ok()
        .filter(|_| host::same_process(rec.monitor_pid, rec.monitor_start));
    match monitor {
        Some(pidfd) => {
            drop_answers(ctrs.attach(env, name, &rec, pidfd));
            let changed = changed_options(env.cfg, &rec);
            if !changed.is_empty() && ctrs.get(name).is_some() {
                let msg = format!(
                    "started with other daemon options ({}); the new values apply at its next start",
                    changed.join(", ")
                );
                ctrs.set_warning(name, msg);
            }
            true
        }
        None if rec.init_pid == 0 => {
            start_cut_short(ctrs, env, name, rec);
            false
        }
        None => {
            ended_while_away(ctrs, env, name, rec, false);
            false
        }
    }
}

/// A start whose monitor ended before the exec, with no exit record: the
/// daemon that asked for it died before the job went out (or the monitor
/// was killed). Nothing of it runs: it failed, with that reason, and its
/// policy decides (as when the monitor ends while this daemon watches).
fn start_cut_short(ctrs: &mut Containers, env: &Env, name: &str, rec: RuntimeRecord) {
    let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
    if let Loaded::Ok(now) = state::load::<RuntimeRecord>(&paths.runtime()) {
        if now.run_id == rec.run_id && now.init_pid != 0 {
            // It did exec, and ended since.
            return ended_while_away(ctrs, env, name, now, false);
        }
    }
    let run = containers::run_of(&rec);
    match containers::read_ending(&paths, &run, Some(false)) {
        Ok(_) | Err(containers::ExitUnknown::Newer(_) | containers::ExitUnknown::Corrupt(..)) => {
            // The monitor did account for it: an ordinary end.
            ended_while_away(ctrs, env, name, rec, false)
        }
        Err(containers::ExitUnknown::NoRecord { .. }) => {
            containers::bury(&run, None, &rec.options.cgroups);
            let event = Event::Ended {
                outcome: Err(containers::CUT_SHORT.to_string()),
                found: Some((run, false)),
            };
            drop_answers(ctrs.feed(env, name, event));
        }
    }
}

fn distrust(ctrs: &mut Containers, env: &Env, name: &str, path: &Path, why: String) {
    // Read what can be read, to show whether it still runs; never to act
    // on it.
    let text = state::read_capped(path).unwrap_or_default();
    let seen = crate::json::decode::<RuntimeRecord>(&text)
        .ok()
        .map(|r| (r.init_pid, r.init_start));
    drop_answers(ctrs.feed(env, name, Event::Distrusted { why, seen }));
}

/// Daemon options that differ from those the container started with.
fn changed_options(cfg: &DaemonConfig, rec: &RuntimeRecord) -> Vec<String> {
    let o = &rec.options;
    let mut changed = Vec::new();
    if !o.log_dir.is_empty() && Path::new(&o.log_dir) != cfg.log_dir {
        changed.push(format!(
            "log-dir {} -> {}",
            o.log_dir,
            cfg.log_dir.display()
        ));
    }
    if o.log_max_size != 0 && o.log_max_size != cfg.log_max_size {
        changed.push(format!(
            "log-max-size {} -> {}",
            o.log_max_size, cfg.log_max_size
        ));
    }
    if o.log_max_files != 0 && o.log_max_files != cfg.log_max_files {
        changed.push(format!(
            "log-max-files {} -> {}",
            o.log_max_files, cfg.log_max_files
        ));
    }
    if !o.cgroup_parent.is_empty() && o.cgroup_parent != cfg.cgroup_parent {
        changed.push(format!(
            "cgroup-parent {} -> {}",
            o.cgroup_parent, cfg.cgroup_parent
        ));
    }
    changed
}

/// The run in `rec` is over: it ended while no daemon ran, or (`seen`) a
/// previous daemon already handled its end. Either way its status comes
/// from the exit record and the restart policy is applied again; a
/// restart only happens once, as it writes a new runtime record.
fn ended_while_away(ctrs: &mut Containers, env: &Env, name: &str, rec: RuntimeRecord, seen: bool) {
    let run = containers::run_of(&rec);
    let paths = Paths::new(&env.cfg.run_dir, &env.cfg.state_dir, name);
    let outcome = containers::read_ending(&paths, &run, Some(seen)).map_err(|e| e.to_string());
    if let (Err(why), false) = (&outcome, seen) {
        warn!("{name}: {why}");
    }
    if outcome.is_err() {
        let init = process::pidfd_open(rec.init_pid)
            .ok()
            .filter(|_| host::same_process(rec.init_pid, rec.init_start));
        containers::bury(&run, init.as_ref(), &rec.options.cgroups);
    }
    let code = outcome.as_ref().ok().and_then(|e| e.code);
    let code_text = code.map_or("unknown".to_string(), |c| c.to_string());
    if seen {
        debug!("{name}: last run ended with exit code {code_text}");
    } else {
        info!("{name}: ended while no daemon ran (exit code {code_text})");
    }
    let event = Event::Ended {
        outcome,
        found: Some((run, seen)),
    };
    drop_answers(ctrs.feed(env, name, event));
}
