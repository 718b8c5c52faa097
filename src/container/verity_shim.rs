//! STAND-IN for `crate::sys::verity` until that module is merged: the same
//! signatures, so `root` compiles and its error path runs. It checks
//! nothing itself; `activate` fails with the reason the host gives (no
//! device-mapper control device) or says verity is not built in. Replace
//! the `use` line in `root.rs` with `crate::sys::verity` and delete this
//! file.

use std::fmt;
use std::path::{Path, PathBuf};

/// What `prepare` found: here only what `activate` is asked for.
#[derive(Debug)]
pub struct Table {
    _private: (),
}

/// An active verity device.
#[derive(Debug)]
pub struct Device {
    pub node: PathBuf,
}

impl Device {
    /// Deferred removal once the mount holds the device.
    pub fn release(self) {}
}

#[derive(Debug)]
pub struct VerityError(String);

impl fmt::Display for VerityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn prepare(
    _image: &Path,
    _root_hash: &str,
    _hash_offset: Option<u64>,
    _hash_file: Option<&Path>,
) -> Result<Table, VerityError> {
    Ok(Table { _private: () })
}

pub fn activate(
    _dm_name: &str,
    _table: &Table,
    _data_dev: libc::dev_t,
    _hash_dev: libc::dev_t,
) -> Result<Device, VerityError> {
    match std::fs::metadata("/dev/mapper/control") {
        Err(e) => Err(VerityError(format!(
            "open /dev/mapper/control: {} (no device-mapper on this host)",
            crate::errors::io_text(&e)
        ))),
        Ok(_) => Err(VerityError(
            "device-mapper verity is not available in this build".to_string(),
        )),
    }
}
