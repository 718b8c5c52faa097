//! The harness's only `unsafe` code: the few raw syscalls std does not offer
//! (joining a cgroup between fork and exec, giving a process things to
//! inherit, failing a syscall with ENOSYS or setns on a pidfd with EINVAL
//! as an older kernel would, signalling through a pidfd, detaching a
//! mount, raising the open files limit, making and entering network
//! namespaces). Each wrapper makes one call and turns -1 into
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

/// Makes the spawned process set its umask to `mask` before exec.
#[allow(dead_code)]
pub fn umask_before_exec(cmd: &mut Command, mask: libc::mode_t) {
    // SAFETY: the closure runs between fork and exec and only calls umask,
    // which is async-signal-safe and cannot fail.
    unsafe {
        cmd.pre_exec(move || {
            libc::umask(mask);
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

/// Raises this process's soft limit on open files to its hard limit (for
/// tests that hold many connections); returns the limit now in force.
pub fn raise_open_files() -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    check(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }.into())?;
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: `limit` is a valid rlimit the kernel only reads.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }.into())?;
    Ok(limit.rlim_cur)
}

/// Lazily detaches the mount at `path`.
pub fn umount_detach(path: &Path) -> io::Result<()> {
    let path = c_path(path);
    // SAFETY: a NUL-terminated path that outlives the call.
    check(unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) }.into()).map(drop)
}

