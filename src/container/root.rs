//! The container's root when it is more than a directory bound in place:
//! an image file mounted through a loop device (or a verity device over
//! it), and a writable overlay on top of an image or a directory.
//!
//! The monitor builds it in a mount namespace of its own, made a slave of
//! the host's: host mounts still reach it, nothing made here reaches the
//! host. The container's namespace is cloned from it. When the monitor and
//! the container are both gone, so is the namespace and every mount in
//! it; the loop device was attached with autoclear and the monitor closed
//! its fd once the image was mounted, so the kernel releases the device
//! with the last mount, even after a kill -9 of the monitor. Each run has
//! a new monitor, so a `tmpfs` upper layer is new at each start, while a
//! `persistent` one lives under state-dir (`writable/NAME`) and is removed
//! only by `berth rm`.
//!
//! A rootfs directory without `writable` is not touched here: the child
//! binds it as it always did.

use std::ffi::CString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::verity;
use crate::config::{self, ContainerSpec, VerityHashes, Writable};
use crate::errors;
use crate::sys::loopdev::{self, LoopError};
use crate::sys::{fd, mount, ns};

/// The root the child binds, once made.
#[derive(Debug)]
pub struct Root {
    /// The directory the child binds as its root.
    pub path: PathBuf,
    /// Whether the root is read-only (`writable: "none"`, or an image
    /// without `writable`).
    pub readonly: bool,
    /// The definition's hash with the identity of the image file opened
    /// (see `config::image_identity_hash`); the plain hash without an
    /// image.
    pub hash: u64,
    /// The verity device under the image, kept to ask the kernel at the
    /// run's end whether a block failed verification.
    pub verity: Option<verity::Device>,
    /// The host's mount namespace, which the monitor left to make the
    /// root: it goes back once the container is cloned (see [`leave`]).
    pub host_mounts: Option<OwnedFd>,
}

/// Why the root could not be made, by step, with the path.
#[derive(Debug)]
pub enum RootError {
    Unshare(io::Error),
    MakeSlave(io::Error),
    CreateDir(PathBuf, io::Error),
    OpenImage(PathBuf, io::Error),
    NotAnImage(PathBuf),
    Loop(PathBuf, LoopError),
    Verity(PathBuf, String),
    Mount {
        what: String,
        target: PathBuf,
        err: io::Error,
    },
    /// A path that cannot go into mount options (a NUL byte).
    BadPath(PathBuf),
}

impl fmt::Display for RootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = errors::io_text;
        match self {
            RootError::Unshare(e) => write!(f, "unshare the monitor's mount namespace: {}", t(e)),
            RootError::MakeSlave(e) => write!(f, "make / a slave mount: {}", t(e)),
            RootError::CreateDir(p, e) => write!(f, "create {}: {}", p.display(), t(e)),
            RootError::OpenImage(p, e) => write!(f, "open image {}: {}", p.display(), t(e)),
            RootError::NotAnImage(p) => write!(
                f,
                "image {}: not a squashfs or erofs image (no squashfs magic at byte 0, no erofs magic at byte 1024)",
                p.display()
            ),
            RootError::Loop(p, e) => write!(f, "image {}: {e}", p.display()),
            RootError::Verity(p, e) => write!(f, "image {}: verity: {e}", p.display()),
            RootError::Mount { what, target, err } => {
                write!(f, "mount {what} on {}: {}", target.display(), t(err))
            }
            RootError::BadPath(p) => write!(f, "{}: path contains a NUL byte", p.display()),
        }
    }
}

/// Where the parts of a root go: `run` is the container's run directory,
/// `layer` its persistent layer's directory (state-dir/writable/NAME).
pub struct Places<'a> {
    pub run: &'a Path,
    pub layer: &'a Path,
    /// Names the verity device of this run.
    pub run_id: &'a str,
    pub name: &'a str,
}

