//! Unix socket peers: who is at the other end of a connected socket, as
//! the kernel recorded it when the peer connected (SO_PEERCRED,
//! SO_PEERGROUPS), so a process cannot change what is seen by changing
//! its ids after connecting; and an fd passed along with bytes
//! (SCM_RIGHTS).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

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

/// Room for one SCM_RIGHTS message carrying one fd, aligned as a cmsghdr.
#[repr(C)]
union OneFd {
    header: libc::cmsghdr,
    // CMSG_SPACE(sizeof(int)): 24 on 64-bit Linux, 16 on 32-bit.
    bytes: [u8; 24],
}

fn one_fd_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) as usize }
}

/// Sends `data` on a connected stream socket, with `fd` (if any) passed
/// along with its first byte. Returns how many bytes went out, as send(2).
pub fn send_with_fd(
    sock: &impl AsFd,
    data: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let mut space = OneFd { bytes: [0; 24] };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        assert!(one_fd_space() <= std::mem::size_of::<OneFd>());
        msg.msg_control = (&mut space as *mut OneFd).cast();
        msg.msg_controllen = one_fd_space() as _;
        // SAFETY: msg_control points at `space`, big enough for one cmsghdr
        // with one int (asserted above), so CMSG_FIRSTHDR is that header and
        // CMSG_DATA lies inside it.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
            std::ptr::write_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>(), fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` points at `iov` (over `data`) and at `space`, all
        // alive for the call.
        let n = unsafe { libc::sendmsg(sock.as_fd().as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        match cvt(n as libc::c_int) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => return Ok(n as usize),
        }
    }
}

/// Reads into `buf` from a connected stream socket, as read(2), and takes
/// an fd passed along with those bytes, if one was (close-on-exec).
pub fn recv_with_fd(sock: &impl AsFd, buf: &mut [u8]) -> io::Result<(usize, Option<OwnedFd>)> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut space = OneFd { bytes: [0; 24] };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut space as *mut OneFd).cast();
    msg.msg_controllen = one_fd_space() as _;
    let n = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and at `space`, all
        // alive for the call.
        let n =
            unsafe { libc::recvmsg(sock.as_fd().as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        match cvt(n as libc::c_int) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(_) => break n as usize,
        }
    };
    let mut passed = None;
    // SAFETY: the kernel filled `space` and set msg_controllen; the
    // CMSG_* walk stays within it, and an SCM_RIGHTS fd it holds is new
    // to this process and owned by nobody else.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>());
                if passed.is_none() {
                    passed = Some(OwnedFd::from_raw_fd(fd));
                } else {
                    drop(OwnedFd::from_raw_fd(fd));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n, passed))
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

    #[test]
    fn an_fd_goes_along_with_the_first_bytes_and_only_once() {
        use std::io::Write;
        let (a, mut b) = UnixStream::pair().unwrap();
        let (r, w) = crate::sys::fd::pipe().unwrap();
        let sent = send_with_fd(&a, b"hello\n", Some(w.as_fd())).unwrap();
        assert_eq!(sent, 6);
        b.write_all(b"x").unwrap(); // the other way round: no fd
        let mut buf = [0u8; 3];
        let (n, fd) = recv_with_fd(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hel");
        let passed = fd.expect("the fd came with the first bytes");
        let mut rest = [0u8; 16];
        let (n, again) = recv_with_fd(&b, &mut rest).unwrap();
        assert_eq!((&rest[..n], again.is_none()), (&b"lo\n"[..], true));
        // The passed fd is the pipe's write end, close-on-exec.
        drop(w);
        crate::sys::fd::write(&passed, b"!").unwrap();
        let mut got = [0u8; 1];
        crate::sys::fd::read(&r, &mut got).unwrap();
        assert_eq!(&got, b"!");
        // SAFETY: F_GETFD only reads the flags of an fd this test owns.
        let flags = unsafe { libc::fcntl(passed.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        // Without an fd: only bytes.
        send_with_fd(&a, b"z", None).unwrap();
        let (n, none) = recv_with_fd(&b, &mut buf).unwrap();
        assert_eq!((&buf[..n], none.is_none()), (&b"z"[..], true));
    }
}
