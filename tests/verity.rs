//! Verity images through the real binary: an image whose hash tree
//! (made by Debian's veritysetup, after the data or in a file of its own)
//! does not give the root hash pinned in the definition is refused before
//! anything is set up, naming both hashes; one that does is mounted through
//! a dm-verity device, and a block changed afterwards fails its reads and
//! is reported when the run ends. The kernel of the development machine has
//! no device-mapper (CONFIG_MD off): there the matching image's start fails
//! naming that, and the check of a tampered block cannot run (see
//! `a_matching_image_runs_where_the_kernel_can_verify_it`; tests/verity_vm.rs
//! runs it in a VM whose kernel has device-mapper).

mod common;

use std::fs;
use std::path::Path;

use common::images::{LoopGuard, VerityImages, loops_backed_by};
use common::*;

const ON_DEMAND: &str = r#"{"autostart": false, "restart": "no"}"#;
/// A pattern that occurs once in the image: the file /data/blob.
const BLOB_LINE: &str = "verity-blob-pattern-0123456789abcdef\n";

/// The world's rootfs with the blob, as the two images of
/// `VerityImages`, in the world's `images` directory.
fn build(w: &World) -> VerityImages {
    fs::write(w.rootfs().join("data/blob"), BLOB_LINE.repeat(2048)).unwrap();
    let dir = w.root.join("images");
    fs::create_dir_all(&dir).unwrap();
    VerityImages::build(&w.rootfs(), &dir)
}

/// A definition of `v.image` pinned by `root_hash`, its tree appended.
fn with_offset(v: &VerityImages, root_hash: &str, command: &[&str]) -> String {
    let verity = format!(
        r#"{{"verity": {{"root-hash": {}, "hash-offset": {}}}}}"#,
        json::string(root_hash),
        v.offset
    );
    definition(&v.image, command, &verity)
}

/// A definition of `v.data` pinned by `root_hash`, its tree in a file.
fn with_hash_file(v: &VerityImages, root_hash: &str, command: &[&str]) -> String {
    let verity = format!(
        r#"{{"verity": {{"root-hash": {}, "hash-file": {}}}}}"#,
        json::string(root_hash),
        json::string(v.hash_file.to_str().unwrap())
    );
    definition(&v.data, command, &verity)
}

fn definition(image: &Path, command: &[&str], extra: &str) -> String {
    let base = format!(
        "{{\"image\": {}, \"command\": {}}}",
        json::string(image.to_str().unwrap()),
        json::string_array(command)
    );
    json::merge(&json::merge(&base, ON_DEMAND), extra)
}

/// Another hash of the same length: the last digit changed.
fn wrong(hash: &str) -> String {
    let last = if hash.ends_with('0') { '1' } else { '0' };
    format!("{}{last}", &hash[..hash.len() - 1])
}

fn start_error(w: &World, name: &str) -> String {
    let out = w.berth(&["start", name]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_wrong_root_hash_refuses_the_start_naming_both_hashes() {
    let mut w = World::new();
    let v = build(&w);
    let _loops = LoopGuard { dir: v.dir.clone() };
    let _d = w.start_daemon(&[]);
    for (name, json, image, found) in [
        (
            "after",
            with_offset(&v, &wrong(&v.root_hash), &["/bin/true"]),
            &v.image,
            &v.root_hash,
        ),
        (
            "apart",
            with_hash_file(&v, &wrong(&v.hash_file_root), &["/bin/true"]),
            &v.data,
            &v.hash_file_root,
        ),
    ] {
        w.write_container(name, &json);
        w.berth_ok(&["reload"]);
        let err = start_error(&w, name);
        let want = format!(
            "image {}: verity: image {} does not match its verity.root-hash: pinned {}, the image's hash tree gives {found}",
            image.display(),
            image.display(),
            wrong(found)
        );
        assert!(err.contains(&want), "want {want:?}\ngot: {err}");
        assert_eq!(w.inspect(name).status, "failed");
    }
    // Refused before a device was made: no loop device is left.
    wait_for(SHORT, "no loop device on the images", || {
        loops_backed_by(&v.dir).is_empty()
    });
    // A tree that is not one is named as such.
    w.write_container(
        "none",
        &definition(
            &v.data,
            &["/bin/true"],
            &format!(
                r#"{{"verity": {{"root-hash": {}, "hash-offset": 0}}}}"#,
                json::string(&v.root_hash)
            ),
        ),
    );
    w.berth_ok(&["reload"]);
    let err = start_error(&w, "none");
    assert!(err.contains("no verity superblock"), "{err}");
    w.cleanup().unwrap();
}

/// With device-mapper: the container reads its blob through the verity
/// device; after a byte of the blob is changed in the image file, a new run
/// reading it fails with an I/O error and berth names the image as failing
/// verification. Without device-mapper: the start fails saying so, after
/// the root hash was checked (a wrong one is refused as above).
#[test]
fn a_matching_image_runs_where_the_kernel_can_verify_it() {
    let mut w = World::new();
    let v = build(&w);
    let _loops = LoopGuard { dir: v.dir.clone() };
    let read_blob = ["/bin/sh", "-c", "wc -c < /data/blob"];
    w.write_container("app", &with_offset(&v, &v.root_hash, &read_blob));
    w.write_container("apart", &with_hash_file(&v, &v.hash_file_root, &read_blob));
    let _d = w.start_daemon(&[]);
    if !Path::new("/dev/mapper/control").exists() {
        for name in ["app", "apart"] {
            let err = start_error(&w, name);
            assert!(
                err.contains(
                    "verity needs device-mapper: open /dev/mapper/control: No such file or directory"
                ),
                "{err}"
            );
        }
        wait_for(SHORT, "no loop device on the images", || {
            loops_backed_by(&v.dir).is_empty()
        });
        w.cleanup().unwrap();
        return;
    }
    for name in ["app", "apart"] {
        assert_eq!(w.start_wait(name), 0, "{name}");
        let (out, _) = w.logs(name, &[]);
        assert!(out.contains(&(BLOB_LINE.len() * 2048).to_string()), "{out}");
    }
    // Change one byte of the blob in the data region.
    let mut bytes = fs::read(&v.image).unwrap();
    let at = bytes
        .windows(BLOB_LINE.len())
        .position(|win| win == BLOB_LINE.as_bytes())
        .expect("the blob is stored uncompressed");
    assert!((at as u64) < v.offset);
    bytes[at] ^= 0x20;
    fs::write(&v.image, &bytes).unwrap();
    w.berth_ok(&["reload"]);
    assert_ne!(w.start_wait("app"), 0);
    let i = w.inspect("app");
    let (_, err) = w.logs("app", &[]);
    assert!(
        err.contains("I/O error") || err.contains("Input/output error"),
        "{err}"
    );
    let want = format!("image {} failed verification", v.image.display());
    assert!(i.error.as_deref().unwrap_or("").contains(&want), "{i:?}");
    wait_for(SHORT, "no loop device on the images", || {
        loops_backed_by(&v.dir).is_empty()
    });
    w.cleanup().unwrap();
}
