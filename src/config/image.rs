//! A container's root as an image file: the `image`, `writable` and
//! `verity` keys, the rules that tie them to `rootfs`, what kind of file
//! system an image holds (by its magic number), and the identity of an
//! image file that a definition's hash covers, so that a replaced image
//! is a changed definition.

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::container_file::fnv1a64;
use super::fields::{field_error, get_path, get_str, get_uint, members, quoted, unknown_key};
use super::types::{ConfigError, ContainerSpec, Verity, VerityHashes, Writable};
use crate::json::{Node, Value};

/// The file systems an image may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFs {
    Squashfs,
    Erofs,
}

impl ImageFs {
    /// The name mount(2) knows it by.
    pub fn name(self) -> &'static str {
        match self {
            ImageFs::Squashfs => "squashfs",
            ImageFs::Erofs => "erofs",
        }
    }
}

/// squashfs: "hsqs" (0x73717368 little-endian) at byte 0.
const SQUASHFS_MAGIC: [u8; 4] = *b"hsqs";
/// erofs: 0xE0F5E1E2 little-endian at byte 1024.
const EROFS_MAGIC: [u8; 4] = 0xE0F5_E1E2u32.to_le_bytes();
const EROFS_MAGIC_AT: u64 = 1024;

/// "none", "tmpfs" or "persistent".
pub(super) fn parse_writable(s: &str) -> Result<Writable, String> {
    match s {
        "none" => Ok(Writable::None),
        "tmpfs" => Ok(Writable::Tmpfs),
        "persistent" => Ok(Writable::Persistent),
        _ => Err(format!(
            "expected \"none\", \"tmpfs\" or \"persistent\", found {}",
            quoted(s)
        )),
    }
}

/// `{"root-hash": HEX, "hash-offset": N}` or `{"root-hash": HEX,
/// "hash-file": PATH}`.
pub(super) fn get_verity(node: &Node, file: &Path) -> Result<Verity, ConfigError> {
    let Value::Object(_) = &node.value else {
        let reason = super::fields::wrong_type("an object", node);
        return Err(field_error(file, "verity", reason));
    };
    let mut root_hash = None;
    let mut offset = None;
    let mut hash_file = None;
    for (key, value) in members(node) {
        let err = |reason: String| field_error(file, format!("verity.{key}"), reason);
        match key.as_str() {
            "root-hash" => {
                let s = get_str(value).map_err(err)?;
                let hex = s.bytes().all(|b| b.is_ascii_hexdigit());
                if !hex || s.len() % 2 != 0 || !(2..=128).contains(&s.len()) {
                    return Err(err(format!(
                        "expected an even number (2 to 128) of hex digits, found {}",
                        quoted(s)
                    )));
                }
                root_hash = Some(s.to_ascii_lowercase());
            }
            "hash-offset" => {
                let n = get_uint(value, 0, i64::MAX as u64).map_err(err)?;
                if n % 512 != 0 {
                    return Err(err(format!("must be a multiple of 512, found {n}")));
                }
                offset = Some(n);
            }
            "hash-file" => hash_file = Some(get_path(value, file).map_err(err)?),
            _ => return Err(unknown_key(file, "verity.", key)),
        }
    }
    let root_hash = root_hash
        .ok_or_else(|| field_error(file, "verity.root-hash", "required key is missing"))?;
    let hashes = match (offset, hash_file) {
        (Some(n), None) => VerityHashes::Offset(n),
        (None, Some(p)) => VerityHashes::File(p),
        (Some(_), Some(_)) => {
            return Err(field_error(
                file,
                "verity",
                "give one of \"hash-offset\" and \"hash-file\", not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                file,
                "verity",
                "give \"hash-offset\" (hash tree in the image) or \"hash-file\"",
            ));
        }
    };
    Ok(Verity { root_hash, hashes })
}

/// The rules between the keys, once all are read: exactly one of `image`
/// and `rootfs`, and `verity` only with `image`.
pub(super) fn check_root_keys(
    spec: &ContainerSpec,
    root: &Node,
    file: &Path,
) -> Result<(), ConfigError> {
    let has = |key: &str| root.get(key).is_some();
    match (has("image"), has("rootfs")) {
        (true, true) => {
            return Err(field_error(
                file,
                "image",
                "give one of \"image\" and \"rootfs\", not both",
            ));
        }
        (false, false) => {
            return Err(field_error(
                file,
                "rootfs",
                "required key is missing (give \"rootfs\" or \"image\")",
            ));
        }
        _ => {}
    }
    if spec.verity.is_some() && spec.image.is_none() {
        return Err(field_error(
            file,
            "verity",
            "only allowed with \"image\" (a rootfs directory has no hash tree)",
        ));
    }
    Ok(())
}

