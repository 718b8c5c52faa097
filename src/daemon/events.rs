//! What happened to the containers, as events: one per state change
//! (start, exit, oom, restart, health, reload, re-attach, ...). The
//! containers component queues them with [`Queue::emit`] as it executes
//! the lifecycle's effects or learns a monitor's news; the loop takes them
//! each turn and hands them on.

#![allow(dead_code)] // until the events component reads the queue

use std::time::{SystemTime, UNIX_EPOCH};

/// The kinds of event, as `berth events` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    Exit,
    Oom,
    Restart,
    Health,
    Stop,
    Reload,
    Reattach,
    Exec,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Start => "start",
            Kind::Exit => "exit",
            Kind::Oom => "oom",
            Kind::Restart => "restart",
            Kind::Health => "health",
            Kind::Stop => "stop",
            Kind::Reload => "reload",
            Kind::Reattach => "reattach",
            Kind::Exec => "exec",
        }
    }
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Nanoseconds since the epoch.
    pub time: u64,
    /// The container, or "" for the daemon's own (reload).
    pub name: String,
    pub kind: Kind,
    /// What else there is to say: an exit code, a health status.
    pub detail: String,
}

/// Events not yet handed on.
#[derive(Debug, Default)]
pub struct Queue {
    pending: Vec<Event>,
}

impl Queue {
    pub fn emit(&mut self, name: &str, kind: Kind, detail: impl Into<String>) {
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        self.pending.push(Event {
            time,
            name: name.to_string(),
            kind,
            detail: detail.into(),
        });
    }

    pub fn take(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.pending)
    }
}
