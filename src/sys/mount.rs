//! Mounts: mount(2), umount2(2), pivot_root(2) and mknod-free device binds.
//! Everything here runs in the cloned child (see `child`): no allocation,
//! raw errno.

use std::ffi::CStr;
use std::os::fd::{FromRawFd, OwnedFd};

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

/// pivot_root(new_root, put_old); berth calls it as pivot_root(".", ".").
pub(super) fn pivot_root_raw(new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
    // SAFETY: both are valid NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// mkdir that treats an existing path as success.
pub(super) fn mkdir_raw(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } == -1 {
        let e = super::errno();
        if e != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates an empty file to bind a file onto; an existing path of any
/// kind is fine. The existing path is only looked at (O_PATH), never
/// opened for writing: a FIFO or a device node there must not block or
/// wake anything.
pub(super) fn touch_raw(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd >= 0 {
        // SAFETY: the fd is new and owned by nobody else; dropping it closes it.
        drop(unsafe { OwnedFd::from_raw_fd(fd) });
        return Ok(());
    }
    if super::errno() != libc::ENOENT {
        return Err(super::errno());
    }
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT
                | libc::O_EXCL
                | libc::O_WRONLY
                | libc::O_NOFOLLOW
                | libc::O_NONBLOCK
                | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd == -1 {
        return Err(super::errno());
    }
    // SAFETY: the fd is new and owned by nobody else; dropping it closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
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

pub(super) fn symlink_raw(target: &CStr, link: &CStr) -> Result<(), i32> {
    // SAFETY: both are valid NUL-terminated strings.
    if unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) } == -1 {
        let e = super::errno();
        if e != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
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
