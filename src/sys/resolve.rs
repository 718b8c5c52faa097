//! Paths inside a root directory, resolved so that nothing in the tree
//! below it (a symlink to "/etc", an absolute symlink to a host path) leads
//! out: openat2(2) with RESOLVE_IN_ROOT where the kernel has it (Linux
//! 5.6), so symlinks are followed as if the root were "/"; else a walk one
//! component at a time with O_NOFOLLOW, which refuses symlinks (ELOOP).
//!
//! Paths are relative to the root ("dev/pts", "etc/group"); ".." is
//! refused. Everything here but [`open_in_root`] runs in the cloned child
//! (see `child`): no allocation, raw errno, paths copied into stack
//! buffers.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Longest path handled, with its NUL (PATH_MAX).
const PATH_MAX: usize = 4096;
/// Longest component, with its NUL (NAME_MAX + 1).
const NAME_MAX: usize = 256;
/// How often a resolution that raced a rename or mount (EAGAIN) is retried.
const RETRIES: usize = 16;

/// Opens `path` below `root` with `flags` (O_CLOEXEC is added), resolved
/// inside `root`.
pub fn open_in_root(root: BorrowedFd<'_>, path: &CStr, flags: i32) -> io::Result<OwnedFd> {
    open_raw(root, path, flags).map_err(io::Error::from_raw_os_error)
}

/// [`open_in_root`] for the child.
pub(super) fn open_raw(root: BorrowedFd<'_>, path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    if has_dot_dot(path.to_bytes()) {
        return Err(libc::EXDEV);
    }
    for _ in 0..RETRIES {
        match openat2_raw(root, path, flags) {
            Err(libc::EAGAIN) => continue,
            Err(libc::ENOSYS) => return walk_raw(root, path, flags),
            other => return other,
        }
    }
    Err(libc::EAGAIN)
}

fn has_dot_dot(path: &[u8]) -> bool {
    path.split(|&b| b == b'/').any(|c| c == b"..")
}

fn openat2_raw(root: BorrowedFd<'_>, path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    // SAFETY: an all-zero open_how is valid (no flags, no mode, no resolve).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: `path` is NUL-terminated and `how` is an open_how of the
    // size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd == -1 {
        return Err(super::errno());
    }
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `bytes` (a component or a path's prefix) NUL-terminated in `buf`;
/// ENAMETOOLONG when it does not fit.
fn nul_terminated<'b, const N: usize>(bytes: &[u8], buf: &'b mut [u8; N]) -> Result<&'b CStr, i32> {
    let out = buf.get_mut(..=bytes.len()).ok_or(libc::ENAMETOOLONG)?;
    let (text, nul) = out.split_at_mut(bytes.len());
    text.copy_from_slice(bytes);
    nul.fill(0);
    CStr::from_bytes_with_nul(out).map_err(|_| libc::EINVAL)
}

/// Whether `name` in `dir` is a symlink (not followed).
fn is_symlink(dir: BorrowedFd<'_>, name: &CStr) -> bool {
    // SAFETY: an all-zero stat is valid storage.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `name` is NUL-terminated; `st` is valid for writes.
    let ret = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    ret == 0 && st.st_mode & libc::S_IFMT == libc::S_IFLNK
}

/// The file type bits of an open fd.
pub(super) fn file_type_raw(fd: BorrowedFd<'_>) -> Result<libc::mode_t, i32> {
    // SAFETY: an all-zero stat is valid storage.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is valid for writes; fstat works on O_PATH fds.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == -1 {
        return Err(super::errno());
    }
    Ok(st.st_mode & libc::S_IFMT)
}

/// The walk for kernels without openat2: each directory opened with
/// O_NOFOLLOW from the one before; a symlink anywhere is ELOOP.
pub(super) fn walk_raw(root: BorrowedFd<'_>, path: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    if has_dot_dot(path.to_bytes()) {
        return Err(libc::EXDEV);
    }
    let mut parts = path
        .to_bytes()
        .split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .peekable();
    let mut current: Option<OwnedFd> = None;
    let mut buf = [0u8; NAME_MAX];
    if parts.peek().is_none() {
        return openat_raw(root, c".", flags);
    }
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let name = nul_terminated(part, &mut buf)?;
        let dir = current.as_ref().map_or(root, |fd| fd.as_fd());
        let want = if last {
            flags | libc::O_NOFOLLOW
        } else {
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW
        };
        let fd = match openat_raw(dir, name, want) {
            Ok(fd) => fd,
            Err(_) if is_symlink(dir, name) => return Err(libc::ELOOP),
            Err(e) => return Err(e),
        };
        // O_PATH with O_NOFOLLOW opens a symlink itself.
        if file_type_raw(fd.as_fd())? == libc::S_IFLNK {
            return Err(libc::ELOOP);
        }
        current = Some(fd);
    }
    current.ok_or(libc::ENOENT)
}

fn openat_raw(dir: BorrowedFd<'_>, name: &CStr, flags: i32) -> Result<OwnedFd, i32> {
    // SAFETY: `name` is NUL-terminated; no mode is needed without O_CREAT.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd == -1 {
        return Err(super::errno());
    }
    // SAFETY: the fd is new and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `path` split at its last '/': the parent copied NUL-terminated into
