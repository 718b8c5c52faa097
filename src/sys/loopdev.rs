//! Loop devices (linux/loop.h): a file attached read-only to a free
//! /dev/loopN with autoclear, so the device is released by the kernel
//! when its last user (the mount made from it) goes, whoever ends first.
//!
//! LOOP_CONFIGURE (Linux 5.8) attaches and sets the flags in one call; on
//! older kernels LOOP_SET_FD and then LOOP_SET_STATUS64. Another process
//! may take the device that LOOP_CTL_GET_FREE named before this one binds
//! it (EBUSY): then a new free device is asked for.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;

use super::{cvt, fd};

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;
const LO_KEY_SIZE: usize = 32;

/// How often a free device is asked for again when another process took
/// the one named.
const BUSY_TRIES: u32 = 16;

/// `struct loop_info64`.
#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; LO_KEY_SIZE],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

/// An attached loop device, open. Closing it (drop) releases the device
/// once nothing else uses it (autoclear).
#[derive(Debug)]
pub struct Loop {
    /// Held open until the device is in use (mounted).
    _fd: OwnedFd,
    /// /dev/loopN.
    pub node: PathBuf,
    pub dev: libc::dev_t,
}

/// Why a file could not be attached, by step.
#[derive(Debug)]
pub enum LoopError {
    OpenControl(io::Error),
    GetFree(io::Error),
    OpenDevice(PathBuf, io::Error),
    Attach(PathBuf, io::Error),
    /// Every free device named was taken by another process first.
    Busy,
}

impl std::fmt::Display for LoopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let t = crate::errors::io_text;
        match self {
            LoopError::OpenControl(e) => write!(f, "open /dev/loop-control: {}", t(e)),
            LoopError::GetFree(e) => write!(f, "find a free loop device: {}", t(e)),
            LoopError::OpenDevice(p, e) => write!(f, "open {}: {}", p.display(), t(e)),
            LoopError::Attach(p, e) => write!(f, "attach to {}: {}", p.display(), t(e)),
            LoopError::Busy => write!(
                f,
                "attach to a loop device: every free device was taken by another process"
            ),
        }
    }
}

/// Attaches `file` (open for reading) read-only with autoclear to a free
/// loop device.
pub fn attach_readonly(file: BorrowedFd<'_>) -> Result<Loop, LoopError> {
    let control =
        fd::open(c"/dev/loop-control", libc::O_RDWR, 0).map_err(LoopError::OpenControl)?;
    for _ in 0..BUSY_TRIES {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
        let n = cvt(unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) })
            .map_err(LoopError::GetFree)?;
        let node = PathBuf::from(format!("/dev/loop{n}"));
        let c = CString::new(format!("/dev/loop{n}")).map_err(io::Error::other);
        let dev_fd = c
            .and_then(|c| fd::open(&c, libc::O_RDONLY, 0))
            .map_err(|e| LoopError::OpenDevice(node.clone(), e))?;
        match configure(&dev_fd, file) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(LoopError::Attach(node, e)),
        }
        let file = std::fs::File::from(dev_fd);
        let dev = file
            .metadata()
            .map(|m| std::os::unix::fs::MetadataExt::rdev(&m))
            .map_err(|e| LoopError::OpenDevice(node.clone(), e))?;
        return Ok(Loop {
            _fd: OwnedFd::from(file),
            node,
            dev,
        });
    }
    Err(LoopError::Busy)
}

fn empty_info(flags: u32) -> LoopInfo64 {
    LoopInfo64 {
        lo_device: 0,
        lo_inode: 0,
        lo_rdevice: 0,
        lo_offset: 0,
        lo_sizelimit: 0,
        lo_number: 0,
        lo_encrypt_type: 0,
        lo_encrypt_key_size: 0,
        lo_flags: flags,
        lo_file_name: [0; LO_NAME_SIZE],
        lo_crypt_name: [0; LO_NAME_SIZE],
        lo_encrypt_key: [0; LO_KEY_SIZE],
        lo_init: [0; 2],
    }
}

/// Binds `file` to the device open as `dev`, read-only with autoclear.
fn configure(dev: &OwnedFd, file: BorrowedFd<'_>) -> io::Result<()> {
    let config = LoopConfig {
        fd: file.as_raw_fd() as u32,
        block_size: 0,
        info: empty_info(LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR),
        reserved: [0; 8],
    };
    // SAFETY: `config` is a valid loop_config that outlives the call; the
    // kernel only reads it.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CONFIGURE as _, &config) };
    match cvt(ret) {
        Ok(_) => return Ok(()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOTTY)) => {}
        Err(e) => return Err(e),
    }
    // Before Linux 5.8: bind (read-only, as `file` is), then set the flags.
    // SAFETY: LOOP_SET_FD takes an fd number.
    cvt(unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD as _, file.as_raw_fd()) })?;
    let info = empty_info(LO_FLAGS_AUTOCLEAR);
    // SAFETY: `info` is a valid loop_info64 that outlives the call.
    let ret = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) };
    if let Err(e) = cvt(ret) {
        // SAFETY: LOOP_CLR_FD takes no argument.
        let _ = unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_kernels_sizes() {
        assert_eq!(std::mem::size_of::<LoopInfo64>(), 232);
        assert_eq!(std::mem::size_of::<LoopConfig>(), 304);
    }
}
