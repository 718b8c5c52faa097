//! Credentials and capabilities: uid/gid, supplementary groups, the five
//! capability sets, no_new_privs, resource limits. Everything here but
//! [`own_sets`] runs in the cloned child (see `child`): no allocation, raw
//! errno.

use std::io;

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

/// Sets the supplementary groups to exactly `groups` (none when empty).
pub(super) fn set_groups_raw(groups: &[u32]) -> Result<(), i32> {
    // SAFETY: `groups` is a valid array of gid_t (u32) of the length
    // passed; the raw call avoids the C library's cross-thread
    // synchronisation.
    let ret = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// Keeps the permitted set across the change from uid 0 to another
/// (PR_SET_KEEPCAPS; execve clears the flag again).
pub(super) fn keep_caps_raw() -> Result<(), i32> {
    // SAFETY: PR_SET_KEEPCAPS takes the value 1.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// The kernel's capability header and data, version 3 (64-bit sets as
/// two 32-bit halves).
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

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

fn halves(set: u64) -> [u32; 2] {
    [set as u32, (set >> 32) as u32]
}

/// Sets this process's effective, permitted and inheritable sets.
pub(super) fn set_caps_raw(effective: u64, permitted: u64, inheritable: u64) -> Result<(), i32> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let (e, p, i) = (halves(effective), halves(permitted), halves(inheritable));
    let data = [0, 1].map(|n| CapData {
        effective: e[n],
        permitted: p[n],
        inheritable: i[n],
    });
    // SAFETY: a version 3 header and the two data structs it expects.
    let ret = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if ret == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// This process's (effective, permitted, inheritable) sets.
pub fn own_sets() -> io::Result<(u64, u64, u64)> {
    let header = CapHeader {
        version: CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: a version 3 header and room for the two data structs it fills.
    super::cvt(unsafe { libc::syscall(libc::SYS_capget, &header, data.as_mut_ptr()) })?;
    let join = |f: fn(&CapData) -> u32| u64::from(f(&data[0])) | (u64::from(f(&data[1])) << 32);
    Ok((
        join(|d| d.effective),
        join(|d| d.permitted),
        join(|d| d.inheritable),
    ))
}

/// This process's bounding set.
pub fn own_bounding() -> u64 {
    let mut set = 0;
    for c in 0..64u32 {
        // SAFETY: PR_CAPBSET_READ takes a capability number; it returns 1
        // or 0, or -1 (EINVAL) past the last capability the kernel knows.
        if unsafe { libc::prctl(libc::PR_CAPBSET_READ, c as libc::c_ulong, 0, 0, 0) } == 1 {
            set |= 1 << c;
        }
    }
    set
}

/// Makes the ambient set exactly `set`: cleared, then each capability
/// raised (each must be permitted and inheritable already). A kernel
/// without ambient capabilities (before 4.3) is fine when `set` is empty.
pub(super) fn set_ambient_raw(set: u64) -> Result<(), i32> {
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no further arguments.
    let cleared = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if cleared == -1 {
        let e = super::errno();
        return if e == libc::EINVAL && set == 0 {
            Ok(())
        } else {
            Err(e)
        };
    }
    for cap in (0..64).filter(|c| set & (1u64 << c) != 0) {
        // SAFETY: PR_CAP_AMBIENT_RAISE takes a capability number.
        let ret = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                cap as libc::c_ulong,
                0,
                0,
            )
        };
        if ret == -1 {
            return Err(super::errno());
        }
    }
    Ok(())
}

/// The kernel's `struct rlimit64`, as prlimit64(2) takes it on every
/// architecture.
#[repr(C)]
struct Rlimit64 {
    soft: u64,
    hard: u64,
}

/// Sets resource limit `resource` to `soft`/`hard` (u64::MAX: unlimited).
/// With `clamp`, a hard limit this process may not raise (EPERM: no
/// CAP_SYS_RESOURCE, or above fs/nr_open) is lowered to the current hard
/// limit, and the soft one with it, instead of failing.
pub(super) fn set_rlimit_raw(resource: u32, soft: u64, hard: u64, clamp: bool) -> Result<(), i32> {
    let set = |soft: u64, hard: u64| -> Result<(), i32> {
        let new = Rlimit64 { soft, hard };
        // SAFETY: prlimit64 on this process (pid 0) with a valid new limit
        // and no old one asked for.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_prlimit64,
                0,
                resource,
                &new as *const Rlimit64,
                std::ptr::null_mut::<Rlimit64>(),
            )
        };
        if ret == -1 {
            return Err(super::errno());
        }
        Ok(())
    };
    match set(soft, hard) {
        Err(libc::EPERM) if clamp => {
            let mut old = Rlimit64 { soft: 0, hard: 0 };
            // SAFETY: prlimit64 on this process, reading into `old`.
            let ret = unsafe {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    resource,
                    std::ptr::null::<Rlimit64>(),
                    &mut old as *mut Rlimit64,
                )
            };
            if ret == -1 {
                return Err(super::errno());
            }
            set(soft.min(old.hard), hard.min(old.hard))
        }
        other => other,
    }
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
