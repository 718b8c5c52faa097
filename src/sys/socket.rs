//! Unix socket peers: who is at the other end of a connected socket, as
//! the kernel recorded it when the peer connected (SO_PEERCRED,
//! SO_PEERGROUPS), so a process cannot change what is seen by changing
//! its ids after connecting.

use std::io;
use std::os::fd::{AsFd, AsRawFd};

use super::cvt;

/// The peer's process and ids at connect time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// SO_PEERCRED of a connected unix socket.
pub fn peer_cred(sock: &impl AsFd) -> io::Result<PeerCred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` is a valid ucred of `len` bytes for the kernel to fill.
    cvt(unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(PeerCred {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}

/// Most supplementary groups a process can have (NGROUPS_MAX).
const MAX_GROUPS: usize = 65_536;

/// SO_PEERGROUPS (Linux 4.13) of a connected unix socket: the peer's
/// supplementary groups at connect time.
pub fn peer_groups(sock: &impl AsFd) -> io::Result<Vec<u32>> {
    let mut groups: Vec<libc::gid_t> = vec![0; 32];
    loop {
        let mut len = (groups.len() * std::mem::size_of::<libc::gid_t>()) as libc::socklen_t;
        // SAFETY: `groups` is valid for writes of `len` bytes.
        let ret = unsafe {
            libc::getsockopt(
                sock.as_fd().as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_PEERGROUPS,
                groups.as_mut_ptr().cast(),
                &mut len,
            )
        };
        let count = len as usize / std::mem::size_of::<libc::gid_t>();
        if ret == 0 {
            groups.truncate(count);
            return Ok(groups);
        }
        let err = io::Error::last_os_error();
        // Too small a buffer: the kernel said how much it needs.
        if err.raw_os_error() == Some(libc::ERANGE) && count > groups.len() && count <= MAX_GROUPS {
            groups.resize(count, 0);
            continue;
        }
        return Err(err);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    #[test]
    fn a_socket_pair_sees_this_process() {
        let (a, _b) = UnixStream::pair().unwrap();
        let cred = peer_cred(&a).unwrap();
        // SAFETY: these calls cannot fail and touch no memory.
        let (pid, uid, gid) = unsafe { (libc::getpid(), libc::geteuid(), libc::getegid()) };
        assert_eq!(cred, PeerCred { pid, uid, gid });
        // SAFETY: a null list with size 0 only asks for the count.
        let n = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
        let mut mine = vec![0; n as usize];
        // SAFETY: `mine` holds `n` gids.
        let n = unsafe { libc::getgroups(n, mine.as_mut_ptr()) };
        mine.truncate(n as usize);
        let mut seen = peer_groups(&a).unwrap();
        seen.sort_unstable();
        mine.sort_unstable();
        assert_eq!(seen, mine);
    }
}
