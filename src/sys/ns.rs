//! Namespaces and what lives in them: unshare, hostname, the loopback link.
//! Everything here runs between clone and exec: no allocation, raw errno.

use std::ffi::CStr;

pub fn unshare_raw(flags: libc::c_int) -> Result<(), i32> {
    // SAFETY: unshare takes flags only.
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

pub fn sethostname_raw(name: &CStr) -> Result<(), i32> {
    let bytes = name.to_bytes();
    // SAFETY: `bytes` is valid for its length.
    if unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Sets IFF_UP on "lo" in the current network namespace.
pub fn loopback_up_raw() -> Result<(), i32> {
    // SAFETY: socket takes plain arguments and returns a new fd.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock == -1 {
        return Err(super::errno());
    }
    // SAFETY: an all-zero ifreq is valid storage.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills flags.
    let mut ret = unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS as _, &mut req) };
    if ret != -1 {
        // SAFETY: the union member ifru_flags was just filled by the kernel.
        unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
        // SAFETY: `req` is valid; SIOCSIFFLAGS reads it.
        ret = unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS as _, &req) };
    }
    let err = if ret == -1 {
        Some(super::errno())
    } else {
        None
    };
    // SAFETY: `sock` was opened above and is not used again.
    unsafe { libc::close(sock) };
    err.map_or(Ok(()), Err)
}
