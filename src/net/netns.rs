//! Network namespaces that outlive their processes: each is held by a bind
//! mount of its nsfs file onto a file of the run directory
//! (run-dir/netns/NAME), made by the daemon before the container's first
//! start. The container's init joins it (a SetNs step) instead of getting a
//! new one, so its interfaces, address and routes stay across restarts of
//! the container and of the daemon; removing the file's mount lets the
//! kernel free the namespace once no process is in it.
//!
//! The daemon is one thread: it enters a new namespace to create it and
//! returns to its own at once, on every path.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::sys::{fd, mount, ns};

/// This thread's own network namespace, as the kernel shows it.
const OWN: &std::ffi::CStr = c"/proc/thread-self/ns/net";

/// Where the namespace of container `name` is held.
pub fn path(run_dir: &Path, name: &str) -> PathBuf {
    run_dir.join("netns").join(name)
}

fn cpath(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Whether `path` holds a namespace: a bind of an nsfs file (same device
/// as this thread's own namespace file).
pub fn is_held(path: &Path) -> bool {
    match (fs::metadata(path), fs::metadata("/proc/thread-self/ns/net")) {
        (Ok(a), Ok(b)) => a.dev() == b.dev(),
        _ => false,
    }
}

/// An fd of the namespace held at `path`, if one is.
pub fn open(path: &Path) -> io::Result<Option<OwnedFd>> {
    if !is_held(path) {
        return Ok(None);
    }
    fd::open(&cpath(path)?, libc::O_RDONLY | libc::O_CLOEXEC, 0).map(Some)
}

/// Creates a new network namespace held at `path` (its directory is made
/// if missing) and returns an fd of it. A namespace already held there is
/// returned as it is.
pub fn create(path: &Path) -> io::Result<OwnedFd> {
    if let Some(held) = open(path)? {
        return Ok(held);
    }
    mount_point(path)?;
    let home = fd::open(OWN, libc::O_RDONLY | libc::O_CLOEXEC, 0)?;
    if let Err(e) = ns::unshare(libc::CLONE_NEWNET) {
        let _ = fs::remove_file(path);
        return Err(e);
    }
    let made = hold(path);
    // Back to the daemon's own namespace whatever happened; staying in
    // the new one would put every later socket there.
    let back = ns::setns(home.as_fd(), libc::CLONE_NEWNET);
    if let Err(e) = back {
        // Nothing sensible can go on in the wrong namespace.
        panic!("cannot return to the daemon's network namespace: {e}");
    }
    let made = made.inspect_err(|_| {
        let _ = fs::remove_file(path);
    })?;
    // Loopback up, as every container with a namespace of its own has it.
    crate::net::link::Route::open_in(made.as_fd())
        .and_then(|mut r| {
            let lo = r
                .link("lo")?
                .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
            r.set_up(lo.index)
        })
        .inspect_err(|_| {
            let _ = remove(path);
        })?;
    Ok(made)
}

/// Holds, at `path`, the network namespace process `pid` is in (the
/// caller checks it is the process it means).
pub fn hold_process(path: &Path, pid: i32) -> io::Result<()> {
    mount_point(path)?;
    let source = CString::new(format!("/proc/{pid}/ns/net"))
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    mount::mount(Some(&source), &cpath(path)?, None, libc::MS_BIND, None).inspect_err(|_| {
        let _ = fs::remove_file(path);
    })
}

/// The file a namespace is bound onto: an empty file, its directory made
/// if missing (one left by a daemon that died between creating it and
/// mounting on it is taken as it is).
fn mount_point(path: &Path) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map(drop)
}

/// Binds this thread's (new) namespace onto `path` and opens it.
fn hold(path: &Path) -> io::Result<OwnedFd> {
    let target = cpath(path)?;
    mount::mount(Some(OWN), &target, None, libc::MS_BIND, None)?;
    fd::open(&target, libc::O_RDONLY | libc::O_CLOEXEC, 0)
}

/// Lets go of the namespace held at `path` and removes the file. Nothing
/// held there is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    if is_held(path) {
        mount::umount_detach(&cpath(path)?)?;
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TempDir;

    #[test]
    fn a_held_namespace_is_another_than_ours_and_goes_with_its_file() {
        // In a thread of its own with a namespace of its own: nothing here
        // touches the machine's.
        std::thread::spawn(|| {
            // Its own mounts too (with its own fs context, as a thread
            // needs for that), none shared back with the machine's.
            ns::unshare(libc::CLONE_NEWNET | libc::CLONE_NEWNS | libc::CLONE_FS).unwrap();
            mount::mount(None, c"/", None, libc::MS_REC | libc::MS_PRIVATE, None).unwrap();
            let tmp = TempDir::new("netns");
            let at = path(tmp.path(), "web");
            assert!(!is_held(&at));
            let fd = create(&at).unwrap();
            assert!(is_held(&at));
            let ours = fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
            let held = fs::metadata(&at).unwrap().ino();
            assert_ne!(
                ours, held,
                "a new namespace, and this thread is back in its own"
            );
            // Created twice: the same one.
            let again = create(&at).unwrap();
            let ino = |f: &OwnedFd| {
                let link = format!(
                    "/proc/thread-self/fd/{}",
                    std::os::fd::AsRawFd::as_raw_fd(f)
                );
                fs::metadata(link).unwrap().ino()
            };
            assert_eq!(ino(&fd), ino(&again));
            assert_eq!(ino(&fd), held);
            // Its loopback is up.
            let mut r = crate::net::link::Route::open_in(fd.as_fd()).unwrap();
            assert!(r.link("lo").unwrap().unwrap().up);
            remove(&at).unwrap();
            assert!(!at.exists());
            assert!(open(&at).unwrap().is_none());
            remove(&at).unwrap();
        })
        .join()
        .unwrap();
    }
}
