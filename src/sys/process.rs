//! Processes: clone3 (with a fork-like fallback), pidfds, reaping, exec,
//! and the argv and envp arrays execve takes.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// The kernel's `struct clone_args` (clone3), version 2 (with cgroup).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What [`clone_raw`] returned.
pub(super) enum Forked {
    /// In the parent: the child's pid and a pidfd for it.
    Parent { pid: i32, pidfd: OwnedFd },
    /// In the child.
    Child,
}

/// clone3's flag to create the child directly in the cgroup2 directory
/// given by fd (Linux 5.7).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Creates a child process like fork(2), in new namespaces given by
/// `ns_flags` (CLONE_NEW*), with a pidfd for the parent and SIGCHLD as exit
/// signal, and (if `cgroup` is given) born in that cgroup2 directory, which
/// spares the costly move of a running task. Uses clone3; on kernels
/// without it (ENOSYS) and no `cgroup` asked for, falls back to clone with
/// CLONE_PIDFD, which needs no stack for a fork-like child.
///
/// # Safety
///
/// `ns_flags` may hold CLONE_NEW* flags and CLONE_PARENT only: a flag
/// that shares memory or
/// the thread group (CLONE_VM, CLONE_THREAD, ...) with a child running on a
/// copy of this stack would corrupt both. In the child (`Forked::Child`),
/// the caller may only make async-signal-safe calls (the parent may have
/// other threads, whose locks the child inherits held): no allocation, no
/// locks, no destructors that do more than close an fd. The child must end
/// in execve or `_exit` and never return into code that would go on as the
/// parent.
pub(super) unsafe fn clone_raw(
    ns_flags: u64,
    cgroup: Option<BorrowedFd<'_>>,
) -> io::Result<Forked> {
    let mut pidfd: libc::c_int = -1;
    let mut args = CloneArgs {
        flags: ns_flags | libc::CLONE_PIDFD as u64,
        pidfd: &mut pidfd as *mut libc::c_int as u64,
        // With CLONE_PARENT the child signals its parent as this process
        // does, and clone3 wants no exit signal of its own.
        exit_signal: if ns_flags & libc::CLONE_PARENT as u64 != 0 {
            0
        } else {
            libc::SIGCHLD as u64
        },
        ..CloneArgs::default()
    };
    if let Some(dir) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = dir.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid clone_args of the size passed; with no stack
    // the child runs on a copy of this stack, like fork. What the child
    // may do is the caller's obligation (see above).
    let mut ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &mut args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if ret == -1 && super::errno() == libc::ENOSYS && cgroup.is_none() {
        // SAFETY: raw clone with a null stack behaves like fork. x86_64
        // takes (flags, stack, parent_tid, child_tid, tls), aarch64 and
        // arm (flags, stack, parent_tid, tls, child_tid); the last two are
        // zero here, so one call fits all. CLONE_PIDFD stores the fd at
        // parent_tid.
        ret = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (ns_flags as libc::c_ulong)
                    | libc::CLONE_PIDFD as libc::c_ulong
                    | libc::SIGCHLD as libc::c_ulong,
                std::ptr::null_mut::<libc::c_void>(),
                &mut pidfd as *mut libc::c_int,
                std::ptr::null_mut::<libc::c_int>(),
                0usize,
            )
        };
    }
    let pid = cvt(ret)?;
    if pid == 0 {
        return Ok(Forked::Child);
    }
    // SAFETY: CLONE_PIDFD made the kernel store a new fd we now own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Forked::Parent {
        pid: pid as i32,
        pidfd,
    })
}

/// The length of a clock tick (the unit of start times in /proc/PID/stat)
/// in nanoseconds; 0 if unknown.
pub fn clock_tick_ns() -> u64 {
    // SAFETY: sysconf takes a constant and returns a number.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { 1_000_000_000 / hz as u64 } else { 0 }
}

/// A pidfd for an existing process (not necessarily a child).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd.
    let fd = cvt(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Sends `sig` to the process behind the pidfd: never to a reused pid.
pub fn pidfd_send_signal(pidfd: &impl AsFd, sig: i32) -> io::Result<()> {
    // SAFETY: a null siginfo means "as kill(2) would"; no memory is passed.
    cvt(unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_fd().as_raw_fd(),
            sig,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    })?;
    Ok(())
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled(i32),
}

