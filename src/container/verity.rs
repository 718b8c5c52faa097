//! dm-verity images: an image file whose blocks the kernel checks against
//! a hash tree on every read, pinned by the root hash in the definition.
//!
//! The tree is made at build time (`veritysetup format`), either after the
//! data in the image file (`hash-offset`) or in a file of its own
//! (`hash-file`); it starts with a 512-byte superblock that gives the block
//! sizes, the data size, the algorithm and the salt. Before any device is
//! made, [`prepare`] reads that superblock and the tree's top block and
//! checks the pinned root hash against it, so a wrong hash refuses the start
//! at once with a clear error; the kernel then checks every block read
//! below that top block (a tampered block reads as EIO). [`activate`]
//! creates the verity device over the loop device(s) the image is attached
//! to.
//!
//! Layout (the kernel's Documentation/admin-guide/device-mapper/verity.rst
//! and cryptsetup's on-disk format): version 1 hashes are
//! sha256(salt || block); each hash block holds as many digests as fit;
//! the levels are stored top first, right after the superblock's block.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::errors;
use crate::sha256::{self, Sha256};
use crate::sys::dm;

const SUPERBLOCK: usize = 512;
const SIGNATURE: &[u8; 8] = b"verity\0\0";
const DIGEST: usize = 32;

/// What the kernel needs for the verity target, checked against the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    pub data_block_size: u32,
    pub hash_block_size: u32,
    pub data_blocks: u64,
    /// In hash blocks, from the start of the hash device.
    pub hash_start_block: u64,
    pub root_hash: String,
    pub salt: String,
}

impl Table {
    /// The verity target's parameter line for the given devices.
    pub fn params(&self, data_dev: libc::dev_t, hash_dev: libc::dev_t) -> String {
        let salt = if self.salt.is_empty() {
            "-"
        } else {
            &self.salt
        };
        format!(
            "1 {}:{} {}:{} {} {} {} {} sha256 {} {}",
            libc::major(data_dev),
            libc::minor(data_dev),
            libc::major(hash_dev),
            libc::minor(hash_dev),
            self.data_block_size,
            self.hash_block_size,
            self.data_blocks,
            self.hash_start_block,
            self.root_hash,
            salt
        )
    }

    /// The size of the verified data, in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.data_blocks * u64::from(self.data_block_size) / 512
    }
}

/// Why a verity image cannot be used.
#[derive(Debug)]
pub enum VerityError {
    Read {
        path: PathBuf,
        err: io::Error,
    },
    Format {
        path: PathBuf,
        why: String,
    },
    WrongRootHash {
        image: PathBuf,
        pinned: String,
        found: String,
    },
    NoDeviceMapper(io::Error),
    Device {
        name: String,
        err: io::Error,
    },
}

impl fmt::Display for VerityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VerityError::Read { path, err } => write!(
                f,
                "read the verity hash tree in {}: {}",
                path.display(),
                errors::io_text(err)
            ),
            VerityError::Format { path, why } => {
                write!(f, "verity hash tree in {}: {why}", path.display())
            }
            VerityError::WrongRootHash {
                image,
                pinned,
                found,
            } => write!(
                f,
                "image {} does not match its verity.root-hash: pinned {pinned}, the image's hash tree gives {found}",
                image.display()
            ),
            VerityError::NoDeviceMapper(err) => write!(
                f,
                "verity needs device-mapper: open /dev/mapper/control: {} (a kernel without CONFIG_DM_VERITY cannot verify images)",
                errors::io_text(err)
            ),
            VerityError::Device { name, err } => {
                write!(f, "create verity device {name}: {}", errors::io_text(err))
            }
        }
    }
}

