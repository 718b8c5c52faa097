//! Bridge networks as the daemon keeps them: the bridges of daemon.json's
//! `networks`, each container's namespace with its veth ends and address,
//! the leases that keep addresses, berth's nf_tables table, and the
//! /etc/hosts lines that name the members of a network to each other.
//!
//! Everything is made by the daemon before a container's first start and
//! stays while the container is defined: restarts of the container, of its
//! monitor or of the daemon change nothing on the host. `attach` is
//! idempotent: run on what a previous daemon made, it only reads, and it
//! makes again what is missing (a bridge an administrator deleted, a veth).
//! Only removing the container (`detach`) takes it all down.

pub mod firewall;
pub mod ipam;
pub mod link;
pub mod netns;
pub mod nft;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use log::{info, warn};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use std::os::fd::AsRawFd;

use crate::config::{ContainerSpec, Network, NetworkDef, PortMap, Proto};
use crate::errors;
use crate::state::Paths;

use self::ipam::Ipam;
use self::link::Route;

/// One network a container is on, as inspect shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    pub network: String,
    pub address: Ipv4Addr,
    pub prefix: u8,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    /// The interface's name in the container (eth0, eth1, ...).
    pub interface: String,
}

/// What a container's start needs from its network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prepared {
    /// The namespace file to join; None: berth holds none for it (network
    /// "none" gets a new namespace, "host" the host's).
    pub netns: Option<PathBuf>,
    /// Lines for /etc/hosts naming the container's network peers.
    pub hosts: String,
}

/// A container with a namespace berth holds.
#[derive(Debug, Clone)]
struct Member {
    joined: Vec<Joined>,
    ports: Vec<PortMap>,
    /// Names it answers to in the others' /etc/hosts.
    names: Vec<String>,
}

/// The networks of one daemon.
pub struct Net {
    run_dir: PathBuf,
    state_dir: PathBuf,
    defs: Vec<NetworkDef>,
    ipam: Ipam,
    members: BTreeMap<String, Member>,
    /// Per network, the fixed addresses of the containers defined on it:
    /// never handed to another.
    fixed: BTreeMap<String, Vec<(String, Ipv4Addr)>>,
    /// The fingerprint of the table last applied (also kept in
    /// run-dir/nftables-fingerprint, for the next daemon).
    applied: Option<u64>,
    /// What tells of links and tables others delete.
    links: Option<link::LinkWatch>,
    table: Option<firewall::TableWatch>,
}

/// The host end of `container`'s veth on `network`: deterministic, so a
/// later daemon finds it; 11 bytes, within IFNAMSIZ.
pub fn host_end(container: &str, network: &str) -> String {
    let hash = crate::config::fnv1a64(format!("{container}/{network}").as_bytes());
    format!("bth{:08x}", hash as u32)
}

impl Net {
    /// The networks of a daemon with these directories, its leases read
    /// from state-dir.
    pub fn new(run_dir: &Path, state_dir: &Path) -> Result<Net, String> {
        let ipam = Ipam::load(state_dir).map_err(|e| e.to_string())?;
        let applied = fs::read_to_string(rules_file(run_dir))
            .ok()
            .and_then(|t| u64::from_str_radix(t.trim(), 16).ok());
        Ok(Net {
            run_dir: run_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            defs: Vec::new(),
            ipam,
            members: BTreeMap::new(),
            fixed: BTreeMap::new(),
            applied,
            links: None,
            table: None,
        })
    }

    fn def(&self, network: &str) -> Option<&NetworkDef> {
        self.defs.iter().find(|d| d.name == network)
    }

