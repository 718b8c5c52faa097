//! The `depends-on` key: the containers one must wait for before it
//! starts, as `["db"]` (running) or `{"db": "healthy"}` (or `"running"`).
//! One file alone is checked when it is parsed (names, values, itself);
//! the whole containers directory is checked by [`check_all`] (every name
//! defined, no cycle), whose errors are the dependant's file's, field
//! `depends-on`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;

use super::fields::{field_error, get_array, quoted, validate_name, wrong_type};
use super::load::ContainerEntry;
use super::network::Network;
use super::types::{ConfigError, MAX_LIST_LEN};
use crate::json::{Node, Value};

pub const FIELD: &str = "depends-on";

/// What a dependency must be before the dependant starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// Its command runs (exec'd).
    Running,
    /// Its command runs and its health check says `healthy`.
    Healthy,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Running => "running",
            Condition::Healthy => "healthy",
        }
    }
}

/// One entry of `depends-on`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub name: String,
    pub condition: Condition,
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.condition.as_str())
    }
}

/// Reads `depends-on` of the container `own`: a list of names, or an
/// object of name to condition. Names are valid container names, each
/// once, and not `own`.
pub(super) fn get_depends_on(
    node: &Node,
    file: &Path,
    own: &str,
) -> Result<Vec<Dependency>, ConfigError> {
    let err = |reason: String| field_error(file, FIELD, reason);
    let mut deps = Vec::new();
    match &node.value {
        Value::Array(_) => {
            for item in get_array(node, MAX_LIST_LEN).map_err(err)? {
                let Value::String(name) = &item.value else {
                    return Err(err(format!(
                        "{}: {}",
                        deps.len(),
                        wrong_type("a container name (a string)", item)
                    )));
                };
                deps.push(Dependency {
                    name: name.clone(),
                    condition: Condition::Running,
                });
            }
        }
        Value::Object(members) => {
            if members.len() > MAX_LIST_LEN {
                return Err(err(format!("has more than {MAX_LIST_LEN} entries")));
            }
            for (name, value) in members {
                let condition = match &value.value {
                    Value::String(s) if s == "running" => Condition::Running,
                    Value::String(s) if s == "healthy" => Condition::Healthy,
                    Value::String(s) => {
                        return Err(err(format!(
                            "{}: expected \"running\" or \"healthy\", found {}",
                            quoted(name),
                            quoted(s)
                        )));
                    }
                    _ => {
                        return Err(err(format!(
                            "{}: {}",
                            quoted(name),
                            wrong_type("\"running\" or \"healthy\"", value)
                        )));
                    }
                };
                deps.push(Dependency {
                    name: name.clone(),
                    condition,
                });
            }
        }
        _ => {
            return Err(err(wrong_type(
                "a list of container names or an object of name to condition",
                node,
            )));
        }
    }
    let mut seen = BTreeSet::new();
    for d in &deps {
        validate_name(&d.name).map_err(err)?;
        if d.name == own {
            return Err(err(format!("{own} cannot depend on itself")));
        }
        if !seen.insert(d.name.as_str()) {
            return Err(err(format!("{} is named twice", quoted(&d.name))));
        }
    }
    Ok(deps)
}