/// Reads the superblock at `hash_offset` of the hash file (the image
/// itself when `hash_file` is None), checks the layout and the root hash
/// pinned in the definition, and returns the table to activate.
pub fn prepare(
    image: &Path,
    root_hash: &str,
    hash_offset: Option<u64>,
    hash_file: Option<&Path>,
) -> Result<Table, VerityError> {
    let hash_path = hash_file.unwrap_or(image);
    let offset = hash_offset.unwrap_or(0);
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |err| VerityError::Read { path, err }
    };
    let format_err = |why: String| VerityError::Format {
        path: hash_path.to_path_buf(),
        why,
    };
    let hashes = File::open(hash_path).map_err(read_err(hash_path))?;
    let mut sb = [0u8; SUPERBLOCK];
    hashes
        .read_exact_at(&mut sb, offset)
        .map_err(read_err(hash_path))?;
    let sb =
        Superblock::parse(&sb).map_err(|why| format_err(format!("at offset {offset}: {why}")))?;

    let data_size = File::open(image)
        .and_then(|f| f.metadata())
        .map_err(read_err(image))?
        .len();
    let data_end = sb.data_blocks * u64::from(sb.data_block_size);
    let hash_bytes = u64::from(sb.hash_block_size);
    // The tree starts at the first hash block after the superblock.
    let hash_start_block = (offset + SUPERBLOCK as u64).div_ceil(hash_bytes);
    if hash_file.is_none() && data_end > offset {
        return Err(format_err(format!(
            "the data ({data_end} bytes) runs into the hash tree at hash-offset {offset}"
        )));
    }
    if data_end > data_size {
        return Err(format_err(format!(
            "the superblock gives {data_end} bytes of data but {} has {data_size}",
            image.display()
        )));
    }

    // The top level: one block whose hash is the root (or the only data
    // block, when the data is a single block and the tree has no level).
    let mut top = vec![0u8; sb.hash_block_size as usize];
    let (source, at) = if sb.levels() == 0 {
        top.resize(sb.data_block_size as usize, 0);
        (image, 0)
    } else {
        (hash_path, hash_start_block * hash_bytes)
    };
    File::open(source)
        .and_then(|f| f.read_exact_at(&mut top, at))
        .map_err(read_err(source))?;
    let mut h = Sha256::new();
    h.update(&sb.salt);
    h.update(&top);
    let found = sha256::hex(&h.finish());
    let pinned = root_hash.to_ascii_lowercase();
    if found != pinned {
        return Err(VerityError::WrongRootHash {
            image: image.to_path_buf(),
            pinned,
            found,
        });
    }
    Ok(Table {
        data_block_size: sb.data_block_size,
        hash_block_size: sb.hash_block_size,
        data_blocks: sb.data_blocks,
        hash_start_block,
        root_hash: found,
        salt: sha256::hex(&sb.salt),
    })
}

/// A live verity device. Dropping it leaves it in place; [`Device::release`]
/// hands it to the kernel to remove once its last user (the container's
/// mount) is gone.
pub struct Device {
    pub name: String,
    /// The block device node to mount, e.g. /dev/dm-3.
    pub node: PathBuf,
    control: dm::Control,
    /// The device held open (see [`Device::hold`]).
    held: Option<File>,
}

/// Creates the verity device `dm_name` over the data and hash devices.
pub fn activate(
    dm_name: &str,
    table: &Table,
    data_dev: libc::dev_t,
    hash_dev: libc::dev_t,
) -> Result<Device, VerityError> {
    let control = dm::Control::open().map_err(VerityError::NoDeviceMapper)?;
    let device_err = |err| VerityError::Device {
        name: dm_name.to_string(),
        err,
    };
    let params = table.params(data_dev, hash_dev);
    let target = dm::Target {
        sectors: table.sectors(),
        kind: "verity",
        params: &params,
    };
    let dev = control
        .create_readonly(dm_name, &target)
        .map_err(device_err)?;
    // devtmpfs names device-mapper nodes by minor number.
    let node = PathBuf::from(format!("/dev/dm-{}", libc::minor(dev)));
    let device = Device {
        name: dm_name.to_string(),
        node,
        control,
        held: None,
    };
    match std::fs::metadata(&device.node) {
        Ok(m) if std::os::unix::fs::MetadataExt::rdev(&m) == dev => Ok(device),
        Ok(_) => Err(device.fail(io::Error::other(
            "its node in /dev is not the device created",
        ))),
        Err(err) => Err(device.fail(err)),
    }
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "verity device {} ({})", self.name, self.node.display())
    }
}

impl Device {
    fn fail(self, err: io::Error) -> VerityError {
        let _ = self.control.remove(&self.name, false);
        VerityError::Device {
            name: self.name.clone(),
            err,
        }
    }

