//! Address management for bridge networks: which container holds which
//! address on which network, kept in state-dir/networks.json so an address
//! survives restarts of the container, of the daemon and of the host, and
//! is never handed out twice.
//!
//! The file is `{"version": 1, "leases": {"lan": {"app": "10.88.0.2"}}}`,
//! written temp + fsync + rename + fsync of the directory. The allocation
//! itself is pure: [`Ipam::assign`] takes the network's definition and
//! answers from the leases in memory; [`Ipam::save`] makes them durable.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::config::{NetworkDef, validate_name};
use crate::json::{self, Node, Value};
use crate::state;

/// The file's name in state-dir.
pub const FILE_NAME: &str = "networks.json";

/// The format this binary writes (and the newest it reads).
pub const FORMAT_VERSION: u64 = 1;

/// Largest file read: room for about 100 000 leases.
const MAX_FILE: u64 = 4 * 1024 * 1024;

/// What can go wrong loading, or asking for an address.
#[derive(Debug)]
pub enum IpamError {
    /// The file exists but cannot be read.
    Read { path: PathBuf, err: io::Error },
    /// The file is not a lease file this binary can trust.
    Corrupt { path: PathBuf, reason: String },
    /// The fixed address asked for is not a host address of the subnet.
    NotAssignable { reason: String },
    /// The fixed address asked for is another container's.
    Taken {
        network: String,
        address: Ipv4Addr,
        holder: String,
    },
    /// No free host address is left.
    Exhausted { network: String, subnet: String },
}

impl fmt::Display for IpamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IpamError::Read { path, err } => write!(f, "read {}: {err}", path.display()),
            IpamError::Corrupt { path, reason } => {
                write!(f, "{}: not a usable lease file: {reason}", path.display())
            }
            IpamError::NotAssignable { reason } => f.write_str(reason),
            IpamError::Taken {
                network,
                address,
                holder,
            } => write!(
                f,
                "{address} on network {network} is already leased to {holder}"
            ),
            IpamError::Exhausted { network, subnet } => {
                write!(f, "no free address left in {subnet} (network {network})")
            }
        }
    }
}

impl std::error::Error for IpamError {}

/// The leases of every network, and the file they live in.
#[derive(Debug, Clone, PartialEq)]
pub struct Ipam {
    path: PathBuf,
    /// network -> container -> address.
    leases: BTreeMap<String, BTreeMap<String, Ipv4Addr>>,
}