/// Writes every relative path among the root keys resolved, so that the
/// canonical text means the same wherever it is parsed again.
pub(super) fn resolve_paths(root: &mut Node, spec: &ContainerSpec) {
    let Value::Object(members) = &mut root.value else {
        return;
    };
    let hash_file = match spec.verity.as_ref().map(|v| &v.hashes) {
        Some(VerityHashes::File(p)) => Some(p),
        _ => None,
    };
    for (key, node) in members.iter_mut() {
        match key.as_str() {
            "rootfs" => set_resolved(node, Some(&spec.rootfs)),
            "image" => set_resolved(node, spec.image.as_ref()),
            "verity" => {
                if let Value::Object(inner) = &mut node.value
                    && let Some((_, node)) = inner.iter_mut().find(|(k, _)| k == "hash-file")
                {
                    set_resolved(node, hash_file);
                }
            }
            _ => {}
        }
    }
}

fn set_resolved(node: &mut Node, resolved: Option<&PathBuf>) {
    if let Value::String(s) = &mut node.value
        && Path::new(s.as_str()).is_relative()
        && let Some(resolved) = resolved.and_then(|p| p.to_str())
    {
        *s = resolved.to_string();
    }
}

/// The file system in the image open as `file`, from its magic number;
/// `None` when it holds neither squashfs nor erofs.
pub fn read_image_fs(file: &File) -> io::Result<Option<ImageFs>> {
    let mut magic = [0u8; 4];
    let at_start = read_full_at(file, &mut magic, 0)?;
    if at_start && magic == SQUASHFS_MAGIC {
        return Ok(Some(ImageFs::Squashfs));
    }
    let at_1024 = read_full_at(file, &mut magic, EROFS_MAGIC_AT)?;
    if at_1024 && magic == EROFS_MAGIC {
        return Ok(Some(ImageFs::Erofs));
    }
    Ok(None)
}

/// Whether `buf` could be filled from `offset` (false: the file ends
/// before).
fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => return Ok(false),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