/// `buf` ("" for the root) and the last component, which as the tail of
/// `path` is NUL-terminated already.
fn split_last<'p, 'b>(
    path: &'p CStr,
    buf: &'b mut [u8; PATH_MAX],
) -> Result<(&'b CStr, &'p CStr), i32> {
    let bytes = path.to_bytes_with_nul();
    let cut = bytes.iter().rposition(|&b| b == b'/');
    let (parent, name) = match cut {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (&bytes[..0], bytes),
    };
    let name = CStr::from_bytes_with_nul(name).map_err(|_| libc::EINVAL)?;
    if name.is_empty() {
        return Err(libc::EINVAL);
    }
    Ok((nul_terminated(parent, buf)?, name))
}

/// The directory `path` below `root`, opened O_PATH; `None` for the root
/// itself (an empty path).
fn dir_raw(root: BorrowedFd<'_>, path: &CStr) -> Result<Option<OwnedFd>, i32> {
    if path.is_empty() {
        return Ok(None);
    }
    open_raw(root, path, libc::O_PATH | libc::O_DIRECTORY).map(Some)
}

/// Like `mkdir -p` below `root`: every missing directory of `path` is
/// created inside the root (a symlink on the way is followed inside it,
/// or refused by the walk). A symlink whose target is missing is not
/// replaced: ENOENT.
pub(super) fn mkdir_all_raw(root: BorrowedFd<'_>, path: &CStr) -> Result<(), i32> {
    match open_raw(root, path, libc::O_PATH | libc::O_DIRECTORY) {
        Err(libc::ENOENT) => {}
        other => return other.map(drop),
    }
    let bytes = path.to_bytes();
    let mut prefix_buf = [0u8; PATH_MAX];
    let mut name_buf = [0u8; NAME_MAX];
    // The directory of the prefix before this one; None: the root.
    let mut parent: Option<OwnedFd> = None;
    let mut start = 0;
    for end in (1..=bytes.len()).filter(|&i| i == bytes.len() || bytes[i] == b'/') {
        let part = &bytes[start..end];
        start = end + 1;
        if part.is_empty() {
            continue;
        }
        let prefix = nul_terminated(&bytes[..end], &mut prefix_buf)?;
        match open_raw(root, prefix, libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => {
                parent = Some(fd);
                continue;
            }
            Err(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let name = nul_terminated(part, &mut name_buf)?;
        let dir = parent.as_ref().map_or(root, |fd| fd.as_fd());
        // SAFETY: `name` is one NUL-terminated component.
        if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), 0o755) } == -1 {
            let e = super::errno();
            if e != libc::EEXIST {
                return Err(e);
            }
        }
        // What is there now must be a directory reached inside the root.
        parent = Some(open_raw(root, prefix, libc::O_PATH | libc::O_DIRECTORY)?);
    }
    Ok(())
}

/// Creates an empty file at `path` below `root` to bind a file onto, and
/// its directories; an existing path of any kind is fine, and is never
/// opened (a FIFO or device there must not block or wake anything).
pub(super) fn create_file_raw(root: BorrowedFd<'_>, path: &CStr) -> Result<(), i32> {
    let mut buf = [0u8; PATH_MAX];
    let (parent, name) = split_last(path, &mut buf)?;
    if !parent.is_empty() {
        mkdir_all_raw(root, parent)?;
    }
    let parent = dir_raw(root, parent)?;
    let dir = parent.as_ref().map_or(root, |fd| fd.as_fd());
    // SAFETY: `name` is one NUL-terminated component; O_EXCL with
    // O_NOFOLLOW never opens or follows what is there already.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
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
        let e = super::errno();
        return if e == libc::EEXIST { Ok(()) } else { Err(e) };
    }
    // SAFETY: the fd is new and owned by nobody else; dropping it closes it.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
    Ok(())
}

