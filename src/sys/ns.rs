//! Namespaces and what lives in them: unshare, hostname, the loopback link.
//! Everything here but [`unshare`] runs in the cloned child (see `child`):
//! no allocation, raw errno.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub(super) fn unshare_raw(flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

pub(super) fn sethostname_raw(name: &CStr) -> Result<(), i32> {
    let bytes = name.to_bytes();
    // SAFETY: `bytes` is valid for its length.
    if unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Sets IFF_UP on "lo" in the current network namespace.
pub(super) fn loopback_up_raw() -> Result<(), i32> {
    // SAFETY: socket takes plain arguments and returns a new fd.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock == -1 {
        return Err(super::errno());
    }
    // SAFETY: the fd is new and owned by nobody else; dropping it closes it.
    let sock = unsafe { OwnedFd::from_raw_fd(sock) };
    // SAFETY: an all-zero ifreq is valid storage.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills flags.
    let mut ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) };
    if ret != -1 {
        // SAFETY: the union member ifru_flags was just filled by the kernel.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: `req` is valid; SIOCSIFFLAGS reads it.
        ret = unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) };
    }
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// setns(2), for the child: with a pidfd, joins every namespace in
/// `namespaces` (CLONE_NEW* flags) of the process behind it at once (Linux
/// 5.8 and later); with a namespace's handle, joins that one.
pub(super) fn setns_raw(
    fd: std::os::fd::BorrowedFd<'_>,
    namespaces: libc::c_int,
) -> Result<(), i32> {
    // SAFETY: setns takes an fd, open for the call, and flags.
    if unsafe { libc::setns(fd.as_raw_fd(), namespaces) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// setns(2) for the monitor: joins the namespace `ns` is a handle of
/// (`kind`: its CLONE_NEW* flag).
pub fn setns(ns: std::os::fd::BorrowedFd<'_>, kind: libc::c_int) -> std::io::Result<()> {
    // SAFETY: setns takes an fd, open for the call, and flags.
    super::cvt(unsafe { libc::setns(ns.as_raw_fd(), kind) }).map(drop)
}

/// unshare(2) for the monitor: an `io::Error`.
pub fn unshare(flags: libc::c_int) -> std::io::Result<()> {
    unshare_raw(flags).map_err(std::io::Error::from_raw_os_error)
}

/// Whether setns(2) takes a pidfd (Linux 5.8): asked by joining, through
/// a pidfd of this process, the UTS and network namespaces this thread is
/// in already, which changes nothing. A kernel without it refuses the fd
/// as no namespace's (EINVAL) before looking at anything else; one with
/// it succeeds, or refuses a caller without CAP_SYS_ADMIN (EPERM).
pub fn setns_takes_pidfd() -> bool {
    let Ok(me) = super::process::pidfd_open(super::process::getpid()) else {
        return false;
    };
    let flags = libc::CLONE_NEWUTS | libc::CLONE_NEWNET;
    // SAFETY: setns takes an fd, open for the call, and flags.
    let ret = unsafe { libc::setns(me.as_raw_fd(), flags) };
    ret == 0 || super::errno() != libc::EINVAL
}

#[cfg(test)]
mod tests {
    #[test]
    fn setns_takes_a_pidfd_from_linux_5_8() {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        let mut numbers = release
            .split(|c: char| !c.is_ascii_digit())
            .map(|n| n.parse::<u32>().unwrap_or(0));
        let version = (numbers.next().unwrap(), numbers.next().unwrap());
        assert_eq!(super::setns_takes_pidfd(), version >= (5, 8), "{release}");
    }
}