    /// Takes daemon.json's networks and the definitions of every container
    /// (for their fixed addresses): bridges are made or checked, networks
    /// gone from daemon.json are taken down with their leases, forwarding
    /// is turned on when there is a network. Returns what was done, for
    /// the log.
    pub fn configure(&mut self, defs: &[NetworkDef], specs: &[&ContainerSpec]) -> Vec<String> {
        let mut report = Vec::new();
        let gone: Vec<NetworkDef> = self
            .defs
            .iter()
            .filter(|old| !defs.iter().any(|d| d == *old))
            .cloned()
            .collect();
        for old in &gone {
            // A network changed or gone: its bridge goes (one with the
            // same name is made again below, with the new settings); the
            // containers on it are made again by the reload (their hash
            // covers the network, see `fold_hashes`).
            if let Err(e) = delete_bridge(&old.bridge) {
                report.push(format!("remove bridge {}: {e}", old.bridge));
            }
        }
        self.fixed.clear();
        for spec in specs {
            if let (Network::Bridge(nets), Some(addr)) = (&spec.network, spec.address) {
                if let Some(net) = nets.first() {
                    self.fixed
                        .entry(net.clone())
                        .or_default()
                        .push((spec.name.clone(), addr));
                }
            }
        }
        self.defs = defs.to_vec();
        // Leases on networks no longer defined (removed from daemon.json,
        // maybe while no daemon ran) hold nothing.
        let mut released = false;
        for network in self.ipam.networks() {
            if !defs.iter().any(|d| d.name == network) {
                self.ipam.forget_network(&network);
                released = true;
            }
        }
        // After a reboot (run-dir is new) no bridge is "missing".
        let booted = self.applied.is_none();
        for def in defs {
            // Leases on a network whose subnet changed no longer hold.
            let stale: Vec<String> = self
                .ipam
                .leases(&def.name)
                .into_iter()
                .filter(|(_, a)| !def.contains(*a))
                .map(|(c, _)| c)
                .collect();
            for c in stale {
                released |= self.ipam.release(&def.name, &c);
            }
            match ensure_bridge(def, booted || self.ipam.leases(&def.name).is_empty()) {
                Ok(Some(line)) => report.push(line),
                Ok(None) => {}
                Err(e) => report.push(format!("bridge {}: {e}", def.bridge)),
            }
        }
        if released {
            if let Err(e) = self.ipam.save() {
                report.push(format!("write the address leases: {}", errors::io_text(&e)));
            }
        }
        self.drain_watches();
        if !defs.is_empty() {
            match link::sysctl("net/ipv4/ip_forward", "1") {
                Ok(Some(was)) => report.push(format!(
                    "IP forwarding enabled (net.ipv4.ip_forward was {})",
                    was.trim()
                )),
                Ok(None) => {}
                Err(e) => report.push(format!(
                    "cannot enable IP forwarding (containers reach nothing beyond their bridge): {}",
                    errors::io_text(&e)
                )),
            }
        }
        report
    }

    /// Makes (or checks) what `spec`'s start needs: its namespace,
    /// veths, addresses, routes and published ports. `shared` says another
    /// container names it in `container:NAME` (a namespace is then held
    /// for it even with network "none").
    pub fn attach(&mut self, spec: &ContainerSpec, shared: bool) -> Result<Prepared, String> {
        let name = spec.name.as_str();
        if !matches!(spec.network, Network::Bridge(_)) && self.on_bridges(name) {
            // It left its bridge networks: what they gave it goes.
            info!(
                "{name}: no longer on a bridge network: its namespace, veths and addresses are removed"
            );
            self.detach(name);
        }
        match &spec.network {
            Network::Host => Ok(Prepared::default()),
            Network::None if !shared => Ok(Prepared::default()),
            Network::None => {
                let path = netns::path(&self.run_dir, name);
                create_netns(&path)?;
                Ok(Prepared {
                    netns: Some(path),
                    hosts: String::new(),
                })
            }
            Network::Container(owner) => {
                let path = netns::path(&self.run_dir, owner);
                if !netns::is_held(&path) {
                    return Err(format!(
                        "{owner} has no network namespace berth holds for it to share (it is not running)"
                    ));
                }
                // Its own hostname is its own; the addresses are the
                // owner's.
                let hosts = format!("127.0.0.1\t{}\n{}", spec.hostname, self.hosts_of(owner));
                self.write_hosts(spec, &hosts);
                Ok(Prepared {
                    netns: Some(path),
                    hosts,
                })
            }
            Network::Bridge(nets) => {
                let nets = nets.clone();
                self.attach_bridges(spec, &nets, true)?;
                self.apply_rules()?;
                let hosts = self.hosts_of(name);
                self.write_hosts(spec, &hosts);
                self.rewrite_hosts();
                Ok(Prepared {
                    netns: Some(netns::path(&self.run_dir, name)),
                    hosts,
                })
            }
        }
    }

