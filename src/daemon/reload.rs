//! Reload (SIGHUP or `berth reload`): parse, validate, plan, apply.
//!
//! daemon.json and every container file are read and validated first
//! (`config::check_config`, which `berth daemon --validate` runs too); any
//! error refuses the whole reload and changes nothing. Then `plan` says
//! what differs and the actions go through the same paths as start-up.
//! Unchanged containers are not touched. Reload is a function of the
//! components it changes (the containers and the daemon's options), not
//! of the loop.

use std::path::Path;

use log::{info, warn};
use mio::Registry;

use super::containers::{Containers, Env};
use super::lifecycle::{Answers, Cause, Event, Phase, StopReason, Then};
use super::tokens::{self, Tag};
use crate::config::{self, ContainerSpec, DaemonConfig};
use crate::net::Net;
use crate::plan::{self, Action, Current, Desired};

/// What the command line set, which wins over daemon.json.
#[derive(Debug, Clone, Copy)]
pub struct Overrides {
    pub live_restore: bool,
    pub log_level: Option<log::LevelFilter>,
}

/// Re-reads `config_file` and the containers directory and applies them.
/// Returns one line per action taken and the answers for waiting clients,
/// or why nothing was done.
pub fn reload(
    ctrs: &mut Containers,
    registry: &Registry,
    cfg: &mut DaemonConfig,
    config_file: &Path,
    overrides: Overrides,
) -> Result<(Vec<String>, Answers), String> {
    // What the daemon runs keeps the addresses and ports it holds.
    let incumbents = |_: &DaemonConfig| {
        ctrs.iter()
            .filter(|c| c.spec().is_some())
            .map(|c| c.name().to_string())
            .collect()
    };
    // The same reading and checks as `berth daemon --validate`.
    let (new_cfg, mut specs) = config::check_config(config_file, incumbents)
        .into_result()
        .map_err(|problems| problems.join("; "))?;

    let mut refs: Vec<&mut ContainerSpec> = specs.iter_mut().collect();
    crate::net::fold_hashes(&new_cfg.networks, &mut refs);
    let mut report = apply_options(cfg, new_cfg, overrides);
    ctrs.forget_hierarchies();
    let retried = ctrs.net.is_err();
    if retried {
        // The address leases could not be read at start-up: tried again.
        ctrs.net = Net::new(&cfg.run_dir, &cfg.state_dir);
        match &mut ctrs.net {
            Ok(_) => report.push("networks: the address leases are read now".to_string()),
            Err(e) => report.push(format!(
                "networks: {e}: containers on bridge networks cannot start"
            )),
        }
    }
    if let Ok(net) = &mut ctrs.net {
        let refs: Vec<&ContainerSpec> = specs.iter().collect();
        report.extend(net.configure(&cfg.networks, &refs));
        if retried {
            // What runs from before is taken in as at start-up.
            net.restore(&refs);
        }
        net.repair(false);
        let tokens = (tokens::fixed(Tag::NetLinks), tokens::fixed(Tag::NetTable));
        if let Err(e) = net.watch(registry, tokens.0, tokens.1) {
            warn!("networks: {e}: a deleted bridge or table is only made again at the next reload");
        }
    }
    let current: Vec<Current> = ctrs
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
    let env = Env {
        registry,
        cfg,
        shutting_down: false,
    };
    let mut answers = Vec::new();
    for action in plan::plan(&current, &desired) {
        report.push(apply(ctrs, &env, action, &specs, &mut answers));
    }
    for line in &report {
        info!("reload: {line}");
    }
    Ok((report, answers))
}