    /// Opens the device and keeps it open as long as this value lives: a
    /// device marked for deferred removal stays while it is open, so its
    /// status can still be read when the container (and with it the
    /// mount) is gone.
    pub fn hold(&mut self) -> io::Result<()> {
        self.held = Some(File::open(&self.node)?);
        Ok(())
    }

    /// Whether the kernel has found a block that does not match the tree.
    pub fn corrupted(&self) -> io::Result<bool> {
        Ok(self.control.status(&self.name)?.trim() == "C")
    }

    /// Asks the kernel to remove the device when nothing holds it open.
    pub fn release(&self) -> io::Result<()> {
        self.control.remove(&self.name, true)
    }
}

#[derive(Debug)]
struct Superblock {
    data_block_size: u32,
    hash_block_size: u32,
    data_blocks: u64,
    salt: Vec<u8>,
}

impl Superblock {
    /// The on-disk superblock: signature, version, hash type, uuid,
    /// algorithm, block sizes, data blocks, salt size, salt.
    fn parse(b: &[u8; SUPERBLOCK]) -> Result<Superblock, String> {
        let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if &b[0..8] != SIGNATURE {
            return Err("no verity superblock (made with veritysetup format?)".to_string());
        }
        if u32_at(8) != 1 {
            return Err(format!("superblock version {} is not 1", u32_at(8)));
        }
        if u32_at(12) != 1 {
            return Err(format!("hash type {} is not 1", u32_at(12)));
        }
        let algorithm = &b[32..64];
        let end = algorithm.iter().position(|&c| c == 0).unwrap_or(32);
        if &algorithm[..end] != b"sha256" {
            return Err(format!(
                "hash algorithm {:?}: only sha256 is supported",
                String::from_utf8_lossy(&algorithm[..end])
            ));
        }
        let data_block_size = u32_at(64);
        let hash_block_size = u32_at(68);
        for (what, size) in [("data", data_block_size), ("hash", hash_block_size)] {
            if !(512..=65536).contains(&size) || !size.is_power_of_two() {
                return Err(format!("{what} block size {size}"));
            }
        }
        let data_blocks = u64::from_le_bytes(b[72..80].try_into().unwrap_or([0; 8]));
        if data_blocks == 0 {
            return Err("no data blocks".to_string());
        }
        let salt_size = u16::from_le_bytes([b[80], b[81]]) as usize;
        if salt_size > 256 {
            return Err(format!("salt size {salt_size}"));
        }
        Ok(Superblock {
            data_block_size,
            hash_block_size,
            data_blocks,
            salt: b[88..88 + salt_size].to_vec(),
        })
    }

