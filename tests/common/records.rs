//! Reading berth's runtime records the way tests need them: the pids and
//! start times of a container's monitor and init, and the record's text
//! for tests that rewrite it.

use std::fs;
use std::path::PathBuf;

use nanoserde::DeJson;

use super::World;

/// The fields of a runtime record tests look at.
#[derive(DeJson, Debug)]
pub struct Runtime {
    #[nserde(rename = "monitor-pid")]
    pub monitor_pid: i32,
    #[nserde(rename = "monitor-start")]
    pub monitor_start: u64,
    #[nserde(rename = "init-pid")]
    pub init_pid: i32,
    #[nserde(rename = "init-start")]
    pub init_start: u64,
}

/// run-dir/containers/NAME/runtime.json
pub fn runtime_path(w: &World, name: &str) -> PathBuf {
    w.run_dir()
        .join("containers")
        .join(name)
        .join("runtime.json")
}

/// The runtime record of NAME: its text and its parsed fields.
pub fn runtime(w: &World, name: &str) -> (String, Runtime) {
    let path = runtime_path(w, name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let rec = Runtime::deserialize_json(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    (text, rec)
}

/// A record's text with its format version (its first member) replaced.
pub fn with_version(text: &str, version: u32) -> String {
    let first = text.split(',').next().unwrap_or_default();
    assert!(
        first.starts_with("{\"version\":"),
        "the record must name its version first: {text}"
    );
    text.replacen(first, &format!("{{\"version\":{version}"), 1)
}
