//! Signals: the mask, dispositions, and signalfd.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

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
pub fn read_signalfd(fd: &impl AsFd) -> io::Result<Option<i32>> {
    // SAFETY: an all-zero signalfd_siginfo is valid storage.
    let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: `info` is valid for writes of `size` bytes.
    let n = unsafe {
        libc::read(
            fd.as_fd().as_raw_fd(),
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

/// Sets a signal's default disposition back and raises it: the client
/// ends by SIGPIPE, as a pipeline's writer does, when the reader of its
/// stdout is gone (`berth ps | head -1`).
pub fn raise_default(sig: i32) -> io::Result<()> {
    // SAFETY: SIG_DFL is a valid disposition; no handler code is involved.
    if unsafe { libc::signal(sig, libc::SIG_DFL) } == libc::SIG_ERR {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: raise takes a plain signal number and touches no memory.
    if unsafe { libc::raise(sig) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Every signal, 1 to 64, as the kernel's 8-byte mask.
const ALL: u64 = u64::MAX;

/// Blocks every signal (SIGKILL and SIGSTOP cannot be), real-time ones
/// included, so that each one queues until [`wait_any`] takes it.
pub fn block_all() -> io::Result<()> {
    // SAFETY: an 8-byte mask; the old mask is not wanted.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &ALL as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    cvt(ret)?;
    Ok(())
}

/// Waits for any blocked signal and takes it off the queue: its number.
pub fn wait_any() -> io::Result<i32> {
    loop {
        // SAFETY: an 8-byte mask; no siginfo or timeout is wanted.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_rt_sigtimedwait,
                &ALL as *const u64,
                std::ptr::null_mut::<libc::siginfo_t>(),
                std::ptr::null::<libc::timespec>(),
                8usize,
            )
        };
        match cvt(ret) {
            Ok(sig) => return Ok(sig as i32),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

// ---- for the cloned child (see `child`): no allocation, raw errno ----

/// The kernel's `struct sigaction` (x86_64, aarch64 and 32-bit arm alike:
/// handler, flags, restorer, mask): the flags are a C long and the 64-bit
/// mask is two words, so 32-bit arm gets its 20 bytes without padding.
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: libc::c_ulong,
    restorer: usize,
    mask: [u32; 2],
}

// No padding anywhere: the kernel reads three C longs, then the mask.
const _: () = assert!(
    std::mem::offset_of!(KernelSigaction, mask) == 3 * std::mem::size_of::<libc::c_ulong>()
        && std::mem::size_of::<KernelSigaction>() == 3 * std::mem::size_of::<libc::c_ulong>() + 8
);

/// Unblocks every signal and resets every disposition, 1 to 64, to its
/// default, so the exec'd program starts as if from a clean init: a
/// container that inherited the daemon's mask would ignore SIGTERM. Raw
/// rt_sigaction reaches the real-time signals the C library keeps for
/// itself, which its `signal()` refuses.
/// Adds `sig` to the blocked signals; for a child after fork.
pub(super) fn block_raw(sig: i32) -> Result<(), i32> {
    let mask: u64 = 1 << (sig - 1);
    // SAFETY: an 8-byte mask; the old mask is not wanted.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_BLOCK,
            &mask as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

pub(super) fn reset_all_raw() -> Result<(), i32> {
    let default = KernelSigaction {
        handler: 0, // SIG_DFL
        flags: 0,
        restorer: 0,
        mask: [0; 2],
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `default` is a kernel sigaction of the size the kernel
        // expects with an 8-byte mask; no handler code is installed.
        unsafe {
            libc::syscall(
                libc::SYS_rt_sigaction,
                sig,
                &default as *const KernelSigaction,
                std::ptr::null_mut::<KernelSigaction>(),
                8usize,
            )
        };
    }
    let empty: u64 = 0;
    // SAFETY: an 8-byte empty mask; the old mask is not wanted.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &empty as *const u64,
            std::ptr::null_mut::<u64>(),
            8usize,
        )
    };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}
