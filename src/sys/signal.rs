//! Signals: the mask, dispositions, and signalfd.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::cvt;

fn sigset(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset fills it.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is valid for writes.
    unsafe { libc::sigemptyset(&mut set) };
    for &sig in signals {
        // SAFETY: `set` is a valid initialised sigset.
        unsafe { libc::sigaddset(&mut set, sig) };
    }
    set
}

/// Blocks `signals` in this (single) thread so they queue for a signalfd.
pub fn block(signals: &[i32]) -> io::Result<()> {
    let set = sigset(signals);
    // SAFETY: `set` is a valid sigset; the old mask is not wanted.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret));
    }
    Ok(())
}

/// A non-blocking, close-on-exec signalfd for `signals` (already blocked).
pub fn signalfd(signals: &[i32]) -> io::Result<OwnedFd> {
    let set = sigset(signals);
    // SAFETY: -1 asks for a new fd; `set` is a valid sigset.
    let fd = cvt(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Reads one pending signal from a signalfd; `None` when none is queued.
pub fn read_signalfd(fd: &impl AsRawFd) -> io::Result<Option<i32>> {
    // SAFETY: an all-zero signalfd_siginfo is valid storage.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_raw_fd(),
            (&mut info as *mut libc::signalfd_siginfo).cast(),
            size,
        )
    };
    if n == -1 {
        let err = io::Error::last_os_error();
        if err.kind() == io::ErrorKind::WouldBlock {
            return Ok(None);
        }
        return Err(err);
    }
    if n as usize != size {
        return Err(io::Error::other("short read from signalfd"));
    }
    Ok(Some(info.ssi_signo as i32))
}

/// Sets a signal to be ignored (SIGPIPE, so writes to a gone peer fail
/// with EPIPE instead of killing the process).
pub fn ignore(sig: i32) -> io::Result<()> {
    // SAFETY: SIG_IGN is a valid disposition; no handler code is involved.
    if unsafe { libc::signal(sig, libc::SIG_IGN) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

// ---- for the code between clone and exec: no allocation, raw errno ----

/// Unblocks every signal and resets every disposition to its default, so
/// the exec'd program starts as if from a clean init: a container that
/// inherited the daemon's mask would ignore SIGTERM.
pub fn reset_all_raw() -> Result<(), i32> {
    for sig in 1..libc::SIGRTMAX() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition. Numbers the C
        // library reserves fail with EINVAL, which is fine to ignore.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: an all-zero sigset_t is valid storage; sigemptyset fills it.
    let mut empty: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `empty` is valid for writes.
    unsafe { libc::sigemptyset(&mut empty) };
    // SAFETY: `empty` is a valid sigset.
    let ret = unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut()) };
    if ret != 0 {
        return Err(ret);
    }
    Ok(())
}