/// Creates the symlink `link` below `root` pointing at `target` (which is
/// only stored, never resolved here); an existing `link` is fine.
pub(super) fn symlink_raw(root: BorrowedFd<'_>, target: &CStr, link: &CStr) -> Result<(), i32> {
    let mut buf = [0u8; PATH_MAX];
    let (parent, name) = split_last(link, &mut buf)?;
    let parent = dir_raw(root, parent)?;
    let dir = parent.as_ref().map_or(root, |fd| fd.as_fd());
    // SAFETY: both are NUL-terminated strings.
    if unsafe { libc::symlinkat(target.as_ptr(), dir.as_raw_fd(), name.as_ptr()) } == -1 {
        let e = super::errno();
        if e != libc::EEXIST {
            return Err(e);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;
    use std::ffi::CString;
    use std::fs;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn c(s: &str) -> CString {
        CString::new(s).unwrap()
    }

    fn root_fd(dir: &Path) -> OwnedFd {
        let path = c(dir.to_str().unwrap());
        super::super::fd::open(&path, libc::O_PATH | libc::O_DIRECTORY, 0).unwrap()
    }

    /// A root with a directory "in", an absolute symlink "out" to a
    /// directory outside it, a relative one "up" climbing out, one "abs" to
    /// "/in" (inside when resolved in the root) and a dangling "gone".
    fn tree(t: &TempDir) -> (std::path::PathBuf, std::path::PathBuf) {
        let root = t.path().join("root");
        let outside = t.path().join("outside");
        fs::create_dir_all(root.join("in")).unwrap();
        fs::create_dir_all(&outside).unwrap();
        symlink(&outside, root.join("out")).unwrap();
        symlink("../../outside", root.join("in/up")).unwrap();
        symlink("/in", root.join("abs")).unwrap();
        symlink("/nowhere", root.join("gone")).unwrap();
        (root, outside)
    }

    #[test]
    fn mkdir_all_never_leaves_the_root() {
        let t = TempDir::new("resolve-mkdir");
        let (root, outside) = tree(&t);
        let fd = root_fd(&root);
        let root_fd = fd.as_fd();
        mkdir_all_raw(root_fd, &c("a/b/c")).unwrap();
        assert!(root.join("a/b/c").is_dir());
        // An absolute symlink to a host path is followed inside the root.
        match mkdir_all_raw(root_fd, &c("out/x")) {
            Ok(()) | Err(libc::ENOENT) => {}
            Err(e) => panic!("out/x: errno {e}"),
        }
        // A relative one climbing out stops at the root.
        match mkdir_all_raw(root_fd, &c("in/up/y")) {
            Ok(()) | Err(libc::ENOENT) => {}
            Err(e) => panic!("in/up/y: errno {e}"),
        }
        mkdir_all_raw(root_fd, &c("abs/z")).unwrap();
        assert!(root.join("in/z").is_dir(), "/in resolved in the root");
        assert_eq!(mkdir_all_raw(root_fd, &c("gone")), Err(libc::ENOENT));
        assert_eq!(mkdir_all_raw(root_fd, &c("a/../x")), Err(libc::EXDEV));
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing outside"
        );
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn files_and_links_are_made_inside_the_root() {
        let t = TempDir::new("resolve-file");
        let (root, outside) = tree(&t);
        let fd = root_fd(&root);
        let root_fd = fd.as_fd();
        create_file_raw(root_fd, &c("d/e/file")).unwrap();
        assert!(root.join("d/e/file").is_file());
        create_file_raw(root_fd, &c("d/e/file")).unwrap();
        let _ = create_file_raw(root_fd, &c("out/file"));
        let _ = create_file_raw(root_fd, &c("in/up/file"));
        // A dangling symlink is left alone, its target not created.
        create_file_raw(root_fd, &c("gone")).unwrap();
        symlink_raw(root_fd, &c("/etc"), &c("d/link")).unwrap();
        assert_eq!(
            fs::read_link(root.join("d/link")).unwrap(),
            Path::new("/etc")
        );
        assert_eq!(
            fs::read_dir(&outside).unwrap().count(),
            0,
            "nothing outside"
        );
        assert!(!Path::new("/nowhere").exists());
    }

    #[test]
    fn the_walk_refuses_every_symlink() {
        let t = TempDir::new("resolve-walk");
        let (root, _) = tree(&t);
        fs::write(root.join("in/f"), "x").unwrap();
        let fd = root_fd(&root);
        let root_fd = fd.as_fd();
        assert!(walk_raw(root_fd, &c("in/f"), libc::O_RDONLY).is_ok());
        assert!(walk_raw(root_fd, &c("in"), libc::O_PATH | libc::O_DIRECTORY).is_ok());
        assert!(walk_raw(root_fd, &c(""), libc::O_PATH).is_ok());
        for path in ["out", "out/x", "abs", "in/up", "gone", "abs/f"] {
            assert_eq!(
                walk_raw(root_fd, &c(path), libc::O_PATH).err(),
                Some(libc::ELOOP),
                "{path}"
            );
        }
        assert_eq!(
            walk_raw(root_fd, &c("in/none"), libc::O_PATH).err(),
            Some(libc::ENOENT)
        );
        assert_eq!(
            walk_raw(root_fd, &c("in/.."), libc::O_PATH).err(),
            Some(libc::EXDEV)
        );
    }

    #[test]
    fn open_in_root_reads_through_symlinks_inside_only() {
        let t = TempDir::new("resolve-open");
        let (root, outside) = tree(&t);
        fs::write(root.join("in/f"), "inside").unwrap();
        fs::write(outside.join("f"), "outside").unwrap();
        let fd = root_fd(&root);
        let read = |p: &str| {
            let file = open_in_root(fd.as_fd(), &c(p), libc::O_RDONLY)?;
            fs::read_to_string(format!("/proc/self/fd/{}", file.as_raw_fd()))
        };
        assert_eq!(read("abs/f").unwrap(), "inside");
        assert_eq!(read("in/f").unwrap(), "inside");
        assert!(read("out/f").is_err(), "the host's file is not reached");
        assert!(read("in/up/f").is_err(), "the host's file is not reached");
    }
}
