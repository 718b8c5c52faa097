//! Pseudo-terminals: the checks and ioctls on a master opened from a
//! devpts instance (a container's own, reached through its root), its
//! peer, the window size, the controlling terminal, and raw mode on the
//! caller's terminal.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::cvt;

/// statfs f_type of a devpts file system.
const DEVPTS_SUPER_MAGIC: i64 = 0x1cd1;

/// Rows and columns of a terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

/// Whether `fd` is on a devpts file system (fstatfs).
pub fn is_devpts(fd: &impl AsFd) -> io::Result<bool> {
    // SAFETY: an all-zero statfs is valid storage for fstatfs to fill.
    let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the fd is open for the call; `fs` is valid storage.
    cvt(unsafe { libc::fstatfs(fd.as_fd().as_raw_fd(), &mut fs) })?;
    Ok(fs.f_type as i64 == DEVPTS_SUPER_MAGIC)
}

/// Unlocks the terminal of a new master, so that it can be opened.
pub fn unlock(master: &impl AsFd) -> io::Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, valid here.
    cvt(unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCSPTLCK, &unlock) }).map(drop)
}

/// Opens the terminal (the slave side) of `master` without a path lookup
/// (TIOCGPTPEER): close-on-exec, not made a controlling terminal.
pub fn open_peer(master: &impl AsFd) -> io::Result<OwnedFd> {
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes the open flags as its argument and
    // returns a new fd.
    let fd = cvt(unsafe { libc::ioctl(master.as_fd().as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Gives the terminal `fd` to `uid` (its group stays), as a login does.
pub fn give_to(fd: &impl AsFd, uid: u32) -> io::Result<()> {
    // SAFETY: fchown takes an fd, open for the call, and ids; -1 (as
    // gid_t) keeps the group.
    cvt(unsafe { libc::fchown(fd.as_fd().as_raw_fd(), uid, libc::gid_t::MAX) }).map(drop)
}

/// The window size of the terminal `fd`.
pub fn window_size(fd: &impl AsFd) -> io::Result<WindowSize> {
    // SAFETY: an all-zero winsize is valid storage.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ fills the winsize the pointer names.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) })?;
    Ok(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// Sets the window size of the terminal `fd` (the master: the process on
/// the terminal gets SIGWINCH).
pub fn set_window_size(fd: &impl AsFd, size: WindowSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads the winsize the pointer names.
    cvt(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// For the cloned child: makes the terminal on `fd` the controlling
/// terminal of this process's session.
pub(super) fn set_controlling_raw(fd: libc::c_int) -> Result<(), i32> {
    // SAFETY: TIOCSCTTY takes an int argument (0: do not steal).
    if unsafe { libc::ioctl(fd, libc::TIOCSCTTY, 0) } == -1 {
        return Err(super::errno());
    }
    Ok(())
}

/// A terminal's settings as they were before [`make_raw`].
pub struct Saved {
    termios: libc::termios,
}

/// Puts the terminal `fd` in raw mode (no echo, no line editing, no
/// signals from keys: every byte goes to the other side) and returns
/// its settings before.
pub fn make_raw(fd: BorrowedFd<'_>) -> io::Result<Saved> {
    // SAFETY: an all-zero termios is valid storage.
    let mut termios: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: tcgetattr fills the termios the pointer names.
    cvt(unsafe { libc::tcgetattr(fd.as_raw_fd(), &mut termios) })?;
    let saved = Saved { termios };
    let mut raw = termios;
    // SAFETY: cfmakeraw only changes the termios the pointer names.
    unsafe { libc::cfmakeraw(&mut raw) };
    // SAFETY: tcsetattr reads the termios the pointer names.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSANOW, &raw) })?;
    Ok(saved)
}

/// Puts the terminal `fd` back as it was.
pub fn restore(fd: BorrowedFd<'_>, saved: &Saved) -> io::Result<()> {
    // SAFETY: tcsetattr reads the termios the pointer names.
    cvt(unsafe { libc::tcsetattr(fd.as_raw_fd(), libc::TCSAFLUSH, &saved.termios) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::fd;

    fn open_ptmx(path: &std::ffi::CStr) -> OwnedFd {
        fd::open(path, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC, 0).unwrap()
    }

    #[test]
    fn a_pair_from_the_hosts_devpts_carries_bytes_and_a_window_size() {
        let master = open_ptmx(c"/dev/pts/ptmx");
        assert!(is_devpts(&master).unwrap());
        unlock(&master).unwrap();
        let peer = open_peer(&master).unwrap();
        let size = WindowSize {
            rows: 33,
            cols: 101,
        };
        set_window_size(&master, size).unwrap();
        assert_eq!(window_size(&peer).unwrap(), size);
        assert!(std::io::IsTerminal::is_terminal(&peer));
        let saved = make_raw(peer.as_fd()).unwrap();
        let mut f = std::fs::File::from(peer.try_clone().unwrap());
        std::io::Write::write_all(&mut f, b"hi").unwrap();
        let mut buf = [0u8; 8];
        let n = fd::read(&master, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hi");
        restore(peer.as_fd(), &saved).unwrap();
    }

    #[test]
    fn a_file_elsewhere_is_not_on_devpts() {
        assert!(!is_devpts(&open_ptmx(c"/dev/null")).unwrap());
    }
}