impl ExitStatus {
    /// The shell's convention: the code, or 128 + the signal.
    pub fn code(self) -> i32 {
        match self {
            ExitStatus::Exited(c) => c,
            ExitStatus::Signaled(s) => 128 + s,
        }
    }
}

/// Reaps the child behind `pidfd` if it has exited: `Ok(None)` while it
/// runs (WNOHANG), ECHILD if it is not our child.
pub fn waitid_pidfd(pidfd: &impl AsFd, block: bool) -> io::Result<Option<ExitStatus>> {
    // SAFETY: an all-zero siginfo_t is a valid value to be filled in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | if block { 0 } else { libc::WNOHANG };
    loop {
        // SAFETY: `info` is valid for writes; P_PIDFD takes the fd as id.
        let ret = unsafe {
            libc::waitid(
                libc::P_PIDFD,
                pidfd.as_fd().as_raw_fd() as libc::id_t,
                &mut info,
                flags,
            )
        };
        if ret == -1 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        break;
    }
    // SAFETY: waitid filled `info` for a CLD_* event (or left pid 0).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(if info.si_code == libc::CLD_EXITED {
        ExitStatus::Exited(status)
    } else {
        ExitStatus::Signaled(status)
    }))
}

/// Kills child `pid` of this process with SIGKILL and reaps it. Only for
/// a child not reaped yet, whose pid cannot name another process, and
/// when no pidfd of it could be had.
pub fn kill_and_reap_child(pid: i32) {
    if pid <= 0 {
        return;
    }
    // SAFETY: kill takes plain arguments; `pid` is our unreaped child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to.
        let ret = unsafe { libc::waitpid(pid, &mut status, libc::__WALL) };
        if ret == -1 && super::errno() == libc::EINTR {
            continue;
        }
        return;
    }
}

/// Reaps any exited child without blocking; `None` when there is none.
pub fn reap_any() -> Option<i32> {
    let mut status = 0;
    // SAFETY: `status` is a valid int to write to.
    let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (pid > 0).then_some(pid)
}

/// Reaps any exited child without blocking, with how it ended; `None`
/// when none has (or there is no child at all).
pub fn reap_any_status() -> Option<(i32, ExitStatus)> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid == -1 && super::errno() == libc::EINTR {
            continue;
        }
        if pid <= 0 {
            return None;
        }
        let how = if libc::WIFEXITED(status) {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        } else {
            ExitStatus::Signaled(libc::WTERMSIG(status))
        };
        return Some((pid, how));
    }
}

pub fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

pub fn getpid() -> i32 {
    // SAFETY: getpid cannot fail and touches no memory.
    unsafe { libc::getpid() }
}

/// Sets the file mode creation mask; returns the one before.
pub fn set_umask(mask: u32) -> u32 {
    // SAFETY: umask cannot fail and touches no memory.
    unsafe { libc::umask(mask as libc::mode_t) as u32 }
}

/// Raises the soft limit on open files to `wanted`, or to the hard limit
/// if that is lower; never lowers it. Returns the limit now in force.
pub fn raise_open_files_limit(wanted: u64) -> io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit for the kernel to fill.
    cvt(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) })?;
    let target = limit.rlim_max.min(wanted as libc::rlim_t);
    if limit.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: `raised` is a valid rlimit the kernel only reads.
        cvt(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) })?;
        limit = raised;
    }
    // rlim_t is 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    Ok(limit.rlim_cur as u64)
}

/// A random u64 from the kernel (getrandom).
pub fn random_u64() -> io::Result<u64> {
    let mut buf = [0u8; 8];
    // SAFETY: `buf` is valid for writes of its length.
    let n = cvt(unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), 0) })?;
    if n != 8 {
        return Err(io::Error::other("short read from getrandom"));
    }
    Ok(u64::from_ne_bytes(buf))
}

/// A NULL-terminated array of pointers to C strings it owns, as execve
/// takes for argv and envp. The pointers stay valid for as long as the
/// array lives: each string's bytes are on the heap and never change.
struct CStrArray {
    _strings: Vec<CString>,
    ptrs: Vec<*const libc::c_char>,
}