    /// `starting`: the container does not run (a start, not a
    /// re-attach), so a namespace that no longer fits its definition (its
    /// networks, address or subnet changed) is made again from scratch.
    fn attach_bridges(
        &mut self,
        spec: &ContainerSpec,
        nets: &[String],
        starting: bool,
    ) -> Result<(), String> {
        let name = spec.name.as_str();
        let path = netns::path(&self.run_dir, name);
        if starting && netns::is_held(&path) && !self.fits(spec, nets, &path) {
            info!("{name}: its network changed: its namespace is made again");
            // Its addresses stay where they still fit the definition.
            let keep: BTreeSet<String> = nets
                .iter()
                .filter(|n| {
                    let lease = self.ipam.lease(n, name);
                    let fixed = if nets.len() == 1 { spec.address } else { None };
                    lease.is_some() && (fixed.is_none() || fixed == lease)
                })
                .cloned()
                .collect();
            self.take_down(name, &keep);
        }
        let fresh = !netns::is_held(&path);
        let ns = create_netns(&path)?;
        let mut joined = Vec::new();
        for (i, network) in nets.iter().enumerate() {
            let def = self
                .def(network)
                .cloned()
                .ok_or_else(|| format!("no network named {network} in daemon.json"))?;
            let before = self.ipam.lease(network, name);
            let address = match before {
                // A re-attach takes what is there: a definition changed
                // meanwhile is applied when the container is made again.
                Some(address) if !starting => address,
                None if !starting => continue,
                _ => self.lease(spec, nets, &def)?,
            };
            let interface = format!("eth{i}");
            plumb(&def, name, &interface, address, i == 0, fresh, ns.as_fd())
                .map_err(|e| format!("network {network}: {e}"))?;
            joined.push(Joined {
                network: network.clone(),
                address,
                prefix: def.prefix,
                gateway: def.gateway,
                bridge: def.bridge.clone(),
                interface,
            });
        }
        let mut names = vec![name.to_string()];
        if spec.hostname != name {
            names.push(spec.hostname.clone());
        }
        self.members.insert(
            name.to_string(),
            Member {
                joined,
                ports: spec.ports.clone(),
                names,
            },
        );
        Ok(())
    }

    /// The address of `spec`'s container on network `def` (one of `nets`),
    /// leased and recorded.
    fn lease(
        &mut self,
        spec: &ContainerSpec,
        nets: &[String],
        def: &NetworkDef,
    ) -> Result<Ipv4Addr, String> {
        let (name, network) = (spec.name.as_str(), def.name.as_str());
        let fixed = if nets.len() == 1 { spec.address } else { None };
        let before = self.ipam.lease(network, name);
        // Others' fixed addresses are never handed out, but an address
        // this container holds stays its own: another that names it
        // fails to start, saying whose it is.
        let reserved: Vec<Ipv4Addr> = self
            .fixed
            .get(network)
            .into_iter()
            .flatten()
            .filter(|(c, a)| c != name && Some(*a) != before)
            .map(|(_, a)| *a)
            .collect();
        let address = self
            .ipam
            .assign(def, name, fixed, &reserved)
            .map_err(|e| format!("network {network}: {e}"))?;
        if before != Some(address) {
            if let Err(e) = self.ipam.save() {
                // Not used unless recorded: a later daemon could give
                // it to another.
                self.ipam.release(network, name);
                if let Some(b) = before {
                    let _ = self.ipam.assign(def, name, Some(b), &[]);
                }
                return Err(format!(
                    "record the address lease in {}: {}",
                    self.state_dir.display(),
                    errors::io_text(&e)
                ));
            }
        }
        Ok(address)
    }

    /// At start-up: takes in what a previous daemon made for the defined
    /// containers whose namespace is still held (checking it, making
    /// again what is missing), then the table and the hosts files, once
    /// for all: a re-attach to an intact host changes nothing.
    pub fn restore(&mut self, specs: &[&ContainerSpec]) {
        for spec in specs {
            let Network::Bridge(nets) = &spec.network else {
                continue;
            };
            if !self.holds(&spec.name) {
                continue;
            }
            if let Err(e) = self.attach_bridges(spec, nets, false) {
                warn!("{}: {e}", spec.name);
            }
        }
        if let Err(e) = self.apply_rules() {
            warn!("{e}");
        }
        self.rewrite_hosts();
    }