    /// Levels in the tree: as many as it takes for one block to cover
    /// every data block.
    fn levels(&self) -> u32 {
        let per_block = u64::from(self.hash_block_size) / DIGEST as u64;
        let mut levels = 0;
        let mut covered = 1u64;
        while covered < self.data_blocks {
            covered = covered.saturating_mul(per_block);
            levels += 1;
        }
        levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(data_blocks: u64, salt: &[u8]) -> [u8; SUPERBLOCK] {
        let mut b = [0u8; SUPERBLOCK];
        b[0..8].copy_from_slice(SIGNATURE);
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        b[12..16].copy_from_slice(&1u32.to_le_bytes());
        b[32..38].copy_from_slice(b"sha256");
        b[64..68].copy_from_slice(&4096u32.to_le_bytes());
        b[68..72].copy_from_slice(&4096u32.to_le_bytes());
        b[72..80].copy_from_slice(&data_blocks.to_le_bytes());
        b[80..82].copy_from_slice(&(salt.len() as u16).to_le_bytes());
        b[88..88 + salt.len()].copy_from_slice(salt);
        b
    }

    #[test]
    fn superblock_fields_and_levels() {
        let sb = Superblock::parse(&superblock(256, &[0xab; 32])).unwrap();
        assert_eq!((sb.data_block_size, sb.data_blocks), (4096, 256));
        assert_eq!(sb.salt, vec![0xab; 32]);
        // 128 digests a block: 256 blocks need two levels.
        assert_eq!(sb.levels(), 2);
        assert_eq!(
            Superblock::parse(&superblock(128, &[])).unwrap().levels(),
            1
        );
        assert_eq!(Superblock::parse(&superblock(1, &[])).unwrap().levels(), 0);
    }

    #[test]
    fn bad_superblocks_are_named() {
        let mut b = superblock(1, &[]);
        b[0] = b'x';
        assert!(
            Superblock::parse(&b)
                .unwrap_err()
                .contains("no verity superblock")
        );
        let mut b = superblock(1, &[]);
        b[32..38].copy_from_slice(b"sha1\0\0");
        assert!(Superblock::parse(&b).unwrap_err().contains("only sha256"));
        let mut b = superblock(1, &[]);
        b[64..68].copy_from_slice(&1000u32.to_le_bytes());
        assert!(
            Superblock::parse(&b)
                .unwrap_err()
                .contains("data block size 1000")
        );
    }

    #[test]
    fn the_table_line_is_what_the_verity_target_reads() {
        let t = Table {
            data_block_size: 4096,
            hash_block_size: 4096,
            data_blocks: 256,
            hash_start_block: 257,
            root_hash: "ab".repeat(32),
            salt: String::new(),
        };
        let dev = libc::makedev(7, 3);
        assert_eq!(
            t.params(dev, dev),
            format!("1 7:3 7:3 4096 4096 256 257 sha256 {} -", "ab".repeat(32))
        );
        assert_eq!(t.sectors(), 2048);
    }

    /// A tree made by veritysetup (cryptsetup-bin, installed by tests/run)
    /// after the data in one file and in a file of its own: the root hash
    /// it prints is accepted, any other is refused.
    #[test]
    fn trees_made_by_veritysetup_are_read_and_checked() {
        let dir = crate::testing::TempDir::new("verity");
        let data: Vec<u8> = (0..300 * 4096u32).map(|i| (i * 2654435761) as u8).collect();
        let both = dir.path().join("both.img");
        std::fs::write(&both, &data).unwrap();
        let (data_file, hash_file) = (dir.path().join("data.img"), dir.path().join("hash.img"));
        std::fs::write(&data_file, &data).unwrap();
        let format = |args: &[&str]| -> String {
            let out = std::process::Command::new("veritysetup")
                .arg("format")
                .args(args)
                .output()
                .expect("run veritysetup (Debian's cryptsetup-bin)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let line = text.lines().find(|l| l.starts_with("Root hash:")).unwrap();
            line.rsplit(|c: char| c.is_whitespace())
                .next()
                .unwrap()
                .to_string()
        };
        let offset = data.len() as u64;
        let b = both.to_str().unwrap();
        let root = format(&[&format!("--hash-offset={offset}"), b, b]);
        let t = prepare(&both, &root.to_uppercase(), Some(offset), None).unwrap();
        assert_eq!((t.data_blocks, t.hash_start_block), (300, 301));
        assert_eq!(t.root_hash, root);
        assert_eq!(t.salt.len(), 64);

        let root2 = format(&[data_file.to_str().unwrap(), hash_file.to_str().unwrap()]);
        let t = prepare(&data_file, &root2, None, Some(&hash_file)).unwrap();
        assert_eq!(t.hash_start_block, 1);

        let wrong = format!(
            "{}{}",
            &root[..63],
            if root.ends_with('0') { '1' } else { '0' }
        );
        let err = prepare(&both, &wrong, Some(offset), None).unwrap_err();
        assert!(matches!(err, VerityError::WrongRootHash { .. }), "{err}");
        assert!(err.to_string().contains(&root), "{err}");
        // The tree's top block changed: refused before any device exists.
        let mut tampered = std::fs::read(&both).unwrap();
        tampered[(offset + 4096) as usize + 5] ^= 1;
        std::fs::write(&both, &tampered).unwrap();
        assert!(matches!(
            prepare(&both, &root, Some(offset), None),
            Err(VerityError::WrongRootHash { .. })
        ));
        // Not a tree at all.
        let err = prepare(&data_file, &root2, Some(0), None).unwrap_err();
        assert!(err.to_string().contains("no verity superblock"), "{err}");
    }
}
