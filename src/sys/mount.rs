//! Mounts: mount(2), umount2(2), pivot_root(2) and mknod-free device binds.
//! Everything here but [`mount`] runs in the cloned child (see `child`):
//! no allocation, raw errno.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, BorrowedFd};

/// "/proc/self/fd/N" for an fd, built on the stack: the path through which
/// mount(2) and mount_setattr(2) act on what an fd opened inside the
/// rootfs refers to, so that no path in the rootfs is resolved again by
/// the kernel's ordinary (symlink-following) lookup.
pub(super) struct FdPath {
    buf: [u8; FdPath::PREFIX.len() + 11],
    len: usize,
}

impl FdPath {
    const PREFIX: &[u8] = b"/proc/self/fd/";

    pub(super) fn new(fd: BorrowedFd<'_>) -> FdPath {
        let mut buf = [0u8; FdPath::PREFIX.len() + 11];
        let mut len = 0;
        for (slot, b) in buf.iter_mut().zip(FdPath::PREFIX) {
            *slot = *b;
            len += 1;
        }
        // A raw fd is never negative: at most 10 digits.
        let mut n = fd.as_raw_fd().unsigned_abs();
        let mut digits = [0u8; 10];
        let mut count = 0;
        loop {
            digits[count] = b'0' + (n % 10) as u8;
            count += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in digits[..count].iter().rev() {
            buf[len] = *d;
            len += 1;
        }
        FdPath { buf, len: len + 1 }
    }

    pub(super) fn as_cstr(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.buf[..self.len]).unwrap_or(c"")
    }
}

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// mount(2) with optional source, fs type and data.
pub(super) fn mount_raw(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> Result<(), i32> {
    // SAFETY: every pointer is null or a valid NUL-terminated string.
    let ret = unsafe {
        libc::mount(
            opt_ptr(source),
            target.as_ptr(),
            opt_ptr(fstype),
            flags,
            opt_ptr(data).cast(),
        )
    };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

pub(super) fn umount_detach_raw(target: &CStr) -> Result<(), i32> {
    // SAFETY: `target` is a valid NUL-terminated string.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// umount2(target, MNT_DETACH) for the daemon: an `io::Error`.
pub fn umount_detach(target: &CStr) -> std::io::Result<()> {
    umount_detach_raw(target).map_err(std::io::Error::from_raw_os_error)
}

/// pivot_root(new_root, put_old); berth calls it as pivot_root(".", ".").
pub(super) fn pivot_root_raw(new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
    // SAFETY: both are valid NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// The kernel's `struct mount_attr` for mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// Makes the mount at `path` and every mount below it read-only
/// (mount_setattr with AT_RECURSIVE, Linux 5.12). On older kernels only
/// the top mount is remounted read-only, keeping its other flags.
pub(super) fn readonly_recursive_raw(path: &CStr) -> Result<(), i32> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `path` is valid; `attr` is a mount_attr of the size passed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if ret == 0 {
        return Ok(());
    }
    if super::errno() != libc::ENOSYS {
        return Err(super::errno());
    }
    let keep = mount_flags_raw(path)?;
    mount_raw(
        None,
        path,
        None,
        libc::MS_REMOUNT | libc::MS_BIND | libc::MS_RDONLY | keep,
        None,
    )
}

/// Whether the file system at `path` is mounted read-only.
pub fn is_read_only(path: &CStr) -> std::io::Result<bool> {
    // SAFETY: an all-zero statvfs is valid storage.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is valid; `st` is valid for writes.
    super::cvt(unsafe { libc::statvfs(path.as_ptr(), &mut st) })?;
    Ok(st.f_flag & libc::ST_RDONLY != 0)
}

/// statvfs's "relatime" bit (the libc crate names it for glibc only).
const ST_RELATIME: libc::c_ulong = 0x1000;

/// The mount flags of the file system at `path` (statvfs f_flag), so a
/// read-only remount can keep nosuid/nodev/noexec as they are.
pub(super) fn mount_flags_raw(path: &CStr) -> Result<libc::c_ulong, i32> {
    // SAFETY: an all-zero statvfs is valid storage.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is valid; `st` is valid for writes.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } == -1 {
        return Err(super::errno());
    }
    let mut flags = 0;
    for (st_flag, ms_flag) in [
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (ST_RELATIME, libc::MS_RELATIME),
    ] {
        if st.f_flag & st_flag != 0 {
            flags |= ms_flag;
        }
    }
    Ok(flags)
}

/// mount(2) for the monitor, which may allocate: an `io::Error`.
pub fn mount(
    source: Option<&CStr>,
    target: &CStr,
    fstype: Option<&CStr>,
    flags: libc::c_ulong,
    data: Option<&CStr>,
) -> std::io::Result<()> {
    mount_raw(source, target, fstype, flags, data).map_err(std::io::Error::from_raw_os_error)
}
