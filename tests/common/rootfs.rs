//! The busybox rootfs every test container runs in: Debian's statically
//! linked busybox (package busybox-static), one symlink per applet the tests
//! use, and the empty directories a container runtime mounts over.

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

/// Where Debian's busybox-static puts the binary.
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// Applets linked into rootfs/bin.
pub const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "sleep", "yes", "dd", "hostname", "ls", "true", "false", "kill", "wc",
    "head", "tail", "seq", "id", "mount", "readlink", "stat", "touch", "test", "env", "pwd", "ps",
    "ip", "tr",
];

/// Directories created empty in the rootfs.
pub const EMPTY_DIRS: &[&str] = &["proc", "dev", "sys", "tmp", "etc", "data"];

/// The host's busybox, or why it cannot be used in an empty rootfs.
pub fn static_busybox() -> Result<PathBuf, String> {
    let path = BUSYBOX_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or("busybox not found (looked in /bin and /usr/bin)")?;
    let elf = fs::read(&path).map_err(|e| format!("read {}: {e}", path.display()))?;
    match has_interpreter(&elf) {
        Some(false) => Ok(path),
        Some(true) => Err(format!(
            "{} is dynamically linked, a container rootfs needs busybox-static",
            path.display()
        )),
        None => Err(format!("{} is not a 64-bit ELF executable", path.display())),
    }
}

/// Builds the rootfs at `dir` around a copy of `busybox`.
pub fn build(dir: &Path, busybox: &Path) -> io::Result<()> {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin)?;
    fs::copy(busybox, bin.join("busybox"))?;
    for applet in APPLETS {
        symlink("busybox", bin.join(applet))?;
    }
    for empty in EMPTY_DIRS {
        fs::create_dir_all(dir.join(empty))?;
    }
    Ok(())
}

/// Whether a little-endian ELF64 file asks for a program interpreter
/// (PT_INTERP), i.e. is dynamically linked; None if it is not such a file.
fn has_interpreter(elf: &[u8]) -> Option<bool> {
    const PT_INTERP: u32 = 3;
    if elf.get(..6)? != b"\x7fELF\x02\x01" {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(elf.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(elf.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(elf.get(at..at + 8)?.try_into().ok()?));
    let phoff = usize::try_from(u64_at(0x20)?).ok()?;
    let entry_size = usize::from(u16_at(0x36)?);
    let count = usize::from(u16_at(0x38)?);
    for i in 0..count {
        if u32_at(phoff + i * entry_size)? == PT_INTERP {
            return Some(true);
        }
    }
    Some(false)
}