impl CStrArray {
    fn new(strings: Vec<CString>) -> CStrArray {
        let mut ptrs: Vec<*const libc::c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        CStrArray {
            _strings: strings,
            ptrs,
        }
    }
}

/// A program's arguments, ready for execve.
pub struct Argv(CStrArray);

impl Argv {
    pub fn new(args: Vec<CString>) -> Argv {
        Argv(CStrArray::new(args))
    }

    pub fn strings(&self) -> &[CString] {
        &self.0._strings
    }
}

/// A program's environment (`KEY=value` strings), ready for execve.
pub struct Envp(CStrArray);

impl Envp {
    pub fn new(vars: Vec<CString>) -> Envp {
        Envp(CStrArray::new(vars))
    }

    pub fn strings(&self) -> &[CString] {
        &self.0._strings
    }
}

// ---- for the cloned child (see `child`): no allocation, raw errno ----

pub(super) fn setsid_raw() -> Result<(), i32> {
    // SAFETY: setsid takes no arguments.
    if unsafe { libc::setsid() } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Has the kernel send `sig` to this process when its parent dies.
pub(super) fn set_parent_death_signal_raw(sig: i32) -> Result<(), i32> {
    // SAFETY: PR_SET_PDEATHSIG takes a signal number.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig as libc::c_ulong) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// `execve`; returns only on failure, with errno.
pub(super) fn execve(path: &CStr, argv: &Argv, envp: &Envp) -> i32 {
    // SAFETY: `path` is a valid NUL-terminated string; argv and envp are
    // NULL-terminated arrays of pointers to strings they own.
    unsafe { libc::execve(path.as_ptr(), argv.0.ptrs.as_ptr(), envp.0.ptrs.as_ptr()) };
    super::errno()
}

/// `execveat(fd, "", ...)` with AT_EMPTY_PATH: runs the program file open
/// at `fd`; returns only on failure, with errno.
pub(super) fn execveat_fd(fd: BorrowedFd<'_>, argv: &Argv, envp: &Envp) -> i32 {
    // SAFETY: the path is an empty NUL-terminated string; argv and envp are
    // NULL-terminated arrays of pointers to strings they own.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            fd.as_raw_fd(),
            c"".as_ptr(),
            argv.0.ptrs.as_ptr(),
            envp.0.ptrs.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    super::errno()
}

/// Ends the process at once, without running any Rust or libc exit code.
pub(super) fn exit_raw(code: i32) -> ! {
    // SAFETY: _exit never returns and needs no cleanup from us.
    unsafe { libc::_exit(code) }
}

pub(super) fn chdir_raw(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    if unsafe { libc::chdir(path.as_ptr()) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Makes `args` this process's command line as /proc/PID/cmdline (and so
/// ps) shows it: a process started before it knew what it would be for
/// (a spare monitor) names its purpose once it knows. The words are
/// copied into memory kept for the life of the process, and the kernel
/// is given the process's memory map with only the command line's bounds
/// changed (PR_SET_MM_MAP, which needs no privilege when the executable
/// stays the same).
pub fn set_cmdline(args: &[&str]) -> io::Result<()> {
    let mut text = Vec::new();
    for a in args {
        if a.as_bytes().contains(&0) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        text.extend_from_slice(a.as_bytes());
        text.push(0);
    }
    // The map as it is: /proc/self/stat fields 26 to 28 and 45 to 51
    // (counted from 1; the fields after the command's ")" start at 3).
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| io::Error::other("no ')' in /proc/self/stat"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |n: usize| -> io::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| io::Error::other(format!("no field {n} in /proc/self/stat")))
    };
    // SAFETY: brk(0) only reads the current program break.
    let brk = unsafe { libc::syscall(libc::SYS_brk, 0) } as u64;
    let text: &'static [u8] = Box::leak(text.into_boxed_slice());
    let map = MmMap {
        start_code: field(26)?,
        end_code: field(27)?,
        start_data: field(45)?,
        end_data: field(46)?,
        start_brk: field(47)?,
        brk,
        start_stack: field(28)?,
        arg_start: text.as_ptr() as u64,
        arg_end: text.as_ptr() as u64 + text.len() as u64,
        env_start: field(50)?,
        env_end: field(51)?,
        tail: MM_MAP_TAIL,
    };
    // SAFETY: `map` is a prctl_mm_map of the size passed, read by the
    // kernel during the call; the command line it points at is leaked
    // above, so it stays for the life of the process.
    let whole = cvt(unsafe {
        libc::prctl(
            libc::PR_SET_MM,
            libc::PR_SET_MM_MAP as libc::c_ulong,
            &map as *const MmMap as libc::c_ulong,
            std::mem::size_of::<MmMap>() as libc::c_ulong,
            0 as libc::c_ulong,
        )
    });
    if whole.is_ok() {
        return Ok(());
    }
    // Kernels without CONFIG_CHECKPOINT_RESTORE (and a 32-bit process on
    // a 64-bit kernel) take the bounds one by one instead, with
    // CAP_SYS_RESOURCE: the start first (the words lie below the stack's).
    let set = |what: libc::c_int, addr: u64| {
        // SAFETY: as above; PR_SET_MM only records the address.
        cvt(unsafe {
            libc::prctl(
                libc::PR_SET_MM,
                what as libc::c_ulong,
                addr as libc::c_ulong,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            )
        })
    };
    set(libc::PR_SET_MM_ARG_START, map.arg_start)
        .and_then(|_| set(libc::PR_SET_MM_ARG_END, map.arg_end))
        .map(drop)
        .or(whole.map(drop))
}

/// struct prctl_mm_map (linux/prctl.h), its last fields (`auxv`, a
/// pointer, `auxv_size` and `exe_fd`) as four u32s: no auxiliary vector,
/// and exe_fd -1 (the executable stays).
#[repr(C)]
struct MmMap {
    start_code: u64,
    end_code: u64,
    start_data: u64,
    end_data: u64,
    start_brk: u64,
    brk: u64,
    start_stack: u64,
    arg_start: u64,
    arg_end: u64,
    env_start: u64,
    env_end: u64,
    tail: [u32; 4],
}

/// A null 8-byte `auxv`, `auxv_size` 0, `exe_fd` -1.
#[cfg(target_pointer_width = "64")]
const MM_MAP_TAIL: [u32; 4] = [0, 0, 0, u32::MAX];
/// A null 4-byte `auxv`, `auxv_size` 0, `exe_fd` -1, then the padding to
/// 8 bytes. (A 64-bit kernel running this 32-bit process reads its own
/// layout here: an `auxv_size` with no `auxv`, which it refuses.)
#[cfg(target_pointer_width = "32")]
const MM_MAP_TAIL: [u32; 4] = [0, 0, u32::MAX, u32::MAX];

// The kernel takes the struct only at exactly its own size.
const _: () = assert!(std::mem::size_of::<MmMap>() == 104);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_can_rename_its_command_line() {
        // In this test process itself (a forked child would hold copies
        // of the other tests' fds), which gets its own words back after.
        let before = std::fs::read("/proc/self/cmdline").unwrap();
        let words: Vec<String> = before
            .split(|&b| b == 0)
            .filter(|w| !w.is_empty())
            .map(|w| String::from_utf8_lossy(w).into_owned())
            .collect();
        set_cmdline(&["berth", "monitor", "web"]).unwrap();
        let renamed = std::fs::read("/proc/self/cmdline").unwrap();
        let back: Vec<&str> = words.iter().map(String::as_str).collect();
        set_cmdline(&back).unwrap();
        assert_eq!(renamed, b"berth\0monitor\0web\0");
        assert!(set_cmdline(&["a\0b"]).is_err());
    }

    #[test]
    fn argv_is_null_terminated_and_points_at_its_strings() {
        let argv = Argv::new(vec![CString::from(c"sh"), CString::from(c"-c")]);
        assert_eq!(argv.0.ptrs.len(), 3);
        assert!(argv.0.ptrs[2].is_null());
        // Moving the array moves no string bytes.
        let moved = argv;
        assert_eq!(moved.0.ptrs[0], moved.strings()[0].as_ptr());
        assert_eq!(moved.0.ptrs[1], moved.strings()[1].as_ptr());
        let empty = Envp::new(Vec::new());
        assert_eq!(empty.0.ptrs, [std::ptr::null()]);
    }
}
