//! The harness's only `unsafe` code: the few raw syscalls std does not offer
//! (joining a cgroup between fork and exec, signalling through a pidfd,
//! detaching a mount). Each wrapper makes one call and turns -1 into
//! `io::Error`.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn c_path(path: &Path) -> CString {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).expect("path without NUL bytes")
}

/// Makes the spawned process write "0" to `procs` (a `cgroup.procs` file)
/// before exec, so it starts inside that cgroup and everything it forks
/// stays findable there.
pub fn join_cgroup_before_exec(cmd: &mut Command, procs: &Path) {
    let procs = c_path(procs);
    // SAFETY: the closure runs between fork and exec; it only makes the
    // async-signal-safe calls open, write and close on a path built before
    // the fork, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            let err = io::Error::last_os_error();
            libc::close(fd);
            if written != 1 {
                return Err(err);
            }
            Ok(())
        });
    }
}

/// A pidfd for `pid`, or an error (ESRCH once it is gone).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = check(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `signal` to the process behind `pidfd`.
pub fn pidfd_send_signal(pidfd: &OwnedFd, signal: i32) -> io::Result<()> {
    // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
    check(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })
    .map(drop)
}

/// Sends `signal` to `pid`. Only for children this process has not reaped
/// yet: their pid cannot be reused before the reap.
pub fn kill_child(pid: u32, signal: i32) -> io::Result<()> {
    let pid = i32::try_from(pid).expect("pid fits in pid_t");
    // SAFETY: kill takes a pid and a signal number and touches no memory.
    check(unsafe { libc::kill(pid, signal) }.into()).map(drop)
}

/// Lazily detaches the mount at `path`.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: a NUL-terminated path that outlives the call.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }.into()).map(drop)
}

/// Mounts a tmpfs at `target` with `options` (e.g. "size=1m"); the world's
/// teardown detaches it.
pub fn mount_tmpfs(target: &Path, options: &str) -> io::Result<()> {
    let target = c_path(target);
    let options = CString::new(options).expect("options without NUL bytes");
    // SAFETY: NUL-terminated strings that outlive the call; tmpfs takes a
    // text option string as data.
    check(
        unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV,
                options.as_ptr().cast(),
            )
        }
        .into(),
    )
    .map(drop)
}
