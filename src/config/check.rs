//! The whole configuration checked as start-up and reload take it:
//! daemon.json, then every definition of its containers directory, each
//! file alone and across files. Start-up and reload read the definitions
//! through `read_checked_definitions`; reload and `berth daemon
//! --validate` read everything through `check_config`, so what a reload
//! refuses and what `--validate` reports are one list, in one order.

use std::collections::BTreeSet;
use std::path::Path;

use super::daemon_file::read_daemon_file;
use super::load::{Definitions, read_definitions};
use super::network_check::check_networks;
use super::types::{ContainerSpec, DaemonConfig};

/// The definitions of `cfg`'s containers directory (see
/// `load::read_definitions`: each file parsed, its seccomp profile and env
/// files read in, its rootfs or image and bind sources checked on the
/// host, then `depends-on` across files), with their network keys checked
/// against `cfg`'s networks and each other (`check_networks`, where
/// `incumbents` keep the addresses and ports they hold). An error when the
/// directory itself (or an app directory in it) cannot be read, naming
/// `config_file` as where containers-dir comes from.
pub fn read_checked_definitions(
    cfg: &DaemonConfig,
    config_file: &Path,
    incumbents: &BTreeSet<String>,
) -> Result<Definitions, String> {
    let mut found = read_definitions(&cfg.containers_dir)
        .map_err(|e| format!("{e} (containers-dir in {})", config_file.display()))?;
    check_networks(&cfg.networks, &mut found.entries, incumbents);
    Ok(found)
}

/// daemon.json and the definitions, and every problem found in them.
#[derive(Debug)]
pub struct Checked {
    /// daemon.json, when it could be read and parsed.
    pub daemon: Option<DaemonConfig>,
    /// The definitions without a problem, by name.
    pub specs: Vec<ContainerSpec>,
    /// One line per problem, naming the file, the field where known and
    /// the reason: daemon.json's (then nothing else is read), or the
    /// containers directory's, or the names defined twice, then each
    /// definition's by name.
    pub problems: Vec<String>,
}

impl Checked {
    /// The configuration when it has no problem, else the problems.
    pub fn into_result(self) -> Result<(DaemonConfig, Vec<ContainerSpec>), Vec<String>> {
        match self.daemon {
            Some(cfg) if self.problems.is_empty() => Ok((cfg, self.specs)),
            _ => Err(self.problems),
        }
    }
}

/// Reads and checks `config_file` and the definitions it points to, as a
/// reload does, which refuses on any problem. `incumbents` names the
/// containers that keep their addresses and ports (a reload's: those the
/// daemon runs), given daemon.json.
pub fn check_config(
    config_file: &Path,
    incumbents: impl FnOnce(&DaemonConfig) -> BTreeSet<String>,
) -> Checked {
    let cfg = match read_daemon_file(config_file) {
        Ok(cfg) => cfg,
        Err(e) => {
            return Checked {
                daemon: None,
                specs: Vec::new(),
                problems: vec![e.to_string()],
            };
        }
    };
    let found = read_checked_definitions(&cfg, config_file, &incumbents(&cfg));
    let (mut specs, mut problems) = (Vec::new(), Vec::new());
    match found {
        Ok(found) => {
            problems.extend(found.duplicates.iter().map(|e| e.to_string()));
            for (_, result) in found.entries {
                match result {
                    Ok(spec) => specs.push(spec),
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Err(e) => problems.push(e),
    }
    Checked {
        daemon: Some(cfg),
        specs,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::testing::TempDir;
    use std::fs;

    /// daemon.json in `tmp` naming its containers directory, with `extra`
    /// members added; and a rootfs directory.
    fn setup(tmp: &TempDir, extra: &str) -> (std::path::PathBuf, String) {
        let dir = tmp.0.join("containers");
        fs::create_dir_all(&dir).unwrap();
        fs::create_dir_all(tmp.0.join("rootfs")).unwrap();
        let config = tmp.0.join("daemon.json");
        fs::write(
            &config,
            format!(r#"{{"containers-dir": "containers"{extra}}}"#),
        )
        .unwrap();
        let rootfs = tmp.0.join("rootfs").display().to_string();
        (config, rootfs)
    }

    fn none(_: &DaemonConfig) -> BTreeSet<String> {
        BTreeSet::new()
    }

    #[test]
    fn a_good_configuration_has_no_problem() {
        let tmp = TempDir::new("check-good");
        let (config, rootfs) = setup(&tmp, "");
        for name in ["a", "b"] {
            let text = format!(r#"{{"rootfs": "{rootfs}", "command": ["/bin/sh"]}}"#);
            fs::write(tmp.0.join(format!("containers/{name}.json")), text).unwrap();
        }
        let (cfg, specs) = check_config(&config, none).into_result().unwrap();
        assert_eq!(cfg.containers_dir, tmp.0.join("containers"));
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn every_problem_is_a_line_duplicates_first_then_by_name() {
        let tmp = TempDir::new("check-bad");
        let (config, rootfs) = setup(&tmp, "");
        let dir = tmp.0.join("containers");
        let ok = format!(r#"{{"rootfs": "{rootfs}", "command": ["/bin/sh"]}}"#);
        fs::write(dir.join("ok.json"), &ok).unwrap();
        fs::write(
            dir.join("b.json"),
            format!(r#"{{"rootfs": "{rootfs}", "command": ["/bin/sh"], "memory": "12Q"}}"#),
        )
        .unwrap();
        fs::write(
            dir.join("a.json"),
            format!(r#"{{"rootfs": "{rootfs}", "command": ["/bin/sh"], "network": "lan"}}"#),
        )
        .unwrap();
        fs::create_dir(dir.join("x.app")).unwrap();
        fs::write(dir.join("x.app/ok.json"), &ok).unwrap();
        let checked = check_config(&config, none);
        assert_eq!(checked.specs.len(), 1);
        let d = dir.display();
        let real = fs::canonicalize(dir.join("x.app")).unwrap();
        assert_eq!(
            checked.problems,
            [
                format!(
                    "{}: container ok is already defined in {d}/ok.json",
                    real.join("ok.json").display()
                ),
                format!(
                    r#"{d}/a.json: field "network": no network named "lan" is defined (daemon.json defines no networks)"#
                ),
                format!(
                    r#"{d}/b.json: field "memory": invalid size "12Q": expected digits and an optional k, m or g suffix"#
                ),
            ]
        );
        assert!(checked.daemon.is_some());
    }

    #[test]
    fn a_bad_daemon_file_is_the_only_problem_and_an_unreadable_directory_one() {
        let tmp = TempDir::new("check-daemon");
        let (config, _) = setup(&tmp, r#", "log-level": "loud""#);
        let checked = check_config(&config, none);
        assert!(checked.daemon.is_none());
        assert_eq!(checked.problems.len(), 1);
        assert!(
            checked.problems[0]
                .starts_with(&format!("{}: field \"log-level\": ", config.display())),
            "{:?}",
            checked.problems
        );

        fs::write(&config, r#"{"containers-dir": "nowhere"}"#).unwrap();
        let problems = check_config(&config, none).into_result().unwrap_err();
        assert_eq!(
            problems,
            [format!(
                "{}: no such directory (containers-dir in {})",
                tmp.0.join("nowhere").display(),
                config.display()
            )]
        );
    }
}