/// A definition's hash with the identity of its image file mixed in
/// (device, inode, size, modification time): a file replaced or rewritten
/// makes a changed definition, which a reload recreates, while the running
/// container keeps the image its loop device holds. The daemon takes it
/// from a stat of the path; the monitor from the file it opened, so the
/// runtime record names the image the run really uses.
pub fn image_identity_hash(hash: u64, meta: &fs::Metadata) -> u64 {
    let mut bytes = Vec::with_capacity(48);
    for v in [
        hash,
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime() as u64,
        meta.mtime_nsec() as u64,
    ] {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    fnv1a64(&bytes)
}

/// The host's side of an image definition: the image is a regular file
/// holding squashfs or erofs, and its verity hash file (if any) exists.
/// Returns the definition with the image's identity in its hash.
pub(super) fn check_image_host(spec: &ContainerSpec, file: &Path) -> Result<u64, ConfigError> {
    let Some(image) = &spec.image else {
        return Ok(spec.hash);
    };
    let err = |reason: String| field_error(file, "image", format!("{}: {reason}", image.display()));
    // Non-blocking: a FIFO put at the path cannot hang the daemon.
    let opened = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(image)
        .map_err(|e| err(super::load::io_reason(&e)))?;
    let meta = opened
        .metadata()
        .map_err(|e| err(super::load::io_reason(&e)))?;
    if !meta.is_file() {
        return Err(err("is not a regular file".to_string()));
    }
    match read_image_fs(&opened) {
        Ok(Some(_)) => {}
        Ok(None) => {
            return Err(err(
                "is not a squashfs or erofs image (no squashfs magic at byte 0, no erofs magic at byte 1024)"
                    .to_string(),
            ));
        }
        Err(e) => return Err(err(super::load::io_reason(&e))),
    }
    if let Some(Verity {
        hashes: VerityHashes::File(hash_file),
        ..
    }) = &spec.verity
    {
        match fs::metadata(hash_file) {
            Ok(m) if m.is_file() => {}
            Ok(_) => {
                let reason = format!("{}: is not a regular file", hash_file.display());
                return Err(field_error(file, "verity.hash-file", reason));
            }
            Err(e) => {
                let reason = format!("{}: {}", hash_file.display(), super::load::io_reason(&e));
                return Err(field_error(file, "verity.hash-file", reason));
            }
        }
    }
    Ok(image_identity_hash(spec.hash, &meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_container;
    use crate::config::testing::{TempDir, field};

    const FILE: &str = "/etc/berth/containers/app.json";

    fn parse(text: &str) -> Result<ContainerSpec, (Option<String>, String)> {
        parse_container("app", text, Path::new(FILE)).map_err(|e| (e.field, e.reason))
    }

    #[test]
    fn image_keys_parse() {
        let s = parse(r#"{"image": "app.sqfs", "command": ["/bin/app"]}"#).unwrap();
        assert_eq!(
            s.image.as_deref(),
            Some(Path::new("/etc/berth/containers/app.sqfs"))
        );
        assert_eq!(s.rootfs, PathBuf::new());
        assert_eq!(s.writable, None);
        // The canonical text carries the resolved path.
        assert!(
            s.canonical.contains("\"/etc/berth/containers/app.sqfs\""),
            "{}",
            s.canonical
        );
        let again = parse_container("app", &s.canonical, Path::new("/elsewhere/app.json")).unwrap();
        assert_eq!(again.image, s.image);
        assert_eq!(again.hash, s.hash);

        for (text, want) in [
            ("none", Writable::None),
            ("tmpfs", Writable::Tmpfs),
            ("persistent", Writable::Persistent),
        ] {
            let s = parse(&format!(
                r#"{{"rootfs": "/srv", "writable": "{text}", "command": ["x"]}}"#
            ))
            .unwrap();
            assert_eq!(s.writable, Some(want));
        }
        let s = parse(
            r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "AB01", "hash-offset": 4096}}"#,
        )
        .unwrap();
        assert_eq!(
            s.verity,
            Some(Verity {
                root_hash: "ab01".into(),
                hashes: VerityHashes::Offset(4096)
            })
        );
        let s = parse(
            r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "ab", "hash-file": "i.hash"}}"#,
        )
        .unwrap();
        assert_eq!(
            s.verity.unwrap().hashes,
            VerityHashes::File("/etc/berth/containers/i.hash".into())
        );
    }

    #[test]
    fn image_keys_are_checked() {
        let cases = [
            (
                r#"{"image": "/i", "rootfs": "/r", "command": ["x"]}"#,
                field("image", "give one of \"image\" and \"rootfs\", not both"),
            ),
            (
                r#"{"command": ["x"]}"#,
                field(
                    "rootfs",
                    "required key is missing (give \"rootfs\" or \"image\")",
                ),
            ),
            (
                r#"{"rootfs": "/r", "command": ["x"], "verity": {"root-hash": "ab", "hash-offset": 0}}"#,
                field(
                    "verity",
                    "only allowed with \"image\" (a rootfs directory has no hash tree)",
                ),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "writable": "yes"}"#,
                field(
                    "writable",
                    "expected \"none\", \"tmpfs\" or \"persistent\", found \"yes\"",
                ),
            ),
            (
                r#"{"image": "", "command": ["x"]}"#,
                field("image", "must not be empty"),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "xyz", "hash-offset": 0}}"#,
                field(
                    "verity.root-hash",
                    "expected an even number (2 to 128) of hex digits, found \"xyz\"",
                ),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "ab"}}"#,
                field(
                    "verity",
                    "give \"hash-offset\" (hash tree in the image) or \"hash-file\"",
                ),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "ab", "hash-offset": 4096, "hash-file": "/h"}}"#,
                field(
                    "verity",
                    "give one of \"hash-offset\" and \"hash-file\", not both",
                ),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"hash-offset": 4096}}"#,
                field("verity.root-hash", "required key is missing"),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "ab", "hash-offset": 100}}"#,
                field("verity.hash-offset", "must be a multiple of 512, found 100"),
            ),
            (
                r#"{"image": "/i", "command": ["x"], "verity": {"root-hash": "ab", "salt": 1}}"#,
                field("verity.salt", "unknown key"),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(text).unwrap_err(), want, "{text}");
        }
    }

    #[test]
    fn magic_and_identity() {
        let tmp = TempDir::new("image");
        let write = |name: &str, bytes: &[u8]| {
            let p = tmp.0.join(name);
            fs::write(&p, bytes).unwrap();
            p
        };
        let mut erofs = vec![0u8; 2048];
        erofs[1024..1028].copy_from_slice(&EROFS_MAGIC);
        let fs_of = |p: &Path| read_image_fs(&File::open(p).unwrap()).unwrap();
        assert_eq!(fs_of(&write("s", b"hsqs....")), Some(ImageFs::Squashfs));
        assert_eq!(fs_of(&write("e", &erofs)), Some(ImageFs::Erofs));
        assert_eq!(fs_of(&write("short", b"hs")), None);
        assert_eq!(fs_of(&write("text", &[b'x'; 4096])), None);

        let text = format!(
            r#"{{"image": "{}", "command": ["x"]}}"#,
            tmp.0.join("s").display()
        );
        let file = tmp.0.join("app.json");
        let spec = parse_container("app", &text, &file).unwrap();
        let first = check_image_host(&spec, &file).unwrap();
        assert_ne!(first, spec.hash);
        assert_eq!(check_image_host(&spec, &file).unwrap(), first);
        // Replaced by another file: another identity.
        let other = write("s.new", b"hsqs....");
        fs::rename(other, tmp.0.join("s")).unwrap();
        assert_ne!(check_image_host(&spec, &file).unwrap(), first);

        let text = format!(
            r#"{{"image": "{}", "command": ["x"]}}"#,
            tmp.0.join("text").display()
        );
        let spec = parse_container("app", &text, &file).unwrap();
        let e = check_image_host(&spec, &file).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("image"));
        assert!(e.reason.ends_with("text: is not a squashfs or erofs image (no squashfs magic at byte 0, no erofs magic at byte 1024)"), "{}", e.reason);
        let spec = parse_container(
            "app",
            r#"{"image": "/nonexistent/i", "command": ["x"]}"#,
            &file,
        )
        .unwrap();
        let e = check_image_host(&spec, &file).unwrap_err();
        assert_eq!(e.reason, "/nonexistent/i: no such file or directory");
    }
}