/// Checks the dependencies of every definition against the others: a
/// dependency must be defined (a file of that name, valid or not), and no
/// chain may lead back to where it began. A definition that fails becomes
/// an error of its own file, field `depends-on` (or `network` when the
/// step is to the container whose network namespace it shares); every
/// member of a cycle fails, each naming the whole cycle.
pub fn check_all(entries: &mut [ContainerEntry]) {
    let defined: BTreeSet<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    let graph: BTreeMap<String, Vec<String>> = entries
        .iter()
        .filter_map(|(n, r)| {
            let spec = r.as_ref().ok()?;
            Some((
                n.clone(),
                spec.depends_on.iter().map(|d| d.name.clone()).collect(),
            ))
        })
        .collect();
    let cycles = find_cycles(&graph);
    for (name, result) in entries.iter_mut() {
        let Ok(spec) = result.as_ref() else {
            continue;
        };
        // The owner of a shared network namespace is a dependency too;
        // its being undefined is the `network` check's to say.
        let owner = match &spec.network {
            Network::Container(owner) => Some(owner.as_str()),
            _ => None,
        };
        let missing: Vec<&str> = spec
            .depends_on
            .iter()
            .map(|d| d.name.as_str())
            .filter(|n| !defined.contains(*n) && Some(*n) != owner)
            .collect();
        let failure = if !missing.is_empty() {
            Some((
                FIELD,
                format!("no container named {} is defined", missing.join(", ")),
            ))
        } else {
            cycles.get(name.as_str()).map(|cycle| {
                // Named by the key that makes its first step.
                let field = if cycle.get(1).map(String::as_str) == owner {
                    "network"
                } else {
                    FIELD
                };
                (field, format!("dependency cycle: {}", cycle.join(" -> ")))
            })
        };
        if let Some((field, reason)) = failure {
            *result = Err(field_error(&spec.file, field, reason));
        }
    }
}