/// Makes the root `spec` asks for; `None` when the child binds the rootfs
/// directory itself (no image, no overlay).
pub fn prepare(spec: &ContainerSpec, at: &Places<'_>) -> Result<Option<Root>, RootError> {
    let writable = match (&spec.image, spec.writable) {
        (None, None) => return Ok(None),
        (None, Some(Writable::None)) => {
            // A read-only bind of the directory: the child's own remount.
            return Ok(Some(Root {
                path: spec.rootfs.clone(),
                readonly: true,
                hash: spec.hash,
                verity: None,
                host_mounts: None,
            }));
        }
        (_, w) => w.unwrap_or(Writable::None),
    };
    let host_mounts =
        fd::open(c"/proc/self/ns/mnt", libc::O_RDONLY, 0).map_err(RootError::Unshare)?;
    ns::unshare(libc::CLONE_NEWNS).map_err(RootError::Unshare)?;
    mount::mount(None, c"/", None, libc::MS_REC | libc::MS_SLAVE, None)
        .map_err(RootError::MakeSlave)?;
    let (lower, hash, verity) = match &spec.image {
        Some(image) => {
            let target = at.run.join("image");
            let (hash, device) = mount_image(spec, image, &target, at)?;
            (target, hash, device)
        }
        None => (spec.rootfs.clone(), spec.hash, None),
    };
    let upper_parent = match writable {
        Writable::None => {
            return Ok(Some(Root {
                path: lower,
                readonly: true,
                hash,
                verity,
                host_mounts: Some(host_mounts),
            }));
        }
        Writable::Tmpfs => {
            let layer = at.run.join("layer");
            make_dir(&layer, 0o700)?;
            mount_at(
                Some(c"tmpfs"),
                &layer,
                Some(c"tmpfs"),
                libc::MS_NOSUID | libc::MS_NODEV,
                Some("mode=0700"),
                "a tmpfs for the writable layer",
            )?;
            layer
        }
        Writable::Persistent => {
            make_dir(at.layer, 0o700)?;
            at.layer.to_path_buf()
        }
    };
    let upper = upper_parent.join("upper");
    let work = upper_parent.join("work");
    if !upper.is_dir() {
        // The overlay's root takes the upper directory's owner and mode:
        // those of the lower root, as the image or directory has them.
        let meta = fs::metadata(&lower).map_err(|e| RootError::CreateDir(upper.clone(), e))?;
        make_dir(&upper, 0o700)?;
        let set =
            std::os::unix::fs::chown(&upper, Some(meta.uid()), Some(meta.gid())).and_then(|()| {
                fs::set_permissions(&upper, fs::Permissions::from_mode(meta.mode() & 0o7777))
            });
        set.map_err(|e| RootError::CreateDir(upper.clone(), e))?;
    }
    make_dir(&work, 0o700)?;
    let target = at.run.join("root");
    make_dir(&target, 0o700)?;
    // index=off: a persistent upper layer stays usable over a new image.
    let options = format!(
        "lowerdir={},upperdir={},workdir={},index=off",
        escape(&lower),
        escape(&upper),
        escape(&work)
    );
    mount_at(
        Some(c"overlay"),
        &target,
        Some(c"overlay"),
        libc::MS_NODEV,
        Some(&options),
        "the writable overlay",
    )?;
    Ok(Some(Root {
        path: target,
        readonly: false,
        hash,
        verity,
        host_mounts: Some(host_mounts),
    }))
}

/// Takes the monitor back to the host's mount namespace, once the
/// container (which pivoted away from the host's tree) is cloned: the
/// private namespace goes, and with it the monitor's copies of the host's
/// mounts, which would otherwise keep a host file system busy (on a host
/// whose "/" is private, an unmount there does not reach a slave copy).
/// The root's mounts live on in the container's namespace.
pub fn leave(host_mounts: OwnedFd) -> io::Result<()> {
    ns::setns(host_mounts.as_fd(), libc::CLONE_NEWNS)
}