    /// Whether the namespace held at `path` is what `spec` on `nets` would
    /// make: one interface per network besides `lo`, each with its host
    /// end, each with exactly its leased address (the fixed one, when the
    /// definition gives one).
    fn fits(&self, spec: &ContainerSpec, nets: &[String], path: &Path) -> bool {
        let name = spec.name.as_str();
        let Ok(Some(ns)) = netns::open(path) else {
            return false;
        };
        let (Ok(mut host), Ok(mut inside)) = (Route::open(), Route::open_in(ns.as_fd())) else {
            return false;
        };
        let Ok(links) = inside.links() else {
            return false;
        };
        // Only what berth made is looked at: interfaces and addresses
        // others add (a tunnel module's, a sidecar's VPN) are theirs; but
        // no lease on a network it left, and no other address of the
        // network's subnet on its interface.
        let left = self
            .ipam
            .networks()
            .iter()
            .any(|n| !nets.contains(n) && self.ipam.lease(n, name).is_some());
        if left {
            return false;
        }
        nets.iter().enumerate().all(|(i, network)| {
            let (Some(def), Some(lease)) = (self.def(network), self.ipam.lease(network, name))
            else {
                return false;
            };
            if nets.len() == 1 && spec.address.is_some_and(|a| a != lease) {
                return false;
            }
            let Some(eth) = links.iter().find(|l| l.name == format!("eth{i}")) else {
                return false;
            };
            matches!(host.link(&host_end(name, network)), Ok(Some(_)))
                && inside.addresses(eth.index).is_ok_and(|have| {
                    have.contains(&(lease, def.prefix))
                        && have
                            .iter()
                            .all(|&(a, p)| (a, p) == (lease, def.prefix) || !def.contains(a))
                })
        })
    }

    /// Takes down what `attach` made for `name`: its veths, its namespace,
    /// its leases, its rules; the others' /etc/hosts lose it.
    pub fn detach(&mut self, name: &str) {
        self.take_down(name, &BTreeSet::new());
    }

    /// As `detach`, but the leases on the networks in `keep` stay.
    fn take_down(&mut self, name: &str, keep: &BTreeSet<String>) {
        let path = netns::path(&self.run_dir, name);
        let member = self.members.remove(name);
        let networks: BTreeSet<String> = self
            .ipam
            .networks()
            .into_iter()
            .filter(|n| self.ipam.lease(n, name).is_some())
            .chain(
                member
                    .iter()
                    .flat_map(|m| m.joined.iter().map(|j| j.network.clone())),
            )
            .collect();
        for network in &networks {
            if let Err(e) = delete_link(&host_end(name, network)) {
                warn!("{name}: remove its veth on {network}: {e}");
            }
            if !keep.contains(network) {
                self.ipam.release(network, name);
            }
        }
        if !networks.is_empty() {
            if let Err(e) = self.ipam.save() {
                warn!("{name}: write the address leases: {}", errors::io_text(&e));
            }
        }
        if let Err(e) = netns::remove(&path) {
            warn!("{name}: remove {}: {}", path.display(), errors::io_text(&e));
        }
        if member.is_some() {
            if let Err(e) = self.apply_rules() {
                warn!("{name}: {e}");
            }
            self.rewrite_hosts();
        }
        self.drain_watches();
    }

    /// Whether berth keeps something of `name`'s network: a namespace
    /// held for it, or an address leased to it.
    pub fn holds(&self, name: &str) -> bool {
        netns::is_held(&netns::path(&self.run_dir, name)) || self.on_bridges(name)
    }

    /// Whether `name` is on a bridge network: attached, or holding a lease.
    fn on_bridges(&self, name: &str) -> bool {
        self.members.contains_key(name)
            || self
                .ipam
                .networks()
                .iter()
                .any(|n| self.ipam.lease(n, name).is_some())
    }

    /// Holds the network namespace of `owner`'s running init (`pid`,
    /// checked to be the same process before and after) for a container
    /// that names it in `container:NAME` when `owner` started without one
    /// held (no sharer was defined then).
    pub fn hold_running(&mut self, owner: &str, pid: i32, start: u64) -> Result<(), String> {
        let path = netns::path(&self.run_dir, owner);
        if netns::is_held(&path) {
            return Ok(());
        }
        if !crate::host::same_process(pid, start) {
            return Err(format!("{owner} is not running"));
        }
        let ns_of = |p: &str| fs::metadata(p).map(|m| (m.dev(), m.ino())).ok();
        if ns_of(&format!("/proc/{pid}/ns/net")) == ns_of("/proc/thread-self/ns/net") {
            return Err(format!("{owner} runs in the host's network namespace"));
        }
        netns::hold_process(&path, pid).map_err(|e| {
            format!(
                "hold the network namespace of {owner} (pid {pid}) at {}: {}",
                path.display(),
                errors::io_text(&e)
            )
        })?;
        if !crate::host::same_process(pid, start) {
            let _ = netns::remove(&path);
            return Err(format!("{owner} ended meanwhile"));
        }
        Ok(())
    }

