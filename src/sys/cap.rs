//! Credentials and capabilities: uid/gid, the bounding set and
//! no_new_privs. Everything here runs in the cloned child (see `child`).

/// Drops one capability from the bounding set; EINVAL (unknown to this
/// kernel) is not an error.
pub(super) fn drop_bounding_raw(cap: u32) -> Result<(), i32> {
    // SAFETY: PR_CAPBSET_DROP takes a capability number.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } == -1 {
        let e = super::errno();
        if e != libc::EINVAL {
            return Err(e);
        }
    }
    Ok(())
}

pub(super) fn no_new_privs_raw() -> Result<(), i32> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes the value 1.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

pub(super) fn setgroups_empty_raw() -> Result<(), i32> {
    // SAFETY: an empty list with a null pointer clears supplementary groups;
    // the raw call avoids the C library's cross-thread synchronisation.
    let ret = unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// setresgid then setresuid through raw system calls (the C library's
/// wrappers would try to synchronise threads this child does not have).
pub(super) fn set_ids_raw(uid: u32, gid: u32) -> Result<(), i32> {
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresgid, gid, gid, gid) } == -1 {
        return Err(super::errno());
    }
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}
