//! The events kept for clients that come later: the last `KEEP` events of
//! the last `MAX_AGE`, in memory and in run-dir/events.jsonl, so that a
//! client reconnecting after a daemon restart (`berth events --since`)
//! misses nothing of what happened meanwhile.
//!
//! Times are made strictly increasing, across daemon restarts too: a
//! client that passes the time of the last event it saw gets each later
//! event once. The file is written unsynced (run-dir is tmpfs): each batch
//! is appended, one JSON line per event, and once the file holds a
//! quarter more than the window it is rewritten whole (temp + rename).
//! So it stays bounded, a starting daemon has few lines to read, and it
//! is never torn but at its last line, which loading cuts off (so that
//! the next batch starts a line of its own).
//!
//! The window also keeps, per container, what it last told of its health
//! ([`Told`]: the last status, the restarts for being unhealthy since the
//! last start), also once those events are old: a file rewritten whole
//! begins with that as of its time. A daemon that re-attaches to a
//! container compares it with the container's health record and tells
//! what changed while no daemon ran.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use nanoserde::{DeJson, SerJson};

use super::events::{Event, Kind};
use crate::api::EventLine;
use crate::{errors, host, state, wire};

/// Events kept at most.
pub const KEEP: usize = 1000;
/// How long an event is kept.
pub const MAX_AGE: Duration = Duration::from_secs(600);
/// Lines the file holds at most before it is rewritten whole: each is
/// read at the daemon's start, so a quarter more than the window, not
/// twice (a rewrite every `KEEP / 4` events, of some 100 KiB on tmpfs).
const FILE_LINES_MAX: usize = KEEP + KEEP / 4;
/// The longest detail kept of an event.
const MAX_DETAIL: usize = 512;
/// How the detail of a restart by the monitor for failing health checks
/// begins.
pub const UNHEALTHY: &str = "unhealthy";

/// The restarts by the monitor one restart event tells of: `unhealthy...`
/// one, `unhealthy: N more restarts...` N; none for another restart.
pub fn unhealthy_restarts(detail: &str) -> Option<u32> {
    let rest = detail.strip_prefix(UNHEALTHY)?;
    let counted = rest
        .strip_prefix(": ")
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok());
    Some(counted.unwrap_or(1))
}

/// What the events told of a container's health.
#[derive(Debug, Clone, Default, PartialEq, Eq, SerJson, DeJson)]
pub struct Told {
    /// The last health status told.
    #[nserde(default)]
    pub health: Option<String>,
    /// The restarts by its monitor for being unhealthy told since the
    /// container's last start.
    #[nserde(default)]
    pub restarts: u32,
}

impl Told {
    fn note(&mut self, e: &Event) {
        match e.kind {
            Kind::Start => self.restarts = 0,
            Kind::Health => self.health = Some(e.detail.clone()),
            Kind::Restart => {
                let n = unhealthy_restarts(&e.detail).unwrap_or(0);
                self.restarts = self.restarts.saturating_add(n);
            }
            _ => {}
        }
    }
}

/// The first line of a file rewritten whole: what was told of each
/// container by the events up to `as_of`.
#[derive(SerJson, DeJson)]
struct ToldLine {
    #[nserde(rename = "told-as-of")]
    as_of: u64,
    told: BTreeMap<String, Told>,
}

pub struct Window {
    events: VecDeque<Event>,
    path: PathBuf,
    /// Lines in the file now.
    lines_in_file: usize,
    /// The time of the newest event ever kept here.
    last_time: u64,
    /// The file could not be written: said once.
    failed: bool,
    /// What the events told of each container's health.
    told: BTreeMap<String, Told>,
    /// The file must be rewritten whole at the next save (its torn end
    /// could not be cut off, or the last rewrite failed).
    rewrite: bool,
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

fn event_of(line: EventLine) -> Option<Event> {
    Some(Event {
        time: line.time_ns,
        kind: Kind::parse(&line.event)?,
        name: line.name,
        detail: line.detail,
        code: line.exit_code,
    })
}

impl Window {
    /// The window a previous daemon left in `path`, those of its events
    /// still young enough at `now_ns`.
    pub fn load(path: PathBuf, now_ns: u64) -> Window {
        let mut text = fs::read(&path).unwrap_or_default();
        let mut w = Window {
            events: VecDeque::new(),
            path,
            lines_in_file: 0,
            last_time: 0,
            failed: false,
            told: BTreeMap::new(),
            rewrite: false,
        };
        if text.last().is_some_and(|&b| b != b'\n') {
            // A line torn by a daemon that died writing it: cut off, or
            // the next batch would continue it.
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            text.truncate(whole);
            if let Err(e) = cut(&w.path, whole as u64) {
                log::warn!(
                    "cut the torn end off {}: {err}; it is rewritten at the next event",
                    w.path.display(),
                    err = errors::io_text(&e)
                );
                w.rewrite = true;
            }
        }
        let mut told_as_of = 0;
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            w.lines_in_file += 1;
            let Ok(l) = wire::decode::<EventLine>(line) else {
                if let Ok(t) = wire::decode::<ToldLine>(line) {
                    w.told = t.told;
                    told_as_of = t.as_of;
                }
                continue;
            };
            let Some(e) = event_of(l) else {
                continue;
            };
            if e.time > w.last_time {
                w.last_time = e.time;
                if e.time > told_as_of {
                    w.note(&e);
                }
                w.events.push_back(e);
            }
        }
        w.trim(now_ns);
        w
    }

