//! The watch component: one inotify fd (tag `Watch`) on the run directory
//! of every container the daemon manages, reporting the records a monitor
//! renames into place there (health.json, runtime.json). A monitor runs
//! its health checks and may start a new init without a daemon; this is
//! how the daemon hears of it at once, without reading anything while
//! nothing changes.

use std::collections::BTreeMap;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::tokens::{self, Tag};
use crate::sys::{fd, inotify};

/// A record a monitor changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Changed {
    Health,
    Runtime,
}

impl Changed {
    fn of(name: &[u8]) -> Option<Changed> {
        match name {
            b"health.json" => Some(Changed::Health),
            b"runtime.json" => Some(Changed::Runtime),
            _ => None,
        }
    }
}

pub struct Watch {
    fd: OwnedFd,
    /// Watch descriptors and the containers they are for.
    dirs: BTreeMap<i32, String>,
    by_name: BTreeMap<String, i32>,
}

impl Watch {
    /// A new inotify fd, registered in the loop.
    pub fn new(registry: &Registry) -> io::Result<Watch> {
        let fd = inotify::init()?;
        registry.register(
            &mut SourceFd(&fd.as_raw_fd()),
            tokens::fixed(Tag::Watch),
            Interest::READABLE,
        )?;
        Ok(Watch {
            fd,
            dirs: BTreeMap::new(),
            by_name: BTreeMap::new(),
        })
    }

    /// Watches `dir`, the run directory of container `name` (again: a
    /// directory made anew gets a new watch).
    pub fn add(&mut self, name: &str, dir: &Path) -> io::Result<()> {
        let wd = inotify::add_watch(&self.fd, dir, libc::IN_MOVED_TO)?;
        if let Some(old) = self.by_name.insert(name.to_string(), wd) {
            if old != wd {
                self.dirs.remove(&old);
                let _ = inotify::rm_watch(&self.fd, old);
            }
        }
        self.dirs.insert(wd, name.to_string());
        Ok(())
    }

    /// Stops watching `name`'s directory.
    pub fn remove(&mut self, name: &str) {
        if let Some(wd) = self.by_name.remove(name) {
            self.dirs.remove(&wd);
            let _ = inotify::rm_watch(&self.fd, wd);
        }
    }

    /// Reads everything pending: the containers and the records changed,
    /// each once, in order.
    pub fn read(&mut self) -> Vec<(String, Changed)> {
        let mut changed = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match fd::read(&self.fd, &mut buf) {
                Ok(n) if n > 0 => n,
                _ => break, // WouldBlock: drained
            };
            for rec in inotify::parse(&buf[..n]) {
                if rec.mask & libc::IN_IGNORED != 0 {
                    // The directory is gone (or unwatched).
                    if let Some(name) = self.dirs.remove(&rec.wd) {
                        if self.by_name.get(&name) == Some(&rec.wd) {
                            self.by_name.remove(&name);
                        }
                    }
                    continue;
                }
                let (Some(name), Some(what)) = (self.dirs.get(&rec.wd), Changed::of(&rec.name))
                else {
                    continue;
                };
                let item = (name.clone(), what);
                if !changed.contains(&item) {
                    changed.push(item);
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn renames_of_the_records_are_reported_by_container() {
        let tmp = TempDir::new("watch");
        let poll = mio::Poll::new().unwrap();
        let mut w = Watch::new(poll.registry()).unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        w.add("a", &a).unwrap();
        w.add("b", &b).unwrap();
        assert_eq!(w.read(), []);
        let put = |dir: &Path, name: &str| {
            std::fs::write(dir.join(".tmp"), b"{}").unwrap();
            std::fs::rename(dir.join(".tmp"), dir.join(name)).unwrap();
        };
        put(&a, "health.json");
        put(&a, "health.json");
        put(&b, "runtime.json");
        put(&b, "log-status.json");
        assert_eq!(
            w.read(),
            [
                ("a".to_string(), Changed::Health),
                ("b".to_string(), Changed::Runtime)
            ]
        );
        w.remove("a");
        put(&a, "health.json");
        assert_eq!(w.read(), []);
        // A directory removed ends its watch.
        std::fs::remove_dir_all(&b).unwrap();
        assert_eq!(w.read(), []);
        assert!(w.by_name.is_empty() && w.dirs.is_empty());
    }
}