impl Ipam {
    /// Reads state-dir/networks.json; a missing file is no leases.
    pub fn load(state_dir: &Path) -> Result<Ipam, IpamError> {
        let path = state_dir.join(FILE_NAME);
        let text = match read_file(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Ipam {
                    path,
                    leases: BTreeMap::new(),
                });
            }
            Err(err) => return Err(IpamError::Read { path, err }),
        };
        match parse(&text) {
            Ok(leases) => Ok(Ipam { path, leases }),
            Err(reason) => Err(IpamError::Corrupt { path, reason }),
        }
    }

    #[cfg(test)]
    /// The file the leases are saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The address `container` holds on `network`, if any.
    pub fn lease(&self, network: &str, container: &str) -> Option<Ipv4Addr> {
        self.leases.get(network)?.get(container).copied()
    }

    /// Gives `container` an address on `net` and returns it:
    /// - the one it holds when that is still a host address of the subnet
    ///   (not the gateway), is `fixed` if that is given, and (when not
    ///   fixed) is none of `reserved`;
    /// - else `fixed`, unless another container holds it;
    /// - else the lowest free host address: not the network, broadcast or
    ///   gateway address, not leased, not in `reserved` (the fixed
    ///   addresses of other definitions, so a dynamic lease never takes
    ///   one).
    ///
    /// Its previous lease on `net`, if replaced, is released. Nothing is
    /// saved: call [`Ipam::save`].
    pub fn assign(
        &mut self,
        net: &NetworkDef,
        container: &str,
        fixed: Option<Ipv4Addr>,
        reserved: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, IpamError> {
        let leases = self.leases.entry(net.name.clone()).or_default();
        if let Some(held) = leases.get(container).copied() {
            let keep = net.is_assignable(held)
                && match fixed {
                    Some(f) => f == held,
                    None => !reserved.contains(&held),
                };
            if keep {
                return Ok(held);
            }
        }
        let taken_by = |leases: &BTreeMap<String, Ipv4Addr>, addr: Ipv4Addr| {
            leases
                .iter()
                .find(|(name, a)| **a == addr && name.as_str() != container)
                .map(|(name, _)| name.clone())
        };
        let address = match fixed {
            Some(addr) => {
                net.check_assignable(addr)
                    .map_err(|reason| IpamError::NotAssignable { reason })?;
                if let Some(holder) = taken_by(leases, addr) {
                    return Err(IpamError::Taken {
                        network: net.name.clone(),
                        address: addr,
                        holder,
                    });
                }
                addr
            }
            None => {
                let used: BTreeSet<u32> = leases
                    .iter()
                    .filter(|(name, _)| name.as_str() != container)
                    .map(|(_, a)| u32::from(*a))
                    .chain(reserved.iter().map(|a| u32::from(*a)))
                    .chain([u32::from(net.gateway)])
                    .collect();
                let first = u32::from(net.subnet) + 1;
                let last = u32::from(net.broadcast()) - 1;
                (first..=last)
                    .find(|a| !used.contains(a))
                    .map(Ipv4Addr::from)
                    .ok_or_else(|| IpamError::Exhausted {
                        network: net.name.clone(),
                        subnet: net.cidr(),
                    })?
            }
        };
        leases.insert(container.to_string(), address);
        Ok(address)
    }

    /// Drops the lease of `container` on `network`; whether there was one.
    pub fn release(&mut self, network: &str, container: &str) -> bool {
        let Some(leases) = self.leases.get_mut(network) else {
            return false;
        };
        let had = leases.remove(container).is_some();
        if leases.is_empty() {
            self.leases.remove(network);
        }
        had
    }

    /// Every lease on `network` as (container, address), by container name.
    pub fn leases(&self, network: &str) -> Vec<(String, Ipv4Addr)> {
        self.leases
            .get(network)
            .map(|l| l.iter().map(|(n, a)| (n.clone(), *a)).collect())
            .unwrap_or_default()
    }

    /// The networks that have leases, by name (a network no longer
    /// defined may still be among them).
    pub fn networks(&self) -> Vec<String> {
        self.leases.keys().cloned().collect()
    }

    /// Drops every lease on `network`.
    pub fn forget_network(&mut self, network: &str) {
        self.leases.remove(network);
    }

    /// Writes the leases durably: temp file, fsync, rename, fsync of the
    /// directory (which is created if missing).
    pub fn save(&self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            state::ensure_dir(dir)?;
        }
        let mut text = self.to_json();
        text.push('\n');
        state::write_atomic(&self.path, text.as_bytes())
    }

    /// The file's text (compact, keys sorted).
    fn to_json(&self) -> String {
        let node = |value| Node {
            value,
            line: 0,
            col: 0,
        };
        let networks = self
            .leases
            .iter()
            .map(|(net, leases)| {
                let members = leases
                    .iter()
                    .map(|(name, addr)| (name.clone(), node(Value::String(addr.to_string()))))
                    .collect();
                (net.clone(), node(Value::Object(members)))
            })
            .collect();
        let root = node(Value::Object(vec![
            ("leases".to_string(), node(Value::Object(networks))),
            (
                "version".to_string(),
                node(Value::Number(json::Number::Unsigned(FORMAT_VERSION))),
            ),
        ]));
        json::to_canonical(&root)
    }
}

