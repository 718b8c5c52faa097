//! Reconcile: what to do to turn the containers berth manages into the set
//! the configuration declares. Pure: `plan(current, desired)` is a function
//! of two lists, so every case is a unit test.

/// A container as the daemon has it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    pub name: String,
    /// Hash of the definition it runs (or would run); `None` if it has none
    /// that is valid (it failed validation earlier, or is only known from
    /// records on disk).
    pub hash: Option<u64>,
    /// A monitor exists for it (starting, running or stopping).
    pub active: bool,
    /// A user's `berth stop` is in force.
    pub stopped_by_user: bool,
}

/// A container as the configuration declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Desired {
    pub name: String,
    pub hash: u64,
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A new definition: take it, and start it if it says so.
    Add { name: String, start: bool },
    /// The definition is gone: stop the container if active, forget it and
    /// its records.
    Remove { name: String },
    /// The definition changed: stop the container if active, take the new
    /// definition, start it if it says so.
    Replace {
        name: String,
        stop: bool,
        start: bool,
    },
}

impl Action {
    pub fn name(&self) -> &str {
        match self {
            Action::Add { name, .. } | Action::Remove { name } | Action::Replace { name, .. } => {
                name
            }
        }
    }
}

/// The actions, sorted by name; unchanged containers get none.
pub fn plan(current: &[Current], desired: &[Desired]) -> Vec<Action> {
    let mut actions = Vec::new();
    for d in desired {
        match current.iter().find(|c| c.name == d.name) {
            None => actions.push(Action::Add {
                name: d.name.clone(),
                start: d.autostart,
            }),
            Some(c) if c.hash == Some(d.hash) => {}
            Some(c) => actions.push(Action::Replace {
                name: d.name.clone(),
                stop: c.active,
                start: d.autostart && !c.stopped_by_user,
            }),
        }
    }
    for c in current {
        if !desired.iter().any(|d| d.name == c.name) {
            actions.push(Action::Remove {
                name: c.name.clone(),
            });
        }
    }
    actions.sort_by(|a, b| a.name().cmp(b.name()));
    actions
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cur(name: &str, hash: Option<u64>, active: bool) -> Current {
        Current {
            name: name.into(),
            hash,
            active,
            stopped_by_user: false,
        }
    }
    fn want(name: &str, hash: u64, autostart: bool) -> Desired {
        Desired {
            name: name.into(),
            hash,
            autostart,
        }
    }

    #[test]
    fn unchanged_gets_no_action() {
        assert!(plan(&[cur("a", Some(1), true)], &[want("a", 1, true)]).is_empty());
        assert!(plan(&[], &[]).is_empty());
    }

    #[test]
    fn added_started_only_with_autostart() {
        assert_eq!(
            plan(&[], &[want("b", 2, true), want("a", 1, false)]),
            vec![
                Action::Add {
                    name: "a".into(),
                    start: false
                },
                Action::Add {
                    name: "b".into(),
                    start: true
                }
            ]
        );
    }

    #[test]
    fn removed_is_stopped_and_forgotten() {
        assert_eq!(
            plan(&[cur("a", Some(1), true)], &[]),
            vec![Action::Remove { name: "a".into() }]
        );
    }

    #[test]
    fn changed_is_replaced() {
        assert_eq!(
            plan(&[cur("a", Some(1), true)], &[want("a", 9, true)]),
            vec![Action::Replace {
                name: "a".into(),
                stop: true,
                start: true
            }]
        );
        // Not running: nothing to stop.
        assert_eq!(
            plan(&[cur("a", Some(1), false)], &[want("a", 9, false)]),
            vec![Action::Replace {
                name: "a".into(),
                stop: false,
                start: false
            }]
        );
        // A definition that was invalid before and is valid now.
        assert_eq!(
            plan(&[cur("a", None, false)], &[want("a", 9, true)]),
            vec![Action::Replace {
                name: "a".into(),
                stop: false,
                start: true
            }]
        );
    }

    #[test]
    fn user_stop_survives_a_changed_definition() {
        let mut c = cur("a", Some(1), false);
        c.stopped_by_user = true;
        assert_eq!(
            plan(&[c], &[want("a", 2, true)]),
            vec![Action::Replace {
                name: "a".into(),
                stop: false,
                start: false
            }]
        );
    }

    #[test]
    fn mixed() {
        let current = [
            cur("keep", Some(1), true),
            cur("change", Some(2), true),
            cur("drop", Some(3), false),
        ];
        let desired = [
            want("keep", 1, true),
            want("change", 20, true),
            want("new", 4, true),
        ];
        assert_eq!(
            plan(&current, &desired),
            vec![
                Action::Replace {
                    name: "change".into(),
                    stop: true,
                    start: true
                },
                Action::Remove {
                    name: "drop".into()
                },
                Action::Add {
                    name: "new".into(),
                    start: true
                },
            ]
        );
    }
}