    /// inspect's `networks` and `ports` of `spec`'s container.
    pub fn info(&self, spec: &ContainerSpec) -> (Vec<Joined>, Vec<PortMap>) {
        let of = match &spec.network {
            Network::Container(owner) => owner.as_str(),
            _ => spec.name.as_str(),
        };
        match self.members.get(of) {
            Some(m) => (m.joined.clone(), m.ports.clone()),
            None => (Vec::new(), Vec::new()),
        }
    }

    /// The /etc/hosts lines of `name`: every member of its networks
    /// (itself first), each name once.
    fn hosts_of(&self, name: &str) -> String {
        let Some(me) = self.members.get(name) else {
            return String::new();
        };
        let mut seen = BTreeSet::new();
        let mut text = String::new();
        let mut line = |addr: Ipv4Addr, names: &[String]| {
            let fresh: Vec<&str> = names
                .iter()
                .filter(|n| seen.insert(n.to_string()))
                .map(String::as_str)
                .collect();
            if !fresh.is_empty() {
                text.push_str(&format!("{addr}\t{}\n", fresh.join(" ")));
            }
        };
        if let Some(first) = me.joined.first() {
            line(first.address, &me.names);
        }
        for j in &me.joined {
            for (other, m) in &self.members {
                if other == name {
                    continue;
                }
                if let Some(theirs) = m.joined.iter().find(|o| o.network == j.network) {
                    line(theirs.address, &m.names);
                }
            }
        }
        text
    }

    /// Writes `spec`'s /etc/hosts (unless it has no /etc files from
    /// berth) before its monitor starts, so the rewrites of peers that
    /// start meanwhile find it; the monitor keeps it (see
    /// `etc_files::write`).
    fn write_hosts(&self, spec: &ContainerSpec, network: &str) {
        if !spec.etc_files {
            return;
        }
        let dir = Paths::new(&self.run_dir, &self.state_dir, &spec.name)
            .run
            .join("etc");
        let file = dir.join("hosts");
        let text = crate::container::etc_files::hosts(spec, network);
        let written = fs::create_dir_all(&dir).and_then(|()| {
            if !file.exists() {
                // 0644 whatever the daemon's umask: a container's non-root
                // user reads it.
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .mode(0o644)
                    .open(&file)?;
                f.set_permissions(fs::Permissions::from_mode(0o644))?;
            }
            rewrite_in_place(&file, text.as_bytes())
        });
        if let Err(e) = written {
            warn!(
                "{}: write {}: {}",
                spec.name,
                file.display(),
                errors::io_text(&e)
            );
        }
    }

    /// Rewrites, in place (the file is bound into the container), the
    /// /etc/hosts of every member whose peers changed.
    fn rewrite_hosts(&self) {
        for name in self.members.keys() {
            let paths = Paths::new(&self.run_dir, &self.state_dir, name);
            let file = paths.run.join("etc").join("hosts");
            let Ok(current) = fs::read_to_string(&file) else {
                continue; // not written yet: the start writes it
            };
            let base = base_hosts(&current);
            let next = format!("{base}{}", self.hosts_of(name));
            if next != current {
                if let Err(e) = rewrite_in_place(&file, next.as_bytes()) {
                    warn!(
                        "{name}: rewrite {}: {}",
                        file.display(),
                        errors::io_text(&e)
                    );
                }
            }
        }
    }

    /// The table for every network and published port, applied when it
    /// differs from the one applied last (or is missing).
    pub fn apply_rules(&mut self) -> Result<(), String> {
        let rules = self.rules();
        let print = fingerprint(&rules);
        // Per bridge, so set again for a bridge made again.
        for (key, value) in firewall::localhost_sysctls(&rules) {
            if let Err(e) = link::sysctl(&key, &value) {
                warn!("set {key} to {value}: {}", errors::io_text(&e));
            }
        }
        let present = firewall::present().unwrap_or(false);
        if present && self.applied == Some(print) {
            return Ok(());
        }
        if !present && self.applied.is_some() {
            info!("nf_tables table ip berth was missing: recreated");
        }
        firewall::apply(&rules)
            .map_err(|e| format!("program nf_tables table ip berth: {}", errors::io_text(&e)))?;
        self.applied = Some(print);
        self.drain_watches();
        let _ = fs::write(rules_file(&self.run_dir), format!("{print:016x}\n"));
        Ok(())
    }

