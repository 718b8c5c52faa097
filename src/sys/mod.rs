//! The only unsafe code in berth: thin wrappers over Linux system calls.
//!
//! One module per kernel facility. Each wrapper makes one system call, says
//! why it is sound in a `// SAFETY:` comment, turns a -1 return into
//! `io::Error` through [`cvt`], and returns owned fds or typed values.

#![allow(unsafe_code)]

pub mod bpf;
pub mod cap;
pub mod child;
pub mod dm;
pub mod fd;
pub mod inotify;
pub mod loopdev;
pub mod mount;
pub mod netlink;
pub mod ns;
pub mod process;
pub mod pty;
pub mod resolve;
pub mod seccomp;
pub mod signal;
pub mod socket;

use std::io;

/// Turns a C-style return value into a `Result`: -1 becomes the current
/// `errno`, anything else is passed through.
pub fn cvt<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The raw `errno` of the last failed call, for the cloned child, which
/// must not allocate.
pub fn errno() -> i32 {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EIO)
}
