//! inotify: an fd that reports changes to watched directories, and the
//! parsing of what it reads (safe: the records are decoded from bytes).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::cvt;

/// A non-blocking, close-on-exec inotify instance.
pub fn init() -> io::Result<OwnedFd> {
    // SAFETY: plain flags, no memory passed.
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    // SAFETY: on success the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches `dir` for `mask`; returns the watch descriptor (the same one
/// again for a directory already watched).
pub fn add_watch(fd: &impl AsFd, dir: &Path, mask: u32) -> io::Result<i32> {
    let path = CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: `path` is a valid NUL-terminated string for the call.
    cvt(unsafe { libc::inotify_add_watch(fd.as_fd().as_raw_fd(), path.as_ptr(), mask) })
}

/// Ends a watch (EINVAL once the kernel ended it itself).
pub fn rm_watch(fd: &impl AsFd, wd: i32) -> io::Result<()> {
    // SAFETY: no memory passed.
    cvt(unsafe { libc::inotify_rm_watch(fd.as_fd().as_raw_fd(), wd) })?;
    Ok(())
}

/// One record read from an inotify fd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub wd: i32,
    pub mask: u32,
    /// The entry's name in the watched directory (empty for the directory
    /// itself).
    pub name: Vec<u8>,
}

/// The size of `struct inotify_event` before its name.
const HEADER: usize = 16;

/// Decodes the records in `buf` (what one read returned).
pub fn parse(buf: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let word = |i: usize| {
            let b = &buf[at + i * 4..at + i * 4 + 4];
            u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
        };
        let (wd, mask, len) = (word(0) as i32, word(1), word(3) as usize);
        let end = at + HEADER + len;
        if end > buf.len() {
            break;
        }
        let raw = &buf[at + HEADER..end];
        let name = raw.split(|&b| b == 0).next().unwrap_or(&[]).to_vec();
        out.push(Record { wd, mask, name });
        at = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd;

    #[test]
    fn a_rename_into_a_watched_directory_is_read() {
        let tmp = crate::testing::TempDir::new("inotify");
        let ino = init().unwrap();
        let wd = add_watch(&ino, tmp.path(), libc::IN_MOVED_TO).unwrap();
        std::fs::write(tmp.path().join(".x.tmp"), b"1").unwrap();
        std::fs::rename(tmp.path().join(".x.tmp"), tmp.path().join("health.json")).unwrap();
        let mut buf = [0u8; 4096];
        let n = fd::read(&ino, &mut buf).unwrap();
        let records = parse(&buf[..n]);
        assert_eq!(
            records,
            [Record {
                wd,
                mask: libc::IN_MOVED_TO,
                name: b"health.json".to_vec()
            }]
        );
        // Nothing more: non-blocking.
        assert_eq!(
            fd::read(&ino, &mut buf).unwrap_err().kind(),
            io::ErrorKind::WouldBlock
        );
        rm_watch(&ino, wd).unwrap();
    }

    #[test]
    fn a_short_buffer_yields_the_whole_records_only() {
        let mut buf = Vec::new();
        for (wd, name) in [(1i32, &b"a.json\0\0"[..]), (2, &b"b\0\0\0"[..])] {
            buf.extend_from_slice(&wd.to_ne_bytes());
            buf.extend_from_slice(&libc::IN_MOVED_TO.to_ne_bytes());
            buf.extend_from_slice(&0u32.to_ne_bytes());
            buf.extend_from_slice(&(name.len() as u32).to_ne_bytes());
            buf.extend_from_slice(name);
        }
        let all = parse(&buf);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].name, b"a.json");
        assert_eq!(all[1].wd, 2);
        assert_eq!(parse(&buf[..buf.len() - 1]).len(), 1);
    }
}
