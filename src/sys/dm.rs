//! Device-mapper through its control device's ioctls (Documentation/
//! admin-guide/device-mapper and include/uapi/linux/dm-ioctl.h): create a
//! device, load one target into it, resume it, read its status, and
//! remove it, deferred until its last user closes it.
//!
//! Every call is one `struct dm_ioctl` header followed by a payload in one
//! buffer; the kernel writes its answer back into the same buffer.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use super::{cvt, fd};

/// The interface version berth speaks (the kernel checks the major).
const VERSION: [u32; 3] = [4, 0, 0];
const NAME_LEN: usize = 128;
/// `sizeof(struct dm_ioctl)`: 3 version words, 7 u32/i32 fields, a u64,
/// the name (128), the uuid (129) and 7 bytes of padding.
const HEADER: usize = 312;
/// `sizeof(struct dm_target_spec)`: two u64, an i32, a u32, a 16-byte name.
const TARGET_SPEC: usize = 40;
/// Room for an answer (a status line) after the header.
const ANSWER: usize = 4096;

const READONLY_FLAG: u32 = 1 << 0;
const DEFERRED_REMOVE: u32 = 1 << 17;
/// Set by the kernel when the answer did not fit the buffer.
const BUFFER_FULL_FLAG: u32 = 1 << 8;

// _IOWR(0xfd, nr, struct dm_ioctl)
const fn request(nr: u32) -> libc::c_ulong {
    ((3u32 << 30) | ((HEADER as u32) << 16) | (0xfd << 8) | nr) as libc::c_ulong
}
const DEV_CREATE: libc::c_ulong = request(3);
const DEV_REMOVE: libc::c_ulong = request(4);
const DEV_SUSPEND: libc::c_ulong = request(6);
const TABLE_LOAD: libc::c_ulong = request(9);
const TABLE_STATUS: libc::c_ulong = request(12);

/// The device-mapper control device.
pub struct Control(OwnedFd);

/// One target of a table: its sector range, type and parameter line.
pub struct Target<'a> {
    pub sectors: u64,
    pub kind: &'a str,
    pub params: &'a str,
}

impl Control {
    /// Opens /dev/mapper/control. ENOENT there usually means a kernel
    /// without device-mapper (or no devtmpfs node for it).
    pub fn open() -> io::Result<Control> {
        fd::open(c"/dev/mapper/control", libc::O_RDWR | libc::O_CLOEXEC, 0).map(Control)
    }

    /// Creates device `name` holding `target` (read-only), resumes it,
    /// and returns its device number.
    pub fn create_readonly(&self, name: &str, target: &Target<'_>) -> io::Result<libc::dev_t> {
        let mut buf = Header::new(name, 0)?.into_buffer(0);
        self.call(DEV_CREATE, &mut buf)?;
        let loaded = self.load_and_resume(name, target);
        if let Err(e) = loaded {
            let _ = self.remove(name, false);
            return Err(e);
        }
        Ok(read_u64(&buf, 40) as libc::dev_t)
    }

    fn load_and_resume(&self, name: &str, target: &Target<'_>) -> io::Result<()> {
        // The target spec, then its NUL-terminated parameters, padded to 8.
        let mut payload = vec![0u8; TARGET_SPEC];
        payload[8..16].copy_from_slice(&target.sectors.to_ne_bytes());
        let kind = target.kind.as_bytes();
        if kind.len() >= 16 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        payload[24..24 + kind.len()].copy_from_slice(kind);
        payload.extend_from_slice(target.params.as_bytes());
        payload.push(0);
        while payload.len() % 8 != 0 {
            payload.push(0);
        }
        let mut header = Header::new(name, READONLY_FLAG)?;
        header.target_count = 1;
        let mut buf = header.into_buffer(payload.len());
        buf[HEADER..HEADER + payload.len()].copy_from_slice(&payload);
        self.call(TABLE_LOAD, &mut buf)?;
        // DEV_SUSPEND without the suspend flag resumes, which makes the
        // loaded table live.
        let mut buf = Header::new(name, 0)?.into_buffer(0);
        self.call(DEV_SUSPEND, &mut buf)
    }

