//! File descriptors: pipes, socket pairs, duplication, close-on-exec and the
//! few raw reads and writes the code between clone and exec needs.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
pub fn set_nonblocking(fd: &impl AsRawFd, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL on an fd the caller owns has no memory effects.
    let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    let flags = if on {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: F_SETFL with plain flags has no memory effects.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags) })?;
    Ok(())
}

/// Grows a pipe's buffer (best effort: the caller decides what failure means).
pub fn set_pipe_size(fd: &impl AsRawFd, size: i32) -> io::Result<i32> {
    // SAFETY: F_SETPIPE_SZ takes an int and has no memory effects.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, size) })
}

/// Opens a path with raw flags (O_CLOEXEC is always added).
pub fn open(path: &CStr, flags: i32, mode: libc::mode_t) -> io::Result<OwnedFd> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = cvt(unsafe { libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Takes an exclusive, non-blocking `flock` on the file; the lock lives as
/// long as the fd.
pub fn try_lock(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: flock on an owned fd has no memory effects.
    cvt(unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) })?;
    Ok(())
}

// ---- for the code between clone and exec: no allocation, raw errno ----

/// Makes `new` a copy of `old` that survives execve. When they are the
/// same fd, dup2 would do nothing, so close-on-exec is cleared instead.
pub fn dup2_raw(old: RawFd, new: RawFd) -> Result<(), i32> {
    let ret = if old == new {
        // SAFETY: F_SETFD with 0 only clears FD_CLOEXEC.
        unsafe { libc::fcntl(new, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 only manipulates the fd table.
        unsafe { libc::dup2(old, new) }
    };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Fds above this are not looked at by the fallbacks below (kernels before
/// 5.11 have no CLOSE_RANGE_CLOEXEC).
const FALLBACK_MAX_FD: i32 = 65_536;

/// Marks every fd from `first` upwards close-on-exec, so nothing the parent
/// held leaks into the exec'd program.
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

/// Closes every fd from `first` upwards.
pub fn close_from_raw(first: u32) -> Result<(), i32> {
    // SAFETY: close_range only manipulates the fd table; the caller owns
    // every fd in the range and uses none of them afterwards.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    if ret == 0 {
        return Ok(());
    }
    for fd in first as i32..FALLBACK_MAX_FD {
        // SAFETY: as above; EBADF for fds that are not open is fine.
        unsafe { libc::close(fd) };
    }
    Ok(())
}

/// Whether the reading end of the pipe whose writing end is `fd` has been
/// closed by everyone (poll reports POLLERR): the process that held it is
/// gone.
pub fn reader_gone_raw(fd: RawFd) -> bool {
    let mut p = libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no waiting.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 1 && p.revents & libc::POLLERR != 0
}

/// Closes a raw fd this process owns and will not use again (between clone
/// and exec, where the owner's copy lives on in the parent).
pub fn close_raw(fd: RawFd) {
    // SAFETY: the caller owns `fd` in this process and never uses it again.
    unsafe { libc::close(fd) };
}

/// Writes all of `buf`, retrying on EINTR; used with small messages.
pub fn write_all_raw(fd: RawFd, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid slice for its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n == -1 {
            let e = super::errno();
            if e == libc::EINTR {
                continue;
            }
            return Err(e);
        }
        buf = &buf[n as usize..];
    }
    Ok(())
}

/// Opens `path` for writing and writes `data`, for cgroup and proc files
/// between clone and exec.
pub fn write_file_raw(path: &CStr, data: &[u8]) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(super::errno());
    }
    let res = write_all_raw(fd, data);
    // SAFETY: `fd` was opened above and is not used again.
    unsafe { libc::close(fd) };
    res
}

/// Reads into `buf`, retrying on EINTR: the count read, 0 at end of file.
pub fn read_raw(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
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

/// Takes ownership of an fd this process inherited at a fixed number,
/// after checking it is open, and marks it close-on-exec.
pub fn take_inherited(num: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_GETFD only checks that the fd is open.
    cvt(unsafe { libc::fcntl(num, libc::F_GETFD) })?;
    // SAFETY: F_SETFD with FD_CLOEXEC only sets a flag.
    cvt(unsafe { libc::fcntl(num, libc::F_SETFD, libc::FD_CLOEXEC) })?;
    // SAFETY: the fd is open and, by the calling convention, ours alone.
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
pub fn inotify_watch(fd: &impl AsRawFd, path: &CStr, mask: u32) -> io::Result<()> {
    // SAFETY: `path` is a valid NUL-terminated string.
    cvt(unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) })?;
    Ok(())
}