    /// What the events told of each container's health.
    pub fn told(&self) -> &BTreeMap<String, Told> {
        &self.told
    }

    fn note(&mut self, e: &Event) {
        if matches!(e.kind, Kind::Start | Kind::Health | Kind::Restart) && !e.name.is_empty() {
            self.told.entry(e.name.clone()).or_default().note(e);
        }
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
            self.note(&e);
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
        let result = if self.rewrite || self.lines_in_file + batch.len() > FILE_LINES_MAX {
            let told = ToldLine {
                as_of: self.last_time,
                told: self.told.clone(),
            };
            let mut all = wire::encode(&told);
            all.extend_from_slice(&text(&mut self.events.iter()));
            self.lines_in_file = self.events.len() + 1;
            let written = state::write_unsynced(&self.path, &all);
            self.rewrite = written.is_err();
            written
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

/// Cuts `path` to its first `len` bytes.
fn cut(path: &std::path::Path, len: u64) -> std::io::Result<()> {
    fs::OpenOptions::new().write(true).open(path)?.set_len(len)
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
        // The torn end was cut off: the event after it is a line of its
        // own, there for the daemon after.
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 4, "{text}");
        let w = Window::load(path.clone(), NOW + 20);
        let names: Vec<&str> = w.since(0).map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "d"]);
        // A file that is one torn line.
        fs::write(&path, b"{\"time\":").unwrap();
        let mut w = Window::load(path.clone(), NOW);
        w.add(vec![ev(NOW, "e")], NOW);
        let w = Window::load(path.clone(), NOW);
        let names: Vec<&str> = w.since(0).map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["e"]);
    }

    fn told_ev(time: u64, name: &str, kind: Kind, detail: &str) -> Event {
        Event {
            time,
            name: name.into(),
            kind,
            detail: detail.into(),
            code: None,
        }
    }

    #[test]
    fn what_was_told_of_health_outlives_the_events() {
        let dir = TempDir::new("window-told");
        let path = dir.path().join("events.jsonl");
        let mut w = Window::load(path.clone(), NOW);
        w.add(
            vec![
                told_ev(NOW, "app", Kind::Restart, "unhealthy"),
                told_ev(NOW, "app", Kind::Start, "pid 5"),
                told_ev(NOW, "app", Kind::Health, "unhealthy"),
                told_ev(NOW, "app", Kind::Restart, "unhealthy"),
                told_ev(NOW, "app", Kind::Health, "healthy"),
                told_ev(NOW, "app", Kind::Restart, "restart 1 in 100 ms"),
                told_ev(NOW, "web", Kind::Health, "starting"),
                told_ev(
                    NOW,
                    "web",
                    Kind::Restart,
                    "unhealthy: 30 more restarts while",
                ),
            ],
            NOW,
        );
        let app = Told {
            health: Some("healthy".into()),
            restarts: 1,
        };
        let web = Told {
            health: Some("starting".into()),
            restarts: 30,
        };
        assert_eq!(w.told().get("app"), Some(&app));
        // Read back from the file.
        let mut w = Window::load(path.clone(), NOW);
        assert_eq!(w.told().get("app"), Some(&app));
        assert_eq!(w.told().get("web"), Some(&web));
        // Once the file was rewritten without them, and they are too old
        // for the window, it is still known; what came after the rewrite
        // counts once.
        for i in 0..(2 * KEEP as u64) {
            w.add(vec![ev(NOW + i, "other")], NOW + i);
        }
        let later = NOW + 2 * KEEP as u64;
        w.add(
            vec![told_ev(later, "app", Kind::Restart, "unhealthy")],
            later,
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(!text.contains("\"name\":\"web\""), "web's events are gone");
        let w = Window::load(path.clone(), later + MAX_AGE.as_nanos() as u64 + 100);
        assert_eq!(w.since(0).count(), 0);
        let app = Told { restarts: 2, ..app };
        assert_eq!(w.told().get("app"), Some(&app));
        assert_eq!(w.told().get("web"), Some(&web));
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
        assert!(lines <= FILE_LINES_MAX, "{lines} lines");
        let again = Window::load(path.clone(), NOW + 3 * KEEP as u64);
        assert_eq!(again.since(0).count(), KEEP);
        // Old ones go after MAX_AGE.
        let later = NOW + 3 * KEEP as u64 + MAX_AGE.as_nanos() as u64 + 1;
        let aged = Window::load(path, later);
        assert_eq!(aged.since(0).count(), 0);
    }
}