/// Mounts `image` read-only on `target`, through a loop device (and a
/// verity device if the definition pins a root hash). Returns the
/// definition's hash with the opened file's identity, and the verity
/// device if there is one.
fn mount_image(
    spec: &ContainerSpec,
    image: &Path,
    target: &Path,
    at: &Places<'_>,
) -> Result<(u64, Option<verity::Device>), RootError> {
    // Non-blocking: a FIFO put at the path cannot hang the monitor.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(image)
        .map_err(|e| RootError::OpenImage(image.to_path_buf(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| RootError::OpenImage(image.to_path_buf(), e))?;
    if !meta.is_file() {
        return Err(RootError::NotAnImage(image.to_path_buf()));
    }
    let fs_type = config::read_image_fs(&file)
        .map_err(|e| RootError::OpenImage(image.to_path_buf(), e))?
        .ok_or_else(|| RootError::NotAnImage(image.to_path_buf()))?;
    let data = loopdev::attach_readonly(file.as_fd())
        .map_err(|e| RootError::Loop(image.to_path_buf(), e))?;
    drop(file);
    make_dir(target, 0o700)?;
    let fs_name = CString::new(fs_type.name()).map_err(|_| RootError::BadPath(target.into()))?;
    let what = format!("{} image {}", fs_type.name(), image.display());
    let Some(v) = &spec.verity else {
        mount_at(
            Some(&cpath(&data.node)?),
            target,
            Some(&fs_name),
            libc::MS_RDONLY | libc::MS_NODEV,
            None,
            &what,
        )?;
        // The mount holds the device now; autoclear releases it with the
        // mount.
        drop(data);
        return Ok((config::image_identity_hash(spec.hash, &meta), None));
    };
    let verity_err = |e: String| RootError::Verity(image.to_path_buf(), e);
    let (offset, hash_file) = match &v.hashes {
        VerityHashes::Offset(n) => (Some(*n), None),
        VerityHashes::File(p) => (None, Some(p.as_path())),
    };
    let table = verity::prepare(image, &v.root_hash, offset, hash_file)
        .map_err(|e| verity_err(e.to_string()))?;
    let hashes = match hash_file {
        Some(p) => {
            let f = File::open(p).map_err(|e| RootError::OpenImage(p.to_path_buf(), e))?;
            Some(loopdev::attach_readonly(f.as_fd()).map_err(|e| RootError::Loop(p.into(), e))?)
        }
        None => None,
    };
    let hash_dev = hashes.as_ref().map_or(data.dev, |h| h.dev);
    let dm_name = format!("berth-{}-{}", at.name, at.run_id);
    let mut device = verity::activate(&dm_name, &table, data.dev, hash_dev)
        .map_err(|e| verity_err(e.to_string()))?;
    // Held open by the monitor (for its status at the run's end) before
    // the kernel is asked for the device's deferred removal and before the
    // mount: from here on, whoever ends the monitor, the device goes with
    // its last user.
    let held = device.hold();
    let released = device.release();
    let mounted = mount_at(
        Some(&cpath(&device.node)?),
        target,
        Some(&fs_name),
        libc::MS_RDONLY | libc::MS_NODEV,
        None,
        &format!("{what} through verity device {}", device.node.display()),
    );
    drop(hashes);
    drop(data);
    mounted?;
    if let Err(e) = held {
        log::warn!(
            "verity device {}: cannot hold it open, a failed verification may go unreported: {}",
            device.name,
            crate::errors::io_text(&e)
        );
    }
    if let Err(e) = released {
        log::warn!(
            "verity device {}: deferred removal refused, it stays after the run: {}",
            device.name,
            crate::errors::io_text(&e)
        );
    }
    Ok((config::image_identity_hash(spec.hash, &meta), Some(device)))
}

fn cpath(p: &Path) -> Result<CString, RootError> {
    CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| RootError::BadPath(p.into()))
}

fn mount_at(
    source: Option<&std::ffi::CStr>,
    target: &Path,
    fs_type: Option<&std::ffi::CStr>,
    flags: libc::c_ulong,
    data: Option<&str>,
    what: &str,
) -> Result<(), RootError> {
    let c_target = cpath(target)?;
    let c_data = match data {
        Some(d) => Some(CString::new(d).map_err(|_| RootError::BadPath(target.into()))?),
        None => None,
    };
    mount::mount(source, &c_target, fs_type, flags, c_data.as_deref()).map_err(|err| {
        RootError::Mount {
            what: what.to_string(),
            target: target.to_path_buf(),
            err,
        }
    })
}

/// Creates `dir` (and its parents) with `mode` if it is missing.
fn make_dir(dir: &Path, mode: u32) -> Result<(), RootError> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .map_err(|e| RootError::CreateDir(dir.to_path_buf(), e))
}

/// A path as overlayfs reads it in its options: ',', ':' and '\' escaped
/// with a backslash.
fn escape(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, ',' | ':' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_paths_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")), "/a\\,b\\:c\\\\d");
        assert_eq!(escape(Path::new("/plain/dir")), "/plain/dir");
    }
}