/// What a spawned process is made to inherit from whoever started it, set
/// between fork and exec: as if an init system or a shell had started it
/// so (extra groups, inheritable and ambient capabilities, changed
/// limits, an oom_score_adj).
#[derive(Debug, Clone, Default)]
pub struct Inheritance {
    /// Supplementary groups, if they are to be set.
    pub groups: Option<Vec<u32>>,
    /// Capabilities added to the inheritable set (bit N: capability N).
    pub inheritable: u64,
    /// Capabilities raised in the ambient set (each must be inheritable).
    pub ambient: u64,
    /// (RLIMIT_*, soft, hard), u64::MAX for unlimited.
    pub rlimits: Vec<(u32, u64, u64)>,
    pub oom_score_adj: Option<i32>,
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

#[repr(C)]
struct Rlimit64 {
    soft: u64,
    hard: u64,
}

/// Makes the process `cmd` spawns start with `what` (see [`Inheritance`]).
pub fn inherit_before_exec(cmd: &mut Command, what: Inheritance) {
    let oom = what.oom_score_adj.map(|v| v.to_string().into_bytes());
    // SAFETY: the closure runs between fork and exec; it only makes raw
    // system calls on values built before the fork and moved into it, and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(io::Error::last_os_error());
            if let Some(groups) = &what.groups {
                if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0 {
                    return fail();
                }
            }
            for &(resource, soft, hard) in &what.rlimits {
                let limit = Rlimit64 { soft, hard };
                let none = std::ptr::null_mut::<Rlimit64>();
                if libc::syscall(libc::SYS_prlimit64, 0, resource, &limit, none) != 0 {
                    return fail();
                }
            }
            if what.inheritable != 0 {
                let header = CapHeader {
                    version: 0x2008_0522,
                    pid: 0,
                };
                let mut data = [CapData::default(); 2];
                if libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) != 0 {
                    return fail();
                }
                data[0].inheritable |= what.inheritable as u32;
                data[1].inheritable |= (what.inheritable >> 32) as u32;
                if libc::syscall(libc::SYS_capset, &header, data.as_ptr()) != 0 {
                    return fail();
                }
            }
            for cap in (0..64).filter(|c| what.ambient & (1u64 << c) != 0) {
                let raise = libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong;
                if libc::prctl(libc::PR_CAP_AMBIENT, raise, cap as libc::c_ulong, 0, 0) != 0 {
                    return fail();
                }
            }
            if let Some(value) = &oom {
                let fd = libc::open(
                    c"/proc/self/oom_score_adj".as_ptr(),
                    libc::O_WRONLY | libc::O_CLOEXEC,
                );
                if fd < 0 {
                    return fail();
                }
                let written = libc::write(fd, value.as_ptr().cast(), value.len());
                let err = io::Error::last_os_error();
                libc::close(fd);
                if written != value.len() as isize {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

/// Makes system call `nr` fail with ENOSYS in the process `cmd` spawns and
/// everything it starts (a seccomp filter), as on a kernel that predates
/// it.
pub fn without_syscall(cmd: &mut Command, nr: libc::c_long) {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, ARCH),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 0, 1, nr as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    with_filter(cmd, filter.to_vec());
}

/// Installs the seccomp filter `filter` in the process `cmd` spawns, just
/// before its exec (no_new_privs is not needed: tests run as root).
fn with_filter(cmd: &mut Command, filter: Vec<libc::sock_filter>) {
    // SAFETY: the closure runs between fork and exec and only calls prctl
    // with a filter program built before the fork and moved into it.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes setns(2) with more than one namespace flag fail with EINVAL in
/// the process `cmd` spawns and everything it starts (a seccomp filter),
/// as Linux before 5.8 answers setns on a pidfd: one namespace's handle
/// with its own flag still works.
pub fn without_setns_on_a_pidfd(cmd: &mut Command) {
    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xc000_003e; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xc000_00b7; // AUDIT_ARCH_AARCH64
    const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    const TAX: u16 = 0x07; // BPF_MISC | BPF_TAX
    const SUB_K: u16 = 0x14; // BPF_ALU | BPF_SUB | BPF_K
    const AND_X: u16 = 0x5c; // BPF_ALU | BPF_AND | BPF_X
    const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let filter = [
        op(LD_W_ABS, 0, 0, 4), // seccomp_data.arch
        op(JEQ_K, 1, 0, ARCH),
        op(RET_K, 0, 0, ALLOW),
        op(LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        op(JEQ_K, 1, 0, libc::SYS_setns as u32),
        op(RET_K, 0, 0, ALLOW),
        op(LD_W_ABS, 0, 0, 24), // the low half of args[1], the flags
        op(TAX, 0, 0, 0),
        op(SUB_K, 0, 0, 1),
        op(AND_X, 0, 0, 0), // flags & (flags - 1): 0 for at most one bit
        op(JEQ_K, 0, 1, 0),
        op(RET_K, 0, 0, ALLOW),
        op(RET_K, 0, 0, libc::SECCOMP_RET_ERRNO | libc::EINVAL as u32),
    ];
    with_filter(cmd, filter.to_vec());
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

/// Makes the spawned process unshare its network namespace before exec:
/// it starts in a new one, with only a `lo` that is down.
pub fn new_net_namespace_before_exec(cmd: &mut Command) {
    // SAFETY: the closure runs between fork and exec and only calls
    // unshare, which takes a flag and touches no memory.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Makes the spawned process join the network namespace `ns` (an open
/// /proc/PID/ns/net or a bind mount of one) before exec.
pub fn join_net_namespace_before_exec(cmd: &mut Command, ns: OwnedFd) {
    // SAFETY: the closure runs between fork and exec and only calls setns
    // on an fd opened before the fork and moved into it (CLOEXEC, so exec
    // closes it).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Moves the calling thread into the network namespace `ns` (network
/// namespaces are per thread: the others stay where they are).
pub fn join_net_namespace(ns: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: setns takes an fd and a flag and touches no memory.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }.into()).map(drop)
}

/// CLOCK_MONOTONIC now, in nanoseconds.
#[allow(dead_code)]
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The time a spawned process was about to exec, which it writes into a
/// pipe as its last pre-exec step (see [`note_exec_time`]).
#[allow(dead_code)]
pub struct ExecClock {
    read: std::fs::File,
    write: OwnedFd,
}

#[allow(dead_code)]
impl ExecClock {
    /// CLOCK_MONOTONIC (ns) at the exec; call it once the spawn returned.
    pub fn time(self) -> u64 {
        let ExecClock { mut read, write } = self;
        // The child holds the only other copy: EOF, not a hang, if it
        // never wrote.
        drop(write);
        let mut bytes = [0u8; 8];
        io::Read::read_exact(&mut read, &mut bytes).expect("the spawned process's exec time");
        u64::from_ne_bytes(bytes)
    }
}

/// Makes the spawned process write CLOCK_MONOTONIC (8 bytes) into a pipe
/// just before its exec. Register it after every other pre-exec step, so
/// that the time is the exec's.
#[allow(dead_code)]
pub fn note_exec_time(cmd: &mut Command) -> ExecClock {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two fds it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", io::Error::last_os_error());
    // SAFETY: both fds were just made and are owned here.
    let (read, write) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            OwnedFd::from_raw_fd(fds[1]),
        )
    };
    let fd = write.as_raw_fd();
    // SAFETY: the closure runs between fork and exec and only makes the
    // async-signal-safe calls clock_gettime and write, on an fd that
    // `ExecClock` keeps open until the spawn returned.
    unsafe {
        cmd.pre_exec(move || {
            let bytes = monotonic_ns().to_ne_bytes();
            if libc::write(fd, bytes.as_ptr().cast(), bytes.len()) != bytes.len() as isize {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    ExecClock { read, write }
}

/// The CPU time `pid` has had (/proc/PID/schedstat, nanoseconds on a
/// CPU): less bent by a busy machine than the time on the clock.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    let text = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_nanos(ns)
}