/// For each name on a cycle, the cycle as it is walked from that name
/// back to it (`a -> b -> a`). Pure: a graph of name to the names it
/// depends on; names missing from the graph depend on nothing.
pub fn find_cycles(graph: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<String>> {
    // Depth-first, iterative so that a long chain cannot overflow the
    // stack: 0 unseen, 1 on the current path, 2 done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for start in graph.keys() {
        if mark.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        mark.insert(start.as_str(), 1);
        while let Some(&mut (node, ref mut next)) = path.last_mut() {
            let deps = graph.get(node).map_or(&[][..], |v| &v[..]);
            if *next >= deps.len() {
                mark.insert(node, 2);
                path.pop();
                continue;
            }
            let dep = deps[*next].as_str();
            *next += 1;
            match mark.get(dep).copied().unwrap_or(0) {
                0 => {
                    mark.insert(dep, 1);
                    path.push((dep, 0));
                }
                1 => {
                    // Back to a name on the path: the names from it on
                    // are a cycle.
                    let at = path.iter().position(|(n, _)| *n == dep).unwrap_or(0);
                    let members: Vec<&str> = path[at..].iter().map(|(n, _)| *n).collect();
                    for (i, m) in members.iter().enumerate() {
                        let mut walk: Vec<String> = members[i..]
                            .iter()
                            .chain(&members[..i])
                            .map(|s| s.to_string())
                            .collect();
                        walk.push(m.to_string());
                        found.entry(m.to_string()).or_insert(walk);
                    }
                }
                _ => {}
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_container;

    fn graph(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| (n.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn cycles_are_found_with_every_member_named() {
        let none = graph(&[("web", &["app"]), ("app", &["db", "cache"]), ("db", &[])]);
        assert!(find_cycles(&none).is_empty());
        let g = graph(&[
            ("a", &["b"]),
            ("b", &["c"]),
            ("c", &["a"]),
            ("d", &["a"]),
            ("e", &["e2"]),
            ("e2", &["e"]),
        ]);
        let c = find_cycles(&g);
        assert_eq!(c["a"], ["a", "b", "c", "a"]);
        assert_eq!(c["b"], ["b", "c", "a", "b"]);
        assert_eq!(c["c"], ["c", "a", "b", "c"]);
        assert_eq!(c["e"], ["e", "e2", "e"]);
        // d waits on a cycle but is not on one.
        assert!(!c.contains_key("d"));
        // A long chain is no trouble.
        let names: Vec<String> = (0..20_000).map(|i| format!("n{i}")).collect();
        let long: BTreeMap<String, Vec<String>> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), names.get(i + 1).cloned().into_iter().collect()))
            .collect();
        assert!(find_cycles(&long).is_empty());
    }

    fn parse(name: &str, depends: &str) -> Result<Vec<Dependency>, String> {
        let text = format!(r#"{{"rootfs": "/r", "command": ["x"], "depends-on": {depends}}}"#);
        parse_container(name, &text, Path::new("/c/app.json"))
            .map(|s| s.depends_on)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn both_forms_parse_and_bad_ones_name_the_field() {
        let run = |n: &str| Dependency {
            name: n.into(),
            condition: Condition::Running,
        };
        assert_eq!(
            parse("app", r#"["db", "cache"]"#),
            Ok(vec![run("db"), run("cache")])
        );
        assert_eq!(
            parse("app", r#"{"db": "healthy", "cache": "running"}"#),
            Ok(vec![
                Dependency {
                    name: "db".into(),
                    condition: Condition::Healthy
                },
                run("cache")
            ])
        );
        assert_eq!(parse("app", "[]"), Ok(vec![]));
        let e = |r: &str| format!("/c/app.json: field \"depends-on\": {r}");
        assert_eq!(
            parse("app", r#"["app"]"#),
            Err(e("app cannot depend on itself"))
        );
        assert_eq!(
            parse("app", r#"{"db": "started"}"#),
            Err(e(
                r#""db": expected "running" or "healthy", found "started""#
            ))
        );
        assert_eq!(
            parse("app", r#"{"db": true}"#),
            Err(e(
                r#""db": expected "running" or "healthy", found a boolean"#
            ))
        );
        assert_eq!(
            parse("app", r#"["db", "db"]"#),
            Err(e(r#""db" is named twice"#))
        );
        assert_eq!(
            parse("app", r#"["../x"]"#),
            Err(e(r#"name "../x" may only contain A-Z a-z 0-9 _ . -"#))
        );
        assert_eq!(
            parse("app", r#"[1]"#),
            Err(e("0: expected a container name (a string), found a number"))
        );
        assert!(
            parse("app", r#""db""#)
                .unwrap_err()
                .contains("expected a list")
        );
    }

    #[test]
    fn the_directory_check_names_unknown_names_and_cycles() {
        let spec = |name: &str, deps: &str| {
            let text = format!(r#"{{"rootfs": "/r", "command": ["x"], "depends-on": {deps}}}"#);
            let file = format!("/c/{name}.json");
            (
                name.to_string(),
                parse_container(name, &text, Path::new(&file)),
            )
        };
        let bad = (
            "broken".to_string(),
            parse_container("broken", "{", Path::new("/c/broken.json")),
        );
        let in_app = (
            "shop-web".to_string(),
            parse_container(
                "shop-web",
                r#"{"rootfs": "/r", "command": ["x"], "depends-on": ["ghost"]}"#,
                Path::new("/apps/shop/1/shop-web.json"),
            ),
        );
        let mut entries = vec![
            spec("a", r#"["b"]"#),
            spec("b", r#"{"a": "healthy"}"#),
            spec("c", r#"["nope", "db"]"#),
            spec("db", "[]"),
            spec("web", r#"["db", "broken"]"#),
            bad,
            in_app,
        ];
        check_all(&mut entries);
        let err = |i: usize| entries[i].1.as_ref().unwrap_err().to_string();
        assert_eq!(
            err(0),
            "/c/a.json: field \"depends-on\": dependency cycle: a -> b -> a"
        );
        assert_eq!(
            err(1),
            "/c/b.json: field \"depends-on\": dependency cycle: b -> a -> b"
        );
        assert_eq!(
            err(2),
            "/c/c.json: field \"depends-on\": no container named nope is defined"
        );
        assert!(entries[3].1.is_ok());
        // A dependency whose file is broken is defined: its own error says
        // what is wrong.
        assert!(entries[4].1.is_ok());
        // An error names the file the definition came from.
        assert_eq!(
            err(6),
            "/apps/shop/1/shop-web.json: field \"depends-on\": no container named ghost is defined"
        );
    }
}