    fn rules(&self) -> firewall::Rules {
        let bridges = self
            .defs
            .iter()
            .map(|d| firewall::Bridge {
                name: d.bridge.clone(),
                subnet: d.subnet,
                prefix: d.prefix,
                nat: d.nat,
            })
            .collect();
        let mut ports = Vec::new();
        for m in self.members.values() {
            // A member of a network gone or changed is made again by the
            // reload; until then its ports are not forwarded.
            let Some(first) = m.joined.first() else {
                continue;
            };
            let Some(def) = self
                .def(&first.network)
                .filter(|d| d.bridge == first.bridge)
            else {
                continue;
            };
            for p in &m.ports {
                ports.push(firewall::Published {
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    proto: match p.proto {
                        Proto::Tcp => firewall::Proto::Tcp,
                        Proto::Udp => firewall::Proto::Udp,
                    },
                    address: first.address,
                    port: p.port,
                    bridge: def.bridge.clone(),
                });
            }
        }
        firewall::Rules { bridges, ports }
    }

    /// Listens for deleted links and changed tables, on fds registered
    /// with `registry` under these tokens; see `changed`. Only once there
    /// is a network: a daemon without one is woken by no link change.
    pub fn watch(&mut self, registry: &Registry, links: Token, table: Token) -> Result<(), String> {
        if self.defs.is_empty() || self.links.is_some() {
            return Ok(());
        }
        let text = says;
        let l = link::LinkWatch::open().map_err(text("watch links"))?;
        let t = firewall::TableWatch::new().map_err(text("watch nf_tables"))?;
        registry
            .register(
                &mut SourceFd(&l.fd().as_raw_fd()),
                links,
                Interest::READABLE,
            )
            .map_err(text("register the link watch"))?;
        registry
            .register(
                &mut SourceFd(&t.fd().as_raw_fd()),
                table,
                Interest::READABLE,
            )
            .map_err(text("register the nf_tables watch"))?;
        self.links = Some(l);
        self.table = Some(t);
        Ok(())
    }

    /// Reads away what the watches tell of berth's own changes (the
    /// kernel queues its notices before it answers the change): what is
    /// left to read later is someone else's.
    fn drain_watches(&mut self) {
        if let Some(w) = self.links.as_mut() {
            let _ = w.read();
        }
        if let Some(w) = self.table.as_mut() {
            w.read_change();
        }
    }

    /// A watch is readable: what it read is looked at, and a bridge or the
    /// table someone else deleted is made again.
    pub fn changed(&mut self) {
        let bridges: BTreeSet<String> = self.defs.iter().map(|d| d.bridge.clone()).collect();
        // Notices lost (ENOBUFS): every bridge is looked at.
        let bridge_gone = self.links.as_mut().is_some_and(|w| match w.read() {
            Ok(events) => events
                .iter()
                .any(|e| e.deleted && bridges.contains(&e.name)),
            Err(_) => true,
        });
        let table = self
            .table
            .as_mut()
            .map_or(firewall::Change::None, |w| w.read_change());
        // Notices lost in a burst of others' changes: rewritten only if
        // the table is not as berth has it.
        let table_touched = match table {
            firewall::Change::None => false,
            firewall::Change::Touched => true,
            firewall::Change::Lost => !firewall::matches(&self.rules()).unwrap_or(false),
        };
        if bridge_gone || table_touched {
            self.repair(table_touched);
        }
    }

    /// After the table or a bridge was deleted (or changed) by someone
    /// else: made again, and the members' veths put back on their bridges.
    /// `table_touched`: the table is written again even if it is there.
    pub fn repair(&mut self, table_touched: bool) {
        if table_touched && firewall::present().unwrap_or(false) && self.applied.is_some() {
            // There, maybe changed: written as berth has it.
            self.applied = None;
            info!("nf_tables table ip berth was changed by someone else: rewritten");
        }
        for def in self.defs.clone() {
            match ensure_bridge(&def, false) {
                Ok(Some(line)) => info!("{line}"),
                Ok(None) => {}
                Err(e) => warn!("bridge {}: {e}", def.bridge),
            }
        }
        for (name, m) in self.members.clone() {
            for j in &m.joined {
                if let Err(e) = enslave(&host_end(&name, &j.network), &j.bridge) {
                    warn!("{name}: put its veth back on {}: {e}", j.bridge);
                }
            }
        }
        if let Err(e) = self.apply_rules() {
            warn!("{e}");
        }
    }
}

