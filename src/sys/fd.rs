//! File descriptors: pipes, socket pairs, flags, and the few reads and
//! writes made outside std's types.
//!
//! Every public function takes the fds it works on as `AsFd` (owned or
//! borrowed, so open for the whole call), never as a bare number. The two
//! that overwrite or close fds by number, [`dup2_onto`] and
//! [`close_from_except`], are `unsafe` and private to `sys`: only the
//! cloned child calls them, which never uses those numbers' owners again.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Mutex;

use super::cvt;

/// A pipe, both ends close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints the kernel fills in.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: on success both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints the kernel fills in.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: on success both fds are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Sets or clears O_NONBLOCK.
pub fn set_nonblocking(fd: &impl AsFd, on: bool) -> io::Result<()> {
    let fd = fd.as_fd().as_raw_fd();
    // SAFETY: F_GETFL on an open fd has no memory effects.
    let flags = cvt(unsafe { libc::fcntl(fd, libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with plain flags has no memory effects.
    cvt(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) })?;
    Ok(())
}

/// Grows a pipe's buffer (best effort: the caller decides what failure means).
pub fn set_pipe_size(fd: &impl AsFd, size: i32) -> io::Result<i32> {
    // SAFETY: F_SETPIPE_SZ takes an int and has no memory effects.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_SETPIPE_SZ, size) })
}

/// Opens a path with raw flags (O_CLOEXEC is always added), by the system
/// call itself: musl's open(3) follows an O_CLOEXEC open with an
/// fcntl(F_SETFD), for kernels older than 2.6.23, one more system call
/// for every file read.
pub fn open(path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let flags = flags | libc::O_CLOEXEC | libc::O_LARGEFILE;
    // SAFETY: `path` is a valid NUL-terminated string; openat takes
    // these four arguments.
    let fd = cvt(unsafe {
        libc::syscall(
            libc::SYS_openat,
            libc::AT_FDCWD,
            path.as_ptr(),
            flags,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Opens `path` for reading with extra `flags` (see [`open`]); the path
/// is made a C string on the stack when it fits there.
pub fn open_read(path: &std::path::Path, flags: i32) -> io::Result<std::fs::File> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    let mut buf = [0u8; 256];
    let fd = if bytes.len() < buf.len() {
        buf[..bytes.len()].copy_from_slice(bytes);
        let c = CStr::from_bytes_with_nul(&buf[..=bytes.len()])
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        open(c, libc::O_RDONLY | flags, 0)?
    } else {
        let c = std::ffi::CString::new(bytes)?;
        open(&c, libc::O_RDONLY | flags, 0)?
    };
    Ok(std::fs::File::from(fd))
}

/// Takes an exclusive, non-blocking write lock on the whole file that
/// belongs to this process alone: a POSIX record lock (`F_SETLK`), whose
/// owner is the process, not the open file. A child cloned from it gets a
/// copy of the fd but not the lock, so the lock ends exactly when this
/// process does; `flock` and OFD locks belong to the open file, which a
/// child keeps until it execs or closes it, and a killed daemon's child
/// between clone and exec would hold them on.
///
/// The lock also ends when this process closes *any* fd on the file:
/// open the file once and keep that fd. EAGAIN or EACCES: another process
/// holds it.
pub fn try_lock(fd: &impl AsFd) -> io::Result<()> {
    // SAFETY: flock is a plain C struct; all-zero is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0; // to the end, however long the file grows
    // SAFETY: `lock` is a valid flock the kernel only reads.
    cvt(unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_SETLK, &lock) })?;
    Ok(())
}

/// Whether a read from `fd` would not block now (data, end of file or an
/// error to report): poll(2) with no wait, for an fd that may be in
/// blocking mode and shared with other processes (a caller's stdin).
pub fn readable_now(fd: &impl AsFd) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the count passed.
    let n = cvt(unsafe { libc::poll(&mut p, 1, 0) })?;
    Ok(n > 0 && p.revents != 0)
}

/// Waits up to `timeout` for `fd` to become readable (see
/// [`readable_now`]); whether it did.
pub fn wait_readable(fd: &impl AsFd, timeout: std::time::Duration) -> io::Result<bool> {
    let mut p = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: one valid pollfd, for the count passed.
    let n = cvt(unsafe { libc::poll(&mut p, 1, ms) })?;
    Ok(n > 0 && p.revents != 0)
}

/// Writes what it can of `buf`; how much.
pub fn write(fd: &impl AsFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of its length.
    let n = cvt(unsafe { libc::write(fd.as_fd().as_raw_fd(), buf.as_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Reads into `buf`, retrying on EINTR: the count read, 0 at end of file.
pub fn read(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    let fd = fd.as_fd().as_raw_fd();
    loop {
        // SAFETY: `buf` is a valid, writable slice for its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Fds above this are not looked at by the fallbacks below (kernels before
/// 5.11 have no CLOSE_RANGE_CLOEXEC).
const FALLBACK_MAX_FD: i32 = 65_536;

/// Marks every fd from `first` upwards close-on-exec, so nothing the
/// process holds leaks into a program it execs. Safe to call anywhere: the
/// flag changes no fd's file and closes nothing, it only keeps fds from
/// surviving execve, and every fd berth opens has it already.
pub fn cloexec_from_raw(first: u32) -> Result<(), i32> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets fd flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    for fd in first as i32..FALLBACK_MAX_FD {
        // SAFETY: F_SETFD only sets a flag; EBADF for closed fds is fine.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Serialises [`take_inherited`]'s check-then-mark.
static CLAIMING: Mutex<()> = Mutex::new(());

/// Takes ownership of an fd this process inherited across execve at a
/// fixed number (3 and up: 0 to 2 belong to std's stdio), and marks it
/// close-on-exec.
///
/// The claim is checked, not trusted: every fd this program opens itself
/// is close-on-exec (std, mio and `sys` all ask for it), so an open fd
/// without the flag can only have come through execve; claiming it sets
/// the flag, so the same number cannot be claimed twice.
pub fn take_inherited(num: RawFd) -> io::Result<OwnedFd> {
    if num < 3 {
        return Err(io::Error::from_raw_os_error(libc::EBADF));
    }
    let _claiming = CLAIMING.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: F_GETFD only reads the fd's flags (EBADF if it is not open).
    let flags = cvt(unsafe { libc::fcntl(num, libc::F_GETFD) })?;
    if flags & libc::FD_CLOEXEC != 0 {
        return Err(io::Error::other("not an inherited fd: it is close-on-exec"));
    }
    // SAFETY: F_SETFD with FD_CLOEXEC only sets a flag.
    cvt(unsafe { libc::fcntl(num, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the fd is open and came through execve (see above); nothing
    // else in this process owns it, and the flag now marks it claimed.
    Ok(unsafe { OwnedFd::from_raw_fd(num) })
}

/// A non-blocking, close-on-exec inotify instance.
pub fn inotify() -> io::Result<OwnedFd> {
    // SAFETY: inotify_init1 takes flags and returns a new fd.
    let fd = cvt(unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Watches `path` for `mask` events on an inotify fd.
pub fn inotify_watch(fd: &impl AsFd, path: &CStr, mask: u32) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    cvt(unsafe { libc::inotify_add_watch(fd.as_fd().as_raw_fd(), path.as_ptr(), mask) })?;
    Ok(())
}

// ---- for the cloned child (see `child`): no allocation, raw errno ----

/// A close-on-exec copy of `fd` numbered `min` or higher, so that the
/// child's fd moves onto low numbers cannot overwrite it.
pub(super) fn dup_at_least(fd: BorrowedFd<'_>, min: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC on an open fd returns a new fd.
    let new = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, min) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// Makes fd number `new` a copy of `old` that survives execve. When they
/// are the same fd, dup2 would do nothing, so close-on-exec is cleared
/// instead.
///
/// # Safety
///
/// Whatever owns fd number `new` in this process (if anything) must never
/// use or close it again: dup2 silently replaces its file.
pub(super) unsafe fn dup2_onto(old: BorrowedFd<'_>, new: RawFd) -> Result<(), i32> {
    let old = old.as_raw_fd();
    let ret = if old == new {
        // SAFETY: F_SETFD with 0 only clears FD_CLOEXEC.
        unsafe { libc::fcntl(new, libc::F_SETFD, 0) }
    } else {
        // SAFETY: `old` is open; the caller gives up whatever owns `new`.
        unsafe { libc::dup2(old, new) }
    };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Closes every fd from `first` upwards, except `keep`.
///
/// # Safety
///
/// Whatever owns the fds closed (every one from `first` up but `keep`)
/// must never use or close them again.
pub(super) unsafe fn close_from_except(
    first: u32,
    keep: Option<BorrowedFd<'_>>,
) -> Result<(), i32> {
    const NONE: (u32, u32) = (1, 0);
    // A raw fd is never negative, so these fit in u32 and never overflow.
    let ranges = match keep.map(|k| k.as_raw_fd() as u32) {
        Some(k) if k > first => [(first, k - 1), (k + 1, u32::MAX)],
        Some(k) if k == first => [(k + 1, u32::MAX), NONE],
        _ => [(first, u32::MAX), NONE],
    };
    for (low, high) in ranges {
        if low > high {
            continue;
        }
        // SAFETY: close_range only changes the fd table; the caller gives
        // up every fd in the range.
        let ret = unsafe { libc::syscall(libc::SYS_close_range, low, high, 0) };
        if ret == 0 {
            continue;
        }
        let end = high.min(FALLBACK_MAX_FD as u32 - 1);
        for fd in low..=end {
            // SAFETY: as above; EBADF for fds that are not open is fine.
            unsafe { libc::close(fd as RawFd) };
        }
    }
    Ok(())
}

/// Whether the reading end of the pipe whose writing end is `fd` has been
/// closed by everyone (poll reports POLLERR): the process that held it is
/// gone.
pub(super) fn reader_gone(fd: BorrowedFd<'_>) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Writes all of `buf`, retrying on EINTR; used with small messages.
pub(super) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let n = unsafe { libc::write(fd.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        if n == -1 {
            let e = super::errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = buf.get(n as usize..).unwrap_or_default();
    }
    Ok(())
}

/// Opens a path with raw flags (O_CLOEXEC is always added).
pub(super) fn open_raw(path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    // SAFETY: `path` is a valid NUL-terminated string; no mode without O_CREAT.
    let fd = unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(super::errno());
    }
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens `path` for writing and writes `data`, for cgroup and proc files.
pub(super) fn write_file_raw(path: &CStr, data: &[u8]) -> Result<(), i32> {
    let fd = open_raw(path, libc::O_WRONLY)?;
    write_all(fd.as_fd(), data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::IntoRawFd;

    #[test]
    fn take_inherited_claims_only_an_fd_without_cloexec_and_only_once() {
        assert!(take_inherited(0).is_err(), "stdio is std's");
        let (r, w) = pipe().unwrap();
        // Everything berth opens is close-on-exec: never claimable.
        let err = take_inherited(r.as_raw_fd()).unwrap_err();
        assert!(err.to_string().contains("close-on-exec"), "{err}");
        // An fd as execve hands it over: no flag, and no owner here.
        let num = w.into_raw_fd();
        // SAFETY: `num` is open and owned by this test, which gives it up.
        assert_eq!(unsafe { libc::fcntl(num, libc::F_SETFD, 0) }, 0);
        let taken = take_inherited(num).unwrap();
        assert_eq!(taken.as_raw_fd(), num);
        assert!(take_inherited(num).is_err(), "claimed twice");
        drop(taken);
        drop(r);
    }

    #[test]
    fn read_and_write_all_through_borrowed_fds() {
        let (r, w) = pipe().unwrap();
        write_all(w.as_fd(), b"hello").unwrap();
        drop(w);
        let mut buf = [0u8; 16];
        assert_eq!(read(&r, &mut buf).unwrap(), 5);
        assert_eq!(&buf[..5], b"hello");
        assert_eq!(read(&r, &mut buf).unwrap(), 0);
    }

    #[test]
    fn reader_gone_sees_a_closed_reading_end() {
        let (r, w) = pipe().unwrap();
        assert!(!reader_gone(w.as_fd()));
        drop(r);
        assert!(reader_gone(w.as_fd()));
    }

    #[test]
    fn dup_at_least_lands_at_or_above_the_minimum() {
        let (r, _w) = pipe().unwrap();
        let copy = dup_at_least(r.as_fd(), 100).unwrap();
        assert!(copy.as_raw_fd() >= 100);
        // SAFETY: F_GETFD only reads the flags of an fd we own.
        let flags = unsafe { libc::fcntl(copy.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    }
}