/// Takes the reloadable options; names those that need a restart.
fn apply_options(cfg: &mut DaemonConfig, new: DaemonConfig, overrides: Overrides) -> Vec<String> {
    let mut report = Vec::new();
    let old = &*cfg;
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
    if new.socket_group != old.socket_group {
        keep.push("socket-group");
    }
    if new.log_target != old.log_target {
        keep.push("log-target");
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
    next.socket_group = old.socket_group.clone();
    next.log_target = old.log_target.clone();
    if overrides.live_restore {
        next.live_restore = true; // the command line wins
    }
    if next.live_restore != old.live_restore {
        report.push(format!(
            "live-restore {}",
            if next.live_restore { "on" } else { "off" }
        ));
    }
    let level = overrides.log_level.unwrap_or(next.log_level);
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
    *cfg = next;
    report
}

/// Applies one action through the containers' lifecycles.
fn apply(
    ctrs: &mut Containers,
    env: &Env,
    action: Action,
    specs: &[ContainerSpec],
    answers: &mut Answers,
) -> String {
    let spec_of = |name: &str| specs.iter().find(|s| s.name == name).cloned();
    let name = action.name().to_string();
    let untrusted = ctrs
        .get(&name)
        .is_some_and(|c| matches!(c.phase(), Phase::Untrusted { .. }));
    if untrusted {
        // Its records cannot be trusted: no start, stop or forgetting on a
        // guess.
        return format!("{name}: left untouched (its records cannot be trusted)");
    }
    let grace = ctrs.get(&name).map(|c| c.grace()).unwrap_or_default();
    // A reload is an operator's: what it does is never rate-limited away.
    ctrs.mark_operator(&name);
    // Stopped as its running definition says (its stop signal and
    // timeout), then started from the new one, if any.
    let stop = |then| Event::Stop {
        reason: StopReason::Reconcile,
        grace,
        then,
        client: None,
    };
    let start_it = Event::Start {
        cause: Cause::Daemon,
        waiter: None,
    };
    match action {
        Action::Add { start: false, .. } => {
            ctrs.add(&name, spec_of(&name), None, env.cfg);
            format!("{name}: added")
        }
        Action::Add { start: true, .. } => {
            ctrs.add(&name, spec_of(&name), None, env.cfg);
            if ctrs.get(&name).is_some_and(|c| c.persist().stopped_by_user) {
                return format!("{name}: added");
            }
            ctrs.mark_operator(&name);
            answers.extend(ctrs.feed(env, &name, start_it));
            match start_failure(ctrs, &name) {
                Some(e) if is_waiting(ctrs, &name) => format!("{name}: added, {e}"),
                Some(e) => format!("{name}: added, start failed: {e}"),
                None => format!("{name}: added and started"),
            }
        }
        Action::Remove { .. } => {
            let active = ctrs.get(&name).is_some_and(|c| c.phase().is_active());
            if active {
                answers.extend(ctrs.feed(env, &name, stop(Then::Forget)));
                // No definition any more: one that comes back before the
                // stop is done is a new one, not "unchanged".
                ctrs.redefine(&name, None);
                format!("{name}: removed, stopping")
            } else {
                ctrs.redefine(&name, None);
                answers.extend(ctrs.feed(env, &name, Event::Undefined));
                format!("{name}: removed")
            }
        }
        Action::Replace {
            stop: true, start, ..
        } => {
            let then = if start { Then::Start } else { Then::Nothing };
            answers.extend(ctrs.feed(env, &name, stop(then)));
            ctrs.redefine(&name, spec_of(&name));
            format!("{name}: changed, recreating")
        }
        Action::Replace {
            stop: false, start, ..
        } => {
            ctrs.redefine(&name, spec_of(&name));
            answers.extend(ctrs.feed(env, &name, Event::Redefined { start }));
            if !start {
                return format!("{name}: changed");
            }
            match start_failure(ctrs, &name) {
                Some(e) if is_waiting(ctrs, &name) => format!("{name}: changed, {e}"),
                Some(e) => format!("{name}: changed, start failed: {e}"),
                None => format!("{name}: changed, started"),
            }
        }
    }
}

/// The start asked for waits for what it depends on.
fn is_waiting(ctrs: &Containers, name: &str) -> bool {
    ctrs.get(name)
        .is_some_and(|c| matches!(c.phase(), Phase::Waiting { .. }))
}

/// Why the start just asked for failed (or what it waits for), if it did.
fn start_failure(ctrs: &Containers, name: &str) -> Option<String> {
    let c = ctrs.get(name)?;
    if c.phase().is_active() {
        return None;
    }
    if let Phase::Waiting { why, .. } = c.phase() {
        return Some(why.clone());
    }
    Some(c.error().unwrap_or("not started").to_string())
}