/// Mixes into each definition's hash what its network depends on beyond
/// its own file: the settings of the bridge networks it is on, and for
/// `container:NAME` the owner's hash; so a reload that changes a network
/// recreates exactly the containers on it, and a recreated owner takes its
/// sharers with it.
pub fn fold_hashes(defs: &[NetworkDef], specs: &mut [&mut ContainerSpec]) {
    for spec in specs.iter_mut() {
        if let Network::Bridge(nets) = &spec.network {
            let used: Vec<&NetworkDef> = nets
                .iter()
                .filter_map(|n| defs.iter().find(|d| &d.name == n))
                .collect();
            spec.net_mix = crate::config::fnv1a64(format!("{used:?}").as_bytes()) | 1;
            spec.hash = fold(spec.hash, spec.net_mix);
        }
    }
    let owners: BTreeMap<String, u64> = specs.iter().map(|s| (s.name.clone(), s.hash)).collect();
    for spec in specs.iter_mut() {
        if let Network::Container(owner) = &spec.network {
            if let Some(&h) = owners.get(owner) {
                spec.net_mix = h | 1;
                spec.hash = fold(spec.hash, spec.net_mix);
            }
        }
    }
}

/// A definition's hash with `mix` (a `net_mix`) folded in; 0 folds
/// nothing.
pub fn fold(hash: u64, mix: u64) -> u64 {
    if mix == 0 {
        hash
    } else {
        hash.rotate_left(1) ^ mix
    }
}

/// An error's text after what was being done.
fn says(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {}", errors::io_text(&e))
}

fn rules_file(run_dir: &Path) -> PathBuf {
    run_dir.join("nftables-fingerprint")
}

/// `netns::create`, its error in words.
fn create_netns(path: &Path) -> Result<std::os::fd::OwnedFd, String> {
    netns::create(path).map_err(|e| {
        format!(
            "create the network namespace {}: {}",
            path.display(),
            errors::io_text(&e)
        )
    })
}

fn fingerprint(rules: &firewall::Rules) -> u64 {
    crate::config::fnv1a64(format!("{rules:?}").as_bytes())
}