/// Reads the file: never through a symlink, never blocking on a FIFO put
/// in its place, only a regular file of at most `MAX_FILE` bytes.
fn read_file(path: &Path) -> io::Result<String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => io::Error::other("is a symlink"),
            _ => e,
        })?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE {
        return Err(io::Error::other(format!("larger than {MAX_FILE} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| io::Error::other("not UTF-8"))
}

/// The leases of a file's text, or why it cannot be trusted.
fn parse(text: &str) -> Result<BTreeMap<String, BTreeMap<String, Ipv4Addr>>, String> {
    let root = json::parse(text).map_err(|e| e.to_string())?;
    let Value::Object(top) = &root.value else {
        return Err(format!("expected an object, found {}", root.value.kind()));
    };
    let mut version = None;
    let mut leases = BTreeMap::new();
    for (key, node) in top {
        match key.as_str() {
            "version" => {
                version = match &node.value {
                    Value::Number(n) => n.as_u64(),
                    _ => None,
                };
                if version.is_none() {
                    return Err("\"version\" is not a format number".to_string());
                }
            }
            "leases" => leases = parse_leases(node)?,
            _ => return Err(format!("unknown key \"{}\"", printable(key))),
        }
    }
    match version {
        None | Some(0) => Err("no format version".to_string()),
        Some(v) if v > FORMAT_VERSION => Err(format!(
            "format {v} was written by a newer berth (this one reads up to {FORMAT_VERSION})"
        )),
        Some(_) => Ok(leases),
    }
}

fn parse_leases(node: &Node) -> Result<BTreeMap<String, BTreeMap<String, Ipv4Addr>>, String> {
    let Value::Object(networks) = &node.value else {
        return Err(format!(
            "\"leases\": expected an object, found {}",
            node.value.kind()
        ));
    };
    let mut out = BTreeMap::new();
    for (net, node) in networks {
        validate_name(net).map_err(|r| format!("\"leases\": network {r}"))?;
        let Value::Object(members) = &node.value else {
            return Err(format!(
                "network {net}: expected an object, found {}",
                node.value.kind()
            ));
        };
        let mut leases: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        let mut holders: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
        for (name, value) in members {
            validate_name(name).map_err(|r| format!("network {net}: container {r}"))?;
            let addr = match &value.value {
                Value::String(s) => s.parse::<Ipv4Addr>().ok(),
                _ => None,
            }
            .ok_or_else(|| format!("network {net}: {name}: not an IPv4 address"))?;
            if let Some(other) = holders.insert(addr, name) {
                return Err(format!(
                    "network {net}: {addr} is leased twice ({other} and {name})"
                ));
            }
            leases.insert(name.clone(), addr);
        }
        if !leases.is_empty() {
            out.insert(net.clone(), leases);
        }
    }
    Ok(out)
}

/// At most 64 characters of a key, escaped.
fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let mut out = String::new();
    json::escape_into(&mut out, &short);
    out.pop();
    out.remove(0);
    out
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::testing::TempDir;

    fn net(subnet: [u8; 4], prefix: u8, gateway: [u8; 4]) -> NetworkDef {
        NetworkDef {
            name: "lan".into(),
            bridge: "berth0".into(),
            subnet: subnet.into(),
            prefix,
            gateway: gateway.into(),
            nat: true,
        }
    }

    fn lan() -> NetworkDef {
        net([10, 88, 0, 0], 24, [10, 88, 0, 1])
    }

    fn ip(last: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 88, 0, last)
    }

    fn empty() -> Ipam {
        Ipam {
            path: PathBuf::from("/nonexistent/networks.json"),
            leases: BTreeMap::new(),
        }
    }

    #[test]
    fn dynamic_addresses_are_the_lowest_free_ones() {
        let lan = lan();
        let mut ipam = empty();
        assert_eq!(ipam.assign(&lan, "a", None, &[]).unwrap(), ip(2));
        assert_eq!(ipam.assign(&lan, "b", None, &[]).unwrap(), ip(3));
        // Reserved addresses (others' fixed ones) are skipped.
        assert_eq!(
            ipam.assign(&lan, "c", None, &[ip(4), ip(5)]).unwrap(),
            ip(6)
        );
        // A released address is the next one handed out.
        assert!(ipam.release("lan", "a"));
        assert!(!ipam.release("lan", "a"));
        assert!(!ipam.release("wan", "b"));
        assert_eq!(ipam.lease("lan", "a"), None);
        assert_eq!(ipam.assign(&lan, "d", None, &[]).unwrap(), ip(2));
        // A gateway elsewhere than first: the first host address is free.
        let high = net([10, 90, 0, 0], 24, [10, 90, 0, 254]);
        let mut other = empty();
        assert_eq!(
            other.assign(&high, "a", None, &[]).unwrap(),
            Ipv4Addr::new(10, 90, 0, 1)
        );
        assert_eq!(
            ipam.leases("lan"),
            [
                ("b".to_string(), ip(3)),
                ("c".to_string(), ip(6)),
                ("d".to_string(), ip(2))
            ]
        );
        assert!(ipam.leases("wan").is_empty());
    }

    #[test]
    fn a_lease_is_kept_while_it_fits() {
        let lan = lan();
        let mut ipam = empty();
        assert_eq!(ipam.assign(&lan, "a", None, &[]).unwrap(), ip(2));
        assert_eq!(ipam.assign(&lan, "b", None, &[]).unwrap(), ip(3));
        ipam.release("lan", "a");
        // b keeps .3 though .2 is free again.
        assert_eq!(ipam.assign(&lan, "b", None, &[]).unwrap(), ip(3));
        // Another container's fixed address now: b moves.
        assert_eq!(ipam.assign(&lan, "b", None, &[ip(3)]).unwrap(), ip(2));
        assert_eq!(ipam.lease("lan", "b"), Some(ip(2)));
        // Fixed: the lease follows the file.
        assert_eq!(ipam.assign(&lan, "b", Some(ip(9)), &[]).unwrap(), ip(9));
        assert_eq!(
            ipam.assign(&lan, "b", Some(ip(9)), &[ip(9)]).unwrap(),
            ip(9)
        );
        assert_eq!(ipam.leases("lan"), [("b".to_string(), ip(9))]);
        // The subnet changed under it: a new address from the new subnet.
        let moved = net([10, 77, 0, 0], 24, [10, 77, 0, 1]);
        assert_eq!(
            ipam.assign(&moved, "b", None, &[]).unwrap(),
            Ipv4Addr::new(10, 77, 0, 2)
        );
        // The gateway moved onto it.
        let mut ipam = empty();
        assert_eq!(ipam.assign(&lan, "a", None, &[]).unwrap(), ip(2));
        let regw = net([10, 88, 0, 0], 24, [10, 88, 0, 2]);
        assert_eq!(ipam.assign(&regw, "a", None, &[]).unwrap(), ip(1));
    }

    #[test]
    fn a_fixed_address_is_checked_and_never_given_twice() {
        let lan = lan();
        let mut ipam = empty();
        assert_eq!(ipam.assign(&lan, "a", Some(ip(7)), &[]).unwrap(), ip(7));
        let e = ipam.assign(&lan, "b", Some(ip(7)), &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "10.88.0.7 on network lan is already leased to a"
        );
        assert_eq!(ipam.lease("lan", "b"), None);
        for (addr, reason) in [
            (ip(1), "10.88.0.1 is the gateway of network lan"),
            (
                ip(0),
                "10.88.0.0 is the network address of 10.88.0.0/24 (network lan)",
            ),
            (
                ip(255),
                "10.88.0.255 is the broadcast address of 10.88.0.0/24 (network lan)",
            ),
            (
                Ipv4Addr::new(10, 89, 0, 7),
                "10.89.0.7 is outside network lan's subnet 10.88.0.0/24",
            ),
        ] {
            let e = ipam.assign(&lan, "b", Some(addr), &[]).unwrap_err();
            assert_eq!(e.to_string(), reason);
        }
        // Dynamic ones go around fixed ones, held or not.
        for name in ["c", "d", "e", "f", "g"] {
            ipam.assign(&lan, name, None, &[ip(8)]).unwrap();
        }
        let taken: Vec<Ipv4Addr> = ipam.leases("lan").iter().map(|(_, a)| *a).collect();
        assert_eq!(taken, [ip(7), ip(2), ip(3), ip(4), ip(5), ip(6)]);
        assert_eq!(ipam.assign(&lan, "h", None, &[ip(8)]).unwrap(), ip(9));
        // A container moving from dynamic to fixed gives its old one up.
        assert_eq!(ipam.assign(&lan, "c", Some(ip(8)), &[]).unwrap(), ip(8));
        assert_eq!(ipam.assign(&lan, "i", None, &[]).unwrap(), ip(2));
    }

    #[test]
    fn an_exhausted_subnet_is_an_error_naming_it() {
        // A /30: network, gateway, one host, broadcast.
        let p2p = net([192, 168, 7, 4], 30, [192, 168, 7, 5]);
        let mut ipam = empty();
        assert_eq!(
            ipam.assign(&p2p, "a", None, &[]).unwrap(),
            Ipv4Addr::new(192, 168, 7, 6)
        );
        let e = ipam.assign(&p2p, "b", None, &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no free address left in 192.168.7.4/30 (network lan)"
        );
        ipam.release("lan", "a");
        let e = ipam
            .assign(&p2p, "b", None, &[Ipv4Addr::new(192, 168, 7, 6)])
            .unwrap_err();
        assert!(matches!(e, IpamError::Exhausted { .. }));
        // A whole /24 hands out 253 addresses, each once.
        let lan = lan();
        let mut ipam = empty();
        let mut seen = BTreeSet::new();
        for i in 0..253 {
            let a = ipam.assign(&lan, &format!("c{i}"), None, &[]).unwrap();
            assert!(seen.insert(a), "{a} twice");
        }
        assert!(ipam.assign(&lan, "one-more", None, &[]).is_err());
    }

    #[test]
    fn leases_survive_a_save_and_load() {
        let tmp = TempDir::new("ipam");
        let state = tmp.path().join("state");
        let mut ipam = Ipam::load(&state).unwrap();
        assert!(ipam.networks().is_empty());
        assert_eq!(ipam.path(), state.join("networks.json"));
        let lan = lan();
        let mut db = net([10, 89, 0, 0], 24, [10, 89, 0, 1]);
        db.name = "db".into();
        ipam.assign(&lan, "web", None, &[]).unwrap();
        ipam.assign(&lan, "app", Some(ip(50)), &[]).unwrap();
        ipam.assign(&db, "app", None, &[]).unwrap();
        ipam.save().unwrap();
        assert_eq!(
            fs::read_to_string(state.join("networks.json")).unwrap(),
            "{\"leases\":{\"db\":{\"app\":\"10.89.0.2\"},\"lan\":{\"app\":\"10.88.0.50\",\"web\":\"10.88.0.2\"}},\"version\":1}\n"
        );
        let again = Ipam::load(&state).unwrap();
        assert_eq!(again, ipam);
        assert_eq!(again.networks(), ["db", "lan"]);
        assert_eq!(again.lease("lan", "web"), Some(ip(2)));
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names, ["networks.json"]);
        // Forgetting a network, and releasing a network's last lease,
        // leave nothing of it.
        let mut ipam = again;
        ipam.forget_network("db");
        ipam.release("lan", "web");
        ipam.release("lan", "app");
        assert!(ipam.networks().is_empty());
        ipam.save().unwrap();
        assert_eq!(
            fs::read_to_string(state.join("networks.json")).unwrap(),
            "{\"leases\":{},\"version\":1}\n"
        );
        assert!(Ipam::load(&state).unwrap().networks().is_empty());
    }

    #[test]
    fn a_file_that_cannot_be_trusted_is_an_error_naming_it() {
        let tmp = TempDir::new("ipam-bad");
        let path = tmp.path().join("networks.json");
        let shown = path.display().to_string();
        let cases = [
            ("", "line 1 column 1: expected a value, found end of input"),
            (
                "{\"leases\": {}, \"version\": 1",
                "line 1 column 28: expected ',' or '}'",
            ),
            ("[]", "expected an object, found an array"),
            ("{\"leases\": {}}", "no format version"),
            (
                "{\"leases\": {}, \"version\": \"1\"}",
                "\"version\" is not a format number",
            ),
            (
                "{\"leases\": {}, \"version\": 2}",
                "format 2 was written by a newer berth (this one reads up to 1)",
            ),
            ("{\"version\": 1, \"extra\": 1}", "unknown key \"extra\""),
            (
                "{\"version\": 1, \"leases\": []}",
                "\"leases\": expected an object, found an array",
            ),
            (
                "{\"version\": 1, \"leases\": {\"../x\": {}}}",
                "\"leases\": network name \"../x\" may only contain A-Z a-z 0-9 _ . -",
            ),
            (
                "{\"version\": 1, \"leases\": {\"lan\": {\"a\": \"10.88.0.300\"}}}",
                "network lan: a: not an IPv4 address",
            ),
            (
                "{\"version\": 1, \"leases\": {\"lan\": {\"a/b\": \"10.88.0.3\"}}}",
                "network lan: container name \"a/b\" may only contain A-Z a-z 0-9 _ . -",
            ),
            (
                "{\"version\": 1, \"leases\": {\"lan\": {\"a\": \"10.88.0.3\", \"b\": \"10.88.0.3\"}}}",
                "network lan: 10.88.0.3 is leased twice (a and b)",
            ),
        ];
        for (text, reason) in cases {
            fs::write(&path, text).unwrap();
            let e = Ipam::load(tmp.path()).unwrap_err();
            assert!(matches!(e, IpamError::Corrupt { .. }), "{text}");
            assert_eq!(
                e.to_string(),
                format!("{shown}: not a usable lease file: {reason}"),
                "{text}"
            );
        }
        fs::remove_file(&path).unwrap();
        symlink("/etc/hostname", &path).unwrap();
        let e = Ipam::load(tmp.path()).unwrap_err();
        assert_eq!(e.to_string(), format!("read {shown}: is a symlink"));
        fs::remove_file(&path).unwrap();
        fs::create_dir(&path).unwrap();
        let e = Ipam::load(tmp.path()).unwrap_err();
        assert_eq!(e.to_string(), format!("read {shown}: not a regular file"));
    }
}
