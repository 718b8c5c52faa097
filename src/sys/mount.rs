//! Mounts: mount(2), umount2(2), pivot_root(2) and mknod-free device binds.
//! Everything here runs between clone and exec: no allocation, raw errno.

use std::ffi::CStr;

fn opt_ptr(s: Option<&CStr>) -> *const libc::c_char {
    s.map_or(std::ptr::null(), CStr::as_ptr)
}

/// mount(2) with optional source, fs type and data.
pub fn mount_raw(
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

pub fn umount_detach_raw(target: &CStr) -> Result<(), i32> {
    // SAFETY: `target` is a valid NUL-terminated string.
    if unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// pivot_root(new_root, put_old); berth calls it as pivot_root(".", ".").
pub fn pivot_root_raw(new_root: &CStr, put_old: &CStr) -> Result<(), i32> {
    // SAFETY: both are valid NUL-terminated strings.
    let ret = unsafe { libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// mkdir that treats an existing path as success.
pub fn mkdir_raw(path: &CStr, mode: libc::mode_t) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    if unsafe { libc::mkdir(path.as_ptr(), mode) } == -1 {
        let e = super::errno();
        if e != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

/// Creates an empty file to bind a file onto; an existing path is fine.
pub fn touch_raw(path: &CStr) -> Result<(), i32> {
    // SAFETY: `path` is a valid NUL-terminated string.
    let fd = unsafe {
        libc::open(
            path.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            0o644,
        )
    };
    if fd == -1 {
        let e = super::errno();
        // An existing directory or device node is also a fine bind target.
        if e == libc::EISDIR || e == libc::EEXIST || e == libc::ENXIO {
            return Ok(());
        }
        return Err(e);
    }
    // SAFETY: `fd` was opened above and is not used again.
    unsafe { libc::close(fd) };
    Ok(())
}

pub fn symlink_raw(target: &CStr, link: &CStr) -> Result<(), i32> {
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
pub fn mount_flags_raw(path: &CStr) -> Result<libc::c_ulong, i32> {
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
