//! The network keys of the whole containers directory against
//! daemon.json's `networks` and against each other (see
//! [`check_networks`]); each file alone is checked by `network`.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use super::fields::{field_error, quoted};
use super::load::ContainerEntry;
use super::network::{Network, NetworkDef, PortMap};
use super::types::ConfigError;

/// Checks every definition's network keys against daemon.json's
/// `networks` and against the other definitions. A definition that fails
/// becomes an error of its own file (the one it was read from):
/// - `network`: a network that is not defined; `container:NAME` where no
///   definition of NAME exists or NAME itself shares another's namespace
///   or the host's;
/// - `address`: outside its network's subnet, or its network, broadcast
///   or gateway address; the fixed address of another definition on the
///   same network;
/// - `ports`: a host port another definition publishes (same protocol and
///   port, overlapping host addresses).
///
/// Of two definitions that claim the same address or port, an incumbent
/// (a container the daemon runs already) keeps it; between equals the
/// first by name does.
pub fn check_networks(
    networks: &[NetworkDef],
    entries: &mut [ContainerEntry],
    incumbents: &BTreeSet<String>,
) {
    let defined: BTreeSet<String> = entries.iter().map(|(n, _)| n.clone()).collect();
    let network_of: Vec<(String, Option<Network>)> = entries
        .iter()
        .map(|(n, r)| (n.clone(), r.as_ref().ok().map(|s| s.network.clone())))
        .collect();
    let known = if networks.is_empty() {
        "daemon.json defines no networks".to_string()
    } else {
        let names: Vec<&str> = networks.iter().map(|d| d.name.as_str()).collect();
        format!("defined: {}", names.join(", "))
    };
    // Each file alone against the networks and the names.
    for (_, result) in entries.iter_mut() {
        let Ok(spec) = result.as_ref() else {
            continue;
        };
        let failure = match &spec.network {
            Network::Bridge(names) => names
                .iter()
                .find(|n| !networks.iter().any(|d| d.name == **n))
                .map(|n| {
                    (
                        "network",
                        format!("no network named {} is defined ({known})", quoted(n)),
                    )
                })
                .or_else(|| {
                    let addr = spec.address?;
                    let def = networks.iter().find(|d| d.name == names[0])?;
                    def.check_assignable(addr).err().map(|r| ("address", r))
                }),
            Network::Container(owner) if !defined.contains(owner) => {
                Some(("network", format!("no container named {owner} is defined")))
            }
            Network::Container(owner) => match network_of.iter().find(|(n, _)| n == owner) {
                Some((_, Some(Network::Container(theirs)))) => Some((
                    "network",
                    format!(
                        "{owner} itself shares the network namespace of {theirs}: name container:{theirs}"
                    ),
                )),
                Some((_, Some(Network::Host))) => Some((
                    "network",
                    format!("{owner} uses the host's network: use \"network\": \"host\""),
                )),
                _ => None,
            },
            Network::None | Network::Host => None,
        };
        if let Some((field, reason)) = failure {
            *result = Err(field_error(&spec.file, field, reason));
        }
    }
    // Then the claims on shared things, incumbents first, then by name.
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by_key(|&i| (!incumbents.contains(&entries[i].0), entries[i].0.clone()));
    // Who holds a claim: (name, file).
    let mut addresses: Vec<(&str, Ipv4Addr, (&str, &Path))> = Vec::new();
    let mut published: Vec<(PortMap, (&str, &Path))> = Vec::new();
    let mut failures: Vec<(usize, ConfigError)> = Vec::new();
    for &i in &order {
        let (name, result) = &entries[i];
        let Ok(spec) = result.as_ref() else {
            continue;
        };
        let file = spec.file.as_path();
        if let (Some(addr), Network::Bridge(names)) = (spec.address, &spec.network) {
            let net = names[0].as_str();
            if let Some((_, _, (holder, holder_file))) =
                addresses.iter().find(|(n, a, _)| *n == net && *a == addr)
            {
                let reason = format!(
                    "{addr} on network {net} in {} is already the address of {holder} ({})",
                    file.display(),
                    holder_file.display()
                );
                failures.push((i, field_error(file, "address", reason)));
                continue;
            }
        }
        if let Some((port, (holder, holder_file))) = spec.ports.iter().find_map(|p| {
            published
                .iter()
                .find(|(q, _)| q.clashes_with(p))
                .map(|(_, holder)| (p, holder))
        }) {
            let reason = format!(
                "host port {} in {} is already published by {holder} ({})",
                port.host_side(),
                file.display(),
                holder_file.display()
            );
            failures.push((i, field_error(file, "ports", reason)));
            continue;
        }
        if let (Some(addr), Network::Bridge(names)) = (spec.address, &spec.network) {
            addresses.push((names[0].as_str(), addr, (name.as_str(), file)));
        }
        published.extend(spec.ports.iter().map(|p| (*p, (name.as_str(), file))));
    }
    for (i, e) in failures {
        entries[i].1 = Err(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::container_file::parse_container;

    use crate::config::testing::network_def as def;

    /// Definitions as the containers directory /c holds them.
    fn entries(files: &[(&str, &str)]) -> Vec<ContainerEntry> {
        files
            .iter()
            .map(|(name, extra)| {
                let text = format!(r#"{{"rootfs": "/r", "command": ["x"]{extra}}}"#);
                let file = format!("/c/{name}.json");
                (
                    name.to_string(),
                    parse_container(name, &text, Path::new(&file)),
                )
            })
            .collect()
    }

    /// Each entry's outcome: Ok, or its error as text.
    fn outcomes(list: &[ContainerEntry]) -> Vec<Result<(), String>> {
        list.iter()
            .map(|(_, r)| r.as_ref().map(|_| ()).map_err(|e| e.to_string()))
            .collect()
    }

    fn lan_and_db() -> Vec<NetworkDef> {
        vec![
            def("lan", "berth0", [10, 88, 0, 0], 24, [10, 88, 0, 1]),
            def("db", "berth1", [10, 89, 0, 0], 24, [10, 89, 0, 1]),
        ]
    }

    fn check(
        networks: &[NetworkDef],
        files: &[(&str, &str)],
        incumbents: &[&str],
    ) -> Vec<Result<(), String>> {
        let mut list = entries(files);
        let incumbents = incumbents.iter().map(|s| s.to_string()).collect();
        check_networks(networks, &mut list, &incumbents);
        list.into_iter()
            .map(|(_, r)| r.map(|_| ()).map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn networks_and_addresses_are_checked_against_daemon_json() {
        let got = check(
            &lan_and_db(),
            &[
                ("a", r#","network": "lan", "address": "10.88.0.7""#),
                ("b", r#","network": ["lan", "wan"]"#),
                ("c", r#","network": "lan", "address": "10.89.0.7""#),
                ("d", r#","network": "lan", "address": "10.88.0.1""#),
                ("e", r#","network": "lan", "address": "10.88.0.0""#),
                ("f", r#","network": "db", "address": "10.89.0.255""#),
                ("g", r#","network": ["db", "lan"]"#),
                ("h", r#","network": "host""#),
            ],
            &[],
        );
        assert_eq!(
            got,
            [
                Ok(()),
                Err("/c/b.json: field \"network\": no network named \"wan\" is defined (defined: lan, db)".into()),
                Err("/c/c.json: field \"address\": 10.89.0.7 is outside network lan's subnet 10.88.0.0/24".into()),
                Err("/c/d.json: field \"address\": 10.88.0.1 is the gateway of network lan".into()),
                Err("/c/e.json: field \"address\": 10.88.0.0 is the network address of 10.88.0.0/24 (network lan)".into()),
                Err("/c/f.json: field \"address\": 10.89.0.255 is the broadcast address of 10.89.0.0/24 (network db)".into()),
                Ok(()),
                Ok(()),
            ]
        );
        assert_eq!(
            check(&[], &[("a", r#","network": "lan""#)], &[]),
            [Err("/c/a.json: field \"network\": no network named \"lan\" is defined (daemon.json defines no networks)".into())]
        );
    }

    #[test]
    fn a_fixed_address_is_one_container_s_incumbent_first() {
        let files = [
            ("a", r#","network": "lan", "address": "10.88.0.7""#),
            ("b", r#","network": "lan", "address": "10.88.0.7""#),
            ("c", r#","network": "db", "address": "10.88.0.7""#),
            ("d", r#","network": "lan", "address": "10.88.0.8""#),
        ];
        let mut nets = lan_and_db();
        nets[1] = def("db", "berth1", [10, 88, 0, 0], 24, [10, 88, 0, 1]);
        // Without incumbents, the first by name keeps it; the same address
        // on another network is no clash.
        assert_eq!(
            check(&nets, &files, &[]),
            [
                Ok(()),
                Err("/c/b.json: field \"address\": 10.88.0.7 on network lan in /c/b.json is already the address of a (/c/a.json)".into()),
                Ok(()),
                Ok(()),
            ]
        );
        // A running container keeps what it has.
        assert_eq!(
            check(&nets, &files, &["b"]),
            [
                Err("/c/a.json: field \"address\": 10.88.0.7 on network lan in /c/a.json is already the address of b (/c/b.json)".into()),
                Ok(()),
                Ok(()),
                Ok(()),
            ]
        );
        // Two incumbents: name order again.
        assert!(check(&nets, &files, &["a", "b"])[1].is_err());
    }

    #[test]
    fn a_published_host_port_is_one_container_s_incumbent_first() {
        let files = [
            ("a", r#","network": "lan", "ports": ["8080:80"]"#),
            (
                "b",
                r#","network": "lan", "ports": ["9000:9000", "127.0.0.1:8080:80"]"#,
            ),
            (
                "c",
                r#","network": "db", "ports": ["8080:80/udp", "127.0.0.2:9000:1"]"#,
            ),
            ("d", r#","network": "db", "ports": ["127.0.0.2:9001:1"]"#),
        ];
        assert_eq!(
            check(&lan_and_db(), &files, &[]),
            [
                Ok(()),
                Err("/c/b.json: field \"ports\": host port 127.0.0.1:8080/tcp in /c/b.json is already published by a (/c/a.json)".into()),
                Ok(()),
                Ok(()),
            ]
        );
        // b runs: a is the newcomer and fails; c, now checked after b,
        // clashes with b's 9000 on every address.
        assert_eq!(
            check(&lan_and_db(), &files, &["b"]),
            [
                Err("/c/a.json: field \"ports\": host port 8080/tcp in /c/a.json is already published by b (/c/b.json)".into()),
                Ok(()),
                Err("/c/c.json: field \"ports\": host port 127.0.0.2:9000/tcp in /c/c.json is already published by b (/c/b.json)".into()),
                Ok(()),
            ]
        );
        // A definition that failed claims nothing.
        let files = [
            ("a", r#","network": "wan", "ports": ["8080:80"]"#),
            ("b", r#","network": "lan", "ports": ["8080:80"]"#),
        ];
        let got = check(&lan_and_db(), &files, &[]);
        assert!(got[0].is_err());
        assert_eq!(got[1], Ok(()));
    }

    #[test]
    fn container_name_must_have_a_namespace_of_its_own() {
        let mut list = entries(&[
            ("app", r#","network": "container:db""#),
            ("db", r#","network": "lan""#),
            ("host-side", r#","network": "host""#),
            ("side", r#","network": "container:app""#),
            ("on-host", r#","network": "container:host-side""#),
            ("nowhere", r#","network": "container:ghost""#),
            ("to-broken", r#","network": "container:broken""#),
        ]);
        list.push((
            "broken".into(),
            parse_container("broken", "{", Path::new("/c/broken.json")),
        ));
        super::super::depends::check_all(&mut list);
        check_networks(&lan_and_db(), &mut list, &BTreeSet::new());
        let got = outcomes(&list);
        assert_eq!(
            got[..7],
            [
                Ok(()),
                Ok(()),
                Ok(()),
                Err("/c/side.json: field \"network\": app itself shares the network namespace of db: name container:db".into()),
                Err("/c/on-host.json: field \"network\": host-side uses the host's network: use \"network\": \"host\"".into()),
                Err("/c/nowhere.json: field \"network\": no container named ghost is defined".into()),
                // A broken owner is defined: its own error says what is wrong.
                Ok(()),
            ]
        );
    }

    #[test]
    fn sharing_a_namespace_counts_in_dependency_cycles() {
        let mut list = entries(&[
            ("a", r#","network": "container:b""#),
            ("b", r#","depends-on": ["a"]"#),
            ("c", r#","network": "container:d", "depends-on": ["e"]"#),
            ("d", r#","network": "lan""#),
            ("e", ""),
        ]);
        super::super::depends::check_all(&mut list);
        let err = |i: usize| list[i].1.as_ref().map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            err(0),
            Err("/c/a.json: field \"network\": dependency cycle: a -> b -> a".into())
        );
        assert_eq!(
            err(1),
            Err("/c/b.json: field \"depends-on\": dependency cycle: b -> a -> b".into())
        );
        assert_eq!(err(2), Ok(()));
        let spec = list[2].1.as_ref().unwrap();
        let names: Vec<&str> = spec.depends_on.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["e", "d"]);
    }
    #[test]
    fn errors_name_the_file_a_definition_came_from() {
        // b and c come from an app directory, not from /c.
        let mut list = entries(&[("a", r#","network": "lan", "ports": ["8080:80"]"#)]);
        for (name, extra) in [
            ("b", r#","network": "lan", "ports": ["8080:80"]"#),
            ("c", r#","network": "container:ghost""#),
        ] {
            let text = format!(r#"{{"rootfs": "/r", "command": ["x"]{extra}}}"#);
            let file = format!("/apps/shop/1/{name}.json");
            list.push((name.into(), parse_container(name, &text, Path::new(&file))));
        }
        check_networks(&lan_and_db(), &mut list, &BTreeSet::new());
        let got = outcomes(&list);
        assert_eq!(
            got,
            [
                Ok(()),
                Err("/apps/shop/1/b.json: field \"ports\": host port 8080/tcp in /apps/shop/1/b.json is already published by a (/c/a.json)".into()),
                Err("/apps/shop/1/c.json: field \"network\": no container named ghost is defined".into()),
            ]
        );
        // The holder named is in the app when it holds the claim.
        list[1].1 = parse_container(
            "b",
            r#"{"rootfs": "/r", "command": ["x"], "network": "lan", "ports": ["8080:80"]}"#,
            Path::new("/apps/shop/1/b.json"),
        );
        list[0].1 = entries(&[("a", r#","network": "lan", "ports": ["8080:80"]"#)])
            .remove(0)
            .1;
        let running_b = ["b".to_string()].into();
        check_networks(&lan_and_db(), &mut list, &running_b);
        assert_eq!(
            list[0].1.as_ref().unwrap_err().to_string(),
            "/c/a.json: field \"ports\": host port 8080/tcp in /c/a.json is already published by b (/apps/shop/1/b.json)"
        );
    }
}
