//! daemon.json and the container definitions: parse and validate, nothing else.
//!
//! Pure code: it reads bytes and returns typed values or one error naming the
//! file, the field (or line and column) and the reason. Every input here is
//! untrusted. Unknown keys are errors, so a typo never silently falls back to
//! a default.
//!
//! `types` holds what a configuration is, `fields` how one JSON value is read
//! as a field, `daemon_file` and `container_file` the two kinds of file,
//! `privileges` the capability and resource limit keys, `devices` the
//! host devices passed in, `image` the image, writable and verity keys,
//! `settings` the sysctl and env-file keys, `health` the healthcheck and
//! on-unhealthy keys, `depends` the start order, `network` the bridge
//! networks and a container's network, address and ports, `network_check`
//! those keys across the containers directory,
//! `load` the reading of them from disk (the containers directory and its
//! app directories) and the checks on the host, and `check` all of it as
//! start-up, reload and `berth daemon --validate` take it. Callers use the
//! names re-exported here, the ones the rest of berth needs.

mod check;
mod container_file;
mod daemon_file;
mod depends;
mod devices;
mod fields;
mod health;
mod image;
mod load;
mod network;
mod network_check;
mod privileges;
mod seccomp_profile;
mod settings;
mod types;

pub use check::{check_config, read_checked_definitions};
pub use container_file::{effective, fnv1a64, parse_container, parse_user};
pub use daemon_file::{default_daemon, parse_log_level, read_daemon_file, read_socket};
pub use depends::Condition;
pub use fields::validate_name;
pub use image::{image_identity_hash, read_image_fs};
pub use load::{check_container_host, defining_file};
pub use network::{Network, NetworkDef, PortMap, Proto};
pub use privileges::{RLIMITS, UNLIMITED, cap_name, capabilities, limit_text};
pub use settings::merge_env;
pub use types::{
    ConfigError, ContainerSpec, DaemonConfig, Device, DeviceAccess, Healthcheck, Id, LogTarget,
    MAX_TIMEOUT, Mount, MountKind, OnUnhealthy, RestartPolicy, SocketGroup, User, VerityHashes,
    Writable,
};

/// What the tests of several files here share.
#[cfg(test)]
mod testing {
    /// The (field, reason) of an error, as tests compare them.
    pub fn field(f: &str, reason: &str) -> (Option<String>, String) {
        (Some(f.to_string()), reason.to_string())
    }

    pub use crate::testing::TempDir;

    /// The file the definitions of `parse_app` come from.
    pub const APP_FILE: &str = "/etc/berth/containers/app.json";

    /// A minimal definition of `app`, with `extra` (",\"key\": value...")
    /// added to it.
    pub fn parse_app(extra: &str) -> Result<super::ContainerSpec, super::ConfigError> {
        let text = format!(r#"{{"rootfs": "/srv/app", "command": ["/bin/app"]{extra}}}"#);
        super::parse_container("app", &text, std::path::Path::new(APP_FILE))
    }

    /// A network definition, NAT on.
    pub fn network_def(
        name: &str,
        bridge: &str,
        subnet: [u8; 4],
        prefix: u8,
        gateway: [u8; 4],
    ) -> super::NetworkDef {
        super::NetworkDef {
            name: name.into(),
            bridge: bridge.into(),
            subnet: subnet.into(),
            prefix,
            gateway: gateway.into(),
            nat: true,
        }
    }
}