/// The part of a hosts file berth writes before the network's lines
/// (everything up to the first line that is not loopback's).
fn base_hosts(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let addr = line.split_whitespace().next().unwrap_or("");
        let loopback = addr.starts_with("127.") || addr.contains(':');
        if !loopback {
            break;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Writes `bytes` over `file` without replacing it (a bind mount holds
/// the inode): one write, then the length cut.
fn rewrite_in_place(file: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(file)?;
    f.write_all(bytes)?;
    f.set_len(bytes.len() as u64)
}

/// Makes `def`'s bridge with the gateway's address, up; checks one that
/// is there. `first` says none of its members was attached before: a
/// missing bridge is then made, not "recreated".
fn ensure_bridge(def: &NetworkDef, first: bool) -> Result<Option<String>, String> {
    let text = |e: io::Error| errors::io_text(&e);
    let mut r = Route::open().map_err(text)?;
    let (index, line) = match r.link(&def.bridge).map_err(text)? {
        Some(l) if !l.is_bridge() => {
            return Err(format!(
                "a link named {} exists and is not a bridge ({}): berth does not take it over",
                def.bridge,
                l.kind.as_deref().unwrap_or("unknown kind")
            ));
        }
        Some(l) => (l.index, None),
        None => {
            let index = r.add_bridge(&def.bridge).map_err(text)?;
            let line = if first {
                format!(
                    "bridge {} made for network {} ({}/{})",
                    def.bridge, def.name, def.gateway, def.prefix
                )
            } else {
                format!("bridge {} was missing: recreated", def.bridge)
            };
            (index, Some(line))
        }
    };
    r.add_address(index, def.gateway, def.prefix)
        .map_err(text)?;
    r.set_up(index).map_err(text)?;
    Ok(line)
}

fn delete_link(name: &str) -> Result<(), String> {
    delete_link_if(name, |_| true)
}

/// Deletes the bridge `name`: a link of that name of another kind is not
/// berth's, and stays.
fn delete_bridge(name: &str) -> Result<(), String> {
    delete_link_if(name, link::Link::is_bridge)
}

fn delete_link_if(name: &str, ours: impl Fn(&link::Link) -> bool) -> Result<(), String> {
    let text = |e: io::Error| errors::io_text(&e);
    let mut r = Route::open().map_err(text)?;
    if let Some(l) = r.link(name).map_err(text)?.filter(|l| ours(l)) {
        r.delete(l.index).map_err(text)?;
    }
    Ok(())
}

fn enslave(host: &str, bridge: &str) -> Result<(), String> {
    let text = |e: io::Error| errors::io_text(&e);
    let mut r = Route::open().map_err(text)?;
    let (Some(end), Some(br)) = (r.link(host).map_err(text)?, r.link(bridge).map_err(text)?) else {
        return Ok(());
    };
    if !br.is_bridge() {
        return Err(format!("{bridge} is not a bridge"));
    }
    if end.master != Some(br.index) {
        r.set_master(end.index, br.index).map_err(text)?;
    }
    if !end.up {
        r.set_up(end.index).map_err(text)?;
    }
    Ok(())
}

/// The veth of one container on one network: host end on the bridge, the
/// other end `interface` in the namespace `ns` with `address`, and the
/// default route when `route`. What is there already is left as it is.
/// `fresh`: the namespace was just made, so a host end by that name is a
/// leftover of an older one, removed first.
fn plumb(
    def: &NetworkDef,
    container: &str,
    interface: &str,
    address: Ipv4Addr,
    route: bool,
    fresh: bool,
    ns: BorrowedFd<'_>,
) -> Result<(), String> {
    let text = says;
    let host = host_end(container, &def.name);
    let mut r = Route::open().map_err(text("netlink"))?;
    let bridge = r
        .link(&def.bridge)
        .map_err(text("find the bridge"))?
        .ok_or_else(|| format!("bridge {} is missing", def.bridge))?;
    if !bridge.is_bridge() {
        return Err(format!("{} is not a bridge", def.bridge));
    }
    let mut inside = Route::open_in(ns).map_err(text("netlink in the container's namespace"))?;
    let mut end = r.link(&host).map_err(text("find the veth"))?;
    if end.is_some() && (fresh || inside.link(interface).map_err(text("find eth"))?.is_none()) {
        r.delete(end.take().map(|l| l.index).unwrap_or(0))
            .map_err(text(&format!("remove the stale veth {host}")))?;
    }
    let index = match end {
        Some(l) => l.index,
        None => r
            .add_veth(&host, interface, ns)
            .map_err(text(&format!("create veth {host} / {interface}")))?,
    };
    let end = r
        .link(&host)
        .map_err(text("find the veth"))?
        .ok_or_else(|| format!("veth {host} vanished"))?;
    if end.master != Some(bridge.index) {
        r.set_master(index, bridge.index)
            .map_err(text(&format!("put {host} on {}", def.bridge)))?;
    }
    if !end.up {
        r.set_up(index).map_err(text(&format!("bring {host} up")))?;
    }
    let eth = inside
        .link(interface)
        .map_err(text("find the container's interface"))?
        .ok_or_else(|| format!("{interface} is missing in the container's namespace"))?;
    let have = inside
        .addresses(eth.index)
        .map_err(text("read addresses"))?;
    if !have.contains(&(address, def.prefix)) {
        inside
            .add_address(eth.index, address, def.prefix)
            .map_err(text(&format!("give {interface} {address}/{}", def.prefix)))?;
    }
    if !eth.up {
        inside
            .set_up(eth.index)
            .map_err(text(&format!("bring {interface} up")))?;
    }
    if route {
        inside
            .add_default_route(def.gateway)
            .map_err(text(&format!("route via {}", def.gateway)))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ends_fit_an_interface_name_and_differ_per_network() {
        let a = host_end("web", "lan");
        assert_eq!(a.len(), 11);
        assert!(a.starts_with("bth"));
        assert_eq!(a, host_end("web", "lan"));
        assert_ne!(a, host_end("web", "db"));
        assert_ne!(a, host_end("db", "lan"));
    }

    #[test]
    fn the_network_lines_of_a_hosts_file_are_cut_off() {
        let text = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.0.1\tweb\n10.88.0.2\tweb\n10.88.0.3\tdb\n";
        assert_eq!(
            base_hosts(text),
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n127.0.0.1\tweb\n"
        );
    }
}
