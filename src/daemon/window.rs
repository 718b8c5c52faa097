//! The events kept for clients that come later: the last `KEEP` events of
//! the last `MAX_AGE`, in memory and in run-dir/events.jsonl, so that a
//! client reconnecting after a daemon restart (`berth events --since`)
//! misses nothing of what happened meanwhile.
//!
//! Times are made strictly increasing, across daemon restarts too: a
//! client that passes the time of the last event it saw gets each later
//! event once. The file is written unsynced (run-dir is tmpfs): each batch
//! is appended, one JSON line per event, and once the file holds twice
//! the window it is rewritten whole (temp + rename), so it stays bounded
//! and is never torn but at its last line, which loading skips.

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use super::events::{Event, Kind};
use crate::api::EventLine;
use crate::{errors, host, state, wire};

/// Events kept at most.
pub const KEEP: usize = 1000;
/// How long an event is kept.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// The longest detail kept of an event.
const MAX_DETAIL: usize = 512;

pub struct Window {
    events: VecDeque<Event>,
    path: PathBuf,
    /// Lines in the file now.
    lines_in_file: usize,
    /// The time of the newest event ever kept here.
    last_time: u64,
    /// The file could not be written: said once.
    failed: bool,
}

/// The line an event goes out as, to clients and to the file.
pub fn line_of(e: &Event) -> EventLine {
    EventLine {
        time: host::rfc3339(e.time),
        time_ns: e.time,
        name: e.name.clone(),
        event: e.kind.as_str().to_string(),
        detail: e.detail.clone(),
        exit_code: e.code,
    }
}

fn event_of(line: &EventLine) -> Option<Event> {
    Some(Event {
        time: line.time_ns,
        name: line.name.clone(),
        kind: Kind::parse(&line.event)?,
        detail: line.detail.clone(),
        code: line.exit_code,
    })
}

impl Window {
    /// The window a previous daemon left in `path`, those of its events
    /// still young enough at `now_ns`.
    pub fn load(path: PathBuf, now_ns: u64) -> Window {
        let text = fs::read(&path).unwrap_or_default();
        let mut w = Window {
            events: VecDeque::new(),
            path,
            lines_in_file: 0,
            last_time: 0,
            failed: false,
        };
        for line in text.split(|&b| b == b'\n') {
            w.lines_in_file += 1;
            let Some(e) = wire::decode::<EventLine>(line)
                .ok()
                .and_then(|l| event_of(&l))
            else {
                continue;
            };
            if e.time > w.last_time {
                w.last_time = e.time;
                w.events.push_back(e);
            }
        }
        w.trim(now_ns);
        w
    }

    fn trim(&mut self, now_ns: u64) {
        let oldest = now_ns.saturating_sub(MAX_AGE.as_nanos() as u64);
        while self
            .events
            .front()
            .is_some_and(|e| e.time < oldest || self.events.len() > KEEP)
        {
            self.events.pop_front();
        }
    }

    /// Takes a batch in: each event gets a time after the last one kept,
    /// and a bounded detail. Returns the batch as kept, to hand on.
    pub fn add(&mut self, batch: Vec<Event>, now_ns: u64) -> Vec<Event> {
        let mut kept = Vec::with_capacity(batch.len());
        for mut e in batch {
            e.time = e.time.max(self.last_time + 1);
            self.last_time = e.time;
            if e.detail.len() > MAX_DETAIL {
                let mut cut = MAX_DETAIL;
                while !e.detail.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.detail.truncate(cut);
            }
            self.events.push_back(e.clone());
            kept.push(e);
        }
        self.trim(now_ns);
        self.save(&kept);
        kept
    }

    /// The kept events after `since` (nanoseconds since the epoch).
    pub fn since(&self, since: u64) -> impl Iterator<Item = &Event> {
        self.events.iter().filter(move |e| e.time > since)
    }

    fn save(&mut self, batch: &[Event]) {
        let text = |events: &mut dyn Iterator<Item = &Event>| {
            let mut out = Vec::new();
            for e in events {
                out.extend_from_slice(&wire::encode(&line_of(e)));
            }
            out
        };
        let result = if self.lines_in_file + batch.len() > 2 * KEEP {
            let all = text(&mut self.events.iter());
            self.lines_in_file = self.events.len();
            state::write_unsynced(&self.path, &all)
        } else {
            self.lines_in_file += batch.len();
            fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(&self.path)
                .and_then(|mut f| f.write_all(&text(&mut batch.iter())))
        };
        match result {
            Ok(()) => self.failed = false,
            Err(e) if !self.failed => {
                self.failed = true;
                log::warn!(
                    "write {}: {err}; events are kept in memory only",
                    self.path.display(),
                    err = errors::io_text(&e)
                );
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    fn ev(time: u64, name: &str) -> Event {
        Event {
            time,
            name: name.into(),
            kind: Kind::Exit,
            detail: "exit-code 1".into(),
            code: Some(1),
        }
    }

    const NOW: u64 = 2_000_000_000_000_000_000;

    #[test]
    fn times_increase_and_a_restart_keeps_the_window() {
        let dir = TempDir::new("window");
        let path = dir.path().join("events.jsonl");
        let mut w = Window::load(path.clone(), NOW);
        let kept = w.add(vec![ev(NOW, "a"), ev(NOW, "b"), ev(NOW - 5, "c")], NOW);
        let times: Vec<u64> = kept.iter().map(|e| e.time).collect();
        assert_eq!(times, [NOW, NOW + 1, NOW + 2]);
        // Since the time of one seen: the later ones, each once.
        let after: Vec<&str> = w.since(NOW).map(|e| e.name.as_str()).collect();
        assert_eq!(after, ["b", "c"]);
        // A new daemon reads them back, and goes on after them, also when
        // the last line was torn.
        let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"time\":\"x\",\"ti").unwrap();
        let mut w = Window::load(path.clone(), NOW + 10);
        let names: Vec<&str> = w.since(0).map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        let kept = w.add(vec![ev(NOW, "d")], NOW + 10);
        assert_eq!(kept[0].time, NOW + 3);
        assert_eq!(w.since(NOW + 2).count(), 1);
    }

    #[test]
    fn the_window_and_its_file_stay_bounded() {
        let dir = TempDir::new("window-cap");
        let path = dir.path().join("events.jsonl");
        let mut w = Window::load(path.clone(), NOW);
        for i in 0..(3 * KEEP as u64) {
            let mut e = ev(NOW + i, "a");
            e.detail = "x".repeat(10_000);
            w.add(vec![e], NOW + i);
        }
        assert_eq!(w.since(0).count(), KEEP);
        assert!(w.since(0).all(|e| e.detail.len() == MAX_DETAIL));
        let lines = fs::read_to_string(&path).unwrap().lines().count();
        assert!(lines <= 2 * KEEP, "{lines} lines");
        let again = Window::load(path.clone(), NOW + 3 * KEEP as u64);
        assert_eq!(again.since(0).count(), KEEP);
        // Old ones go after MAX_AGE.
        let later = NOW + 3 * KEEP as u64 + MAX_AGE.as_nanos() as u64 + 1;
        let aged = Window::load(path, later);
        assert_eq!(aged.since(0).count(), 0);
    }
}
