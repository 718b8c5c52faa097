//! Start order (`depends-on`): whether the containers one depends on let
//! it start now, as a pure function of where each of them stands. The
//! containers component works out each dependency's [`DepState`] (its
//! phase, and for "healthy" the health record of its current run) and
//! hands the answer to the lifecycle as its `Gate`; a container whose gate
//! is closed waits (`lifecycle::Phase::Waiting`) until the loop wakes it.

use super::lifecycle::Status;
use crate::config::Condition;

/// Where a dependency stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepState {
    /// Its command runs; `healthy`: its current run's health record says
    /// so.
    Running { healthy: bool },
    /// It is on its way: starting, backing off before a restart, waiting
    /// for its own dependencies, or stopped to be started again.
    Coming,
    /// Nothing will start it by itself: stopped, exited, failed.
    AtRest(Status),
    /// Not known to the daemon (its definition is gone).
    Missing,
}

/// One dependency of the container whose gate is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dep<'a> {
    pub name: &'a str,
    pub condition: Condition,
    pub state: DepState,
}

impl Dep<'_> {
    fn ready(&self) -> bool {
        match (self.condition, self.state) {
            (Condition::Running, DepState::Running { .. }) => true,
            (Condition::Healthy, DepState::Running { healthy }) => healthy,
            _ => false,
        }
    }

    /// Why it is not ready and will not be by itself, if so.
    fn stuck(&self) -> Option<String> {
        let name = self.name;
        match self.state {
            DepState::AtRest(Status::Exited) => Some(format!("{name} has exited")),
            DepState::AtRest(Status::Failed) => Some(format!("{name} failed")),
            // Never run in this boot: to a dependant, as stopped as can be.
            DepState::AtRest(Status::Created) => Some(format!("{name} is stopped")),
            DepState::AtRest(s) => Some(format!("{name} is {}", s.as_str())),
            DepState::Missing => Some(format!("{name} is not defined")),
            DepState::Running { .. } | DepState::Coming => None,
        }
    }
}

/// `None` when every dependency is ready; else what the container waits
/// for ("waiting for db (healthy), cache (running)", with ": db has
/// exited" when some of them are at rest) and whether any is at rest.
pub fn gate(deps: &[Dep]) -> Option<(String, bool)> {
    let unmet: Vec<&Dep> = deps.iter().filter(|d| !d.ready()).collect();
    if unmet.is_empty() {
        return None;
    }
    let names: Vec<String> = unmet
        .iter()
        .map(|d| format!("{} ({})", d.name, d.condition.as_str()))
        .collect();
    let mut why = format!("waiting for {}", names.join(", "));
    let stuck: Vec<String> = unmet.iter().filter_map(|d| d.stuck()).collect();
    if !stuck.is_empty() {
        why = format!("{why}: {}", stuck.join(", "));
    }
    Some((why, !stuck.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(name: &str, condition: Condition, state: DepState) -> Dep<'_> {
        Dep {
            name,
            condition,
            state,
        }
    }

    #[test]
    fn a_start_waits_until_every_dependency_is_ready() {
        use Condition::{Healthy, Running};
        assert_eq!(gate(&[]), None);
        let up = DepState::Running { healthy: false };
        let healthy = DepState::Running { healthy: true };
        assert_eq!(gate(&[dep("db", Running, up)]), None);
        assert_eq!(gate(&[dep("db", Healthy, healthy)]), None);
        assert_eq!(
            gate(&[dep("db", Healthy, up), dep("cache", Running, up)]),
            Some(("waiting for db (healthy)".into(), false))
        );
        assert_eq!(
            gate(&[
                dep("db", Running, DepState::Coming),
                dep("cache", Running, DepState::AtRest(Status::Exited))
            ]),
            Some((
                "waiting for db (running), cache (running): cache has exited".into(),
                true
            ))
        );
        let at_rest = |state| gate(&[dep("db", Running, state)]).unwrap();
        assert_eq!(
            at_rest(DepState::AtRest(Status::Stopped)),
            ("waiting for db (running): db is stopped".into(), true)
        );
        assert_eq!(
            at_rest(DepState::AtRest(Status::Created)),
            ("waiting for db (running): db is stopped".into(), true)
        );
        assert_eq!(
            at_rest(DepState::AtRest(Status::Failed)),
            ("waiting for db (running): db failed".into(), true)
        );
        assert_eq!(
            at_rest(DepState::Missing),
            ("waiting for db (running): db is not defined".into(), true)
        );
        assert_eq!(
            at_rest(DepState::Coming),
            ("waiting for db (running)".into(), false)
        );
    }
}