    /// Removes device `name`; `deferred` lets the kernel do it when the
    /// last opener closes it (at once if nothing has it open).
    pub fn remove(&self, name: &str, deferred: bool) -> io::Result<()> {
        let flags = if deferred { DEFERRED_REMOVE } else { 0 };
        let mut buf = Header::new(name, flags)?.into_buffer(0);
        self.call(DEV_REMOVE, &mut buf)
    }

    /// The status line of device `name`'s first target (for verity: "V"
    /// while every block read so far verified, "C" once one did not).
    pub fn status(&self, name: &str) -> io::Result<String> {
        let mut buf = Header::new(name, 0)?.into_buffer(ANSWER);
        self.call(TABLE_STATUS, &mut buf)?;
        if read_u32(&buf, 28) & BUFFER_FULL_FLAG != 0 {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let start = read_u32(&buf, 16) as usize;
        let count = read_u32(&buf, 20);
        if count == 0 || start + TARGET_SPEC > buf.len() {
            return Ok(String::new());
        }
        let text = &buf[start + TARGET_SPEC..];
        let line = CStr::from_bytes_until_nul(text)
            .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
        Ok(line.to_string_lossy().into_owned())
    }

    fn call(&self, request: libc::c_ulong, buf: &mut [u8]) -> io::Result<()> {
        // SAFETY: `buf` starts with a dm_ioctl header whose data_size is
        // `buf.len()`, so the kernel reads and writes only inside it.
        cvt(unsafe { libc::ioctl(self.0.as_raw_fd(), request as _, buf.as_mut_ptr()) })?;
        Ok(())
    }
}

/// The fields of `struct dm_ioctl` berth sets.
struct Header {
    name: [u8; NAME_LEN],
    flags: u32,
    target_count: u32,
}

impl Header {
    fn new(name: &str, flags: u32) -> io::Result<Header> {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('/') {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        let mut n = [0u8; NAME_LEN];
        n[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Header {
            name: n,
            flags,
            target_count: 0,
        })
    }

    /// The header, laid out as the kernel reads it, with `payload` bytes
    /// of room after it (8-aligned, as the kernel wants).
    fn into_buffer(self, payload: usize) -> Vec<u8> {
        let size = HEADER + payload.next_multiple_of(8);
        let mut buf = vec![0u8; size];
        for (i, v) in VERSION.iter().enumerate() {
            buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_ne_bytes());
        }
        buf[12..16].copy_from_slice(&(size as u32).to_ne_bytes()); // data_size
        buf[16..20].copy_from_slice(&(HEADER as u32).to_ne_bytes()); // data_start
        buf[20..24].copy_from_slice(&self.target_count.to_ne_bytes());
        buf[28..32].copy_from_slice(&self.flags.to_ne_bytes());
        buf[48..48 + NAME_LEN].copy_from_slice(&self.name);
        buf
    }
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap_or([0; 4]))
}

fn read_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // DM_DEV_CREATE and DM_TABLE_LOAD as the uapi macros give them.
        assert_eq!(DEV_CREATE, 0xc138_fd03);
        assert_eq!(TABLE_LOAD, 0xc138_fd09);
        assert_eq!(DEV_REMOVE, 0xc138_fd04);
    }

    #[test]
    fn a_header_is_laid_out_as_struct_dm_ioctl() {
        let mut h = Header::new("berth-app", READONLY_FLAG).unwrap();
        h.target_count = 1;
        let buf = h.into_buffer(45);
        assert_eq!(buf.len(), HEADER + 48);
        assert_eq!(read_u32(&buf, 0), 4);
        assert_eq!(read_u32(&buf, 12) as usize, buf.len());
        assert_eq!(read_u32(&buf, 16) as usize, HEADER);
        assert_eq!(read_u32(&buf, 20), 1);
        assert_eq!(read_u32(&buf, 28), READONLY_FLAG);
        assert_eq!(&buf[48..57], b"berth-app");
        assert_eq!(buf[57], 0);
    }

    #[test]
    fn names_the_kernel_would_refuse_are_refused_first() {
        assert!(Header::new("", 0).is_err());
        assert!(Header::new("a/b", 0).is_err());
        assert!(Header::new(&"x".repeat(NAME_LEN), 0).is_err());
    }
}
