//! Container file keys for health: `healthcheck` (a command run inside the
//! running container every `interval` seconds, with Docker's meaning of
//! `timeout`, `retries` and `start-period`) and `on-unhealthy` (what the
//! monitor does when the checks say the container is unhealthy).

use std::path::Path;
use std::time::Duration;

use super::fields::{field_error, get_array, get_str, get_uint, quoted, unknown_key, wrong_type};
use super::types::{ConfigError, Healthcheck, MAX_LIST_LEN, OnUnhealthy};
use crate::json::{Node, Value};

/// Longest interval and start-period, in seconds (a day).
pub const MAX_PERIOD: u64 = 86_400;
/// Longest check timeout, in seconds.
pub const MAX_CHECK_TIMEOUT: u64 = 3600;
/// Most failures in a row a healthcheck may wait for.
pub const MAX_RETRIES: u64 = 1000;

impl Healthcheck {
    /// Docker's defaults: every 30 s, 30 s to answer, 3 failures in a row,
    /// no start period.
    pub fn with_command(command: Vec<String>) -> Healthcheck {
        Healthcheck {
            command,
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            retries: 3,
            start_period: Duration::ZERO,
        }
    }
}

/// The `healthcheck` key: `{"command": [...], "interval", "timeout",
/// "retries", "start-period"}`, times in whole seconds.
pub(super) fn get_healthcheck(node: &Node, file: &Path) -> Result<Healthcheck, ConfigError> {
    let Value::Object(fields) = &node.value else {
        return Err(field_error(
            file,
            "healthcheck",
            wrong_type("an object", node),
        ));
    };
    let mut check = Healthcheck::with_command(Vec::new());
    let mut command = None;
    for (key, value) in fields {
        let err = |reason: String| field_error(file, format!("healthcheck.{key}"), reason);
        let secs = |min: u64, max: u64| -> Result<Duration, ConfigError> {
            get_uint(value, min, max)
                .map(Duration::from_secs)
                .map_err(err)
        };
        match key.as_str() {
            "command" => command = Some(get_check_command(value, file)?),
            "interval" => check.interval = secs(1, MAX_PERIOD)?,
            "timeout" => check.timeout = secs(1, MAX_CHECK_TIMEOUT)?,
            "retries" => check.retries = get_uint(value, 1, MAX_RETRIES).map_err(err)? as u32,
            "start-period" => check.start_period = secs(0, MAX_PERIOD)?,
            _ => return Err(unknown_key(file, "healthcheck.", key)),
        }
    }
    check.command = command
        .ok_or_else(|| field_error(file, "healthcheck.command", "required key is missing"))?;
    Ok(check)
}

fn get_check_command(node: &Node, file: &Path) -> Result<Vec<String>, ConfigError> {
    let field = "healthcheck.command";
    let items = get_array(node, MAX_LIST_LEN).map_err(|r| field_error(file, field, r))?;
    if items.is_empty() {
        return Err(field_error(file, field, "must not be empty"));
    }
    let mut command = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let s = get_str(item).map_err(|r| field_error(file, format!("{field}[{i}]"), r))?;
        if i == 0 && s.is_empty() {
            return Err(field_error(
                file,
                format!("{field}[0]"),
                "must not be empty",
            ));
        }
        command.push(s.to_string());
    }
    Ok(command)
}

/// `on-unhealthy`: "none" (the default) or "restart".
pub(super) fn parse_on_unhealthy(s: &str) -> Result<OnUnhealthy, String> {
    match s {
        "none" => Ok(OnUnhealthy::None),
        "restart" => Ok(OnUnhealthy::Restart),
        _ => Err(format!(
            "expected \"none\" or \"restart\", found {}",
            quoted(s)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::field;
    use super::*;
    use crate::config::parse_container;

    use super::super::testing::{APP_FILE as FILE, parse_app as parse};

    fn err(extra: &str) -> (Option<String>, String) {
        let e = parse(extra).unwrap_err();
        assert_eq!(e.file, Path::new(FILE));
        (e.field, e.reason)
    }

    #[test]
    fn a_healthcheck_with_defaults_and_with_every_key() {
        let s = parse(r#","healthcheck": {"command": ["/bin/check", "-q"]}"#).unwrap();
        assert_eq!(
            s.healthcheck,
            Some(Healthcheck::with_command(vec![
                "/bin/check".into(),
                "-q".into()
            ]))
        );
        assert_eq!(s.on_unhealthy, OnUnhealthy::None);
        let s = parse(
            r#","healthcheck": {"command": ["true"], "interval": 2, "timeout": 1,
                 "retries": 5, "start-period": 10}, "on-unhealthy": "restart""#,
        )
        .unwrap();
        let h = s.healthcheck.clone().unwrap();
        assert_eq!(h.interval, Duration::from_secs(2));
        assert_eq!(h.timeout, Duration::from_secs(1));
        assert_eq!(h.retries, 5);
        assert_eq!(h.start_period, Duration::from_secs(10));
        assert_eq!(s.on_unhealthy, OnUnhealthy::Restart);
        // The canonical text parses back to the same definition.
        let again = parse_container("app", &s.canonical, Path::new(FILE)).unwrap();
        assert_eq!(again, s);
        // The health settings are part of the hash.
        let other = parse(
            r#","healthcheck": {"command": ["true"], "interval": 3, "timeout": 1,
                 "retries": 5, "start-period": 10}, "on-unhealthy": "restart""#,
        )
        .unwrap();
        assert_ne!(other.hash, s.hash);
        let none = parse(r#","on-unhealthy": "none""#).unwrap();
        assert_eq!(none.on_unhealthy, OnUnhealthy::None);
        assert_eq!(none.healthcheck, None);
    }

    #[test]
    fn healthcheck_errors_name_the_field() {
        let cases: &[(&str, &str, &str)] = &[
            (
                r#","healthcheck": ["true"]"#,
                "healthcheck",
                "expected an object, found an array",
            ),
            (
                r#","healthcheck": {"interval": 1}"#,
                "healthcheck.command",
                "required key is missing",
            ),
            (
                r#","healthcheck": {"command": []}"#,
                "healthcheck.command",
                "must not be empty",
            ),
            (
                r#","healthcheck": {"command": "true"}"#,
                "healthcheck.command",
                "expected an array, found a string",
            ),
            (
                r#","healthcheck": {"command": ["", "x"]}"#,
                "healthcheck.command[0]",
                "must not be empty",
            ),
            (
                r#","healthcheck": {"command": ["x", 1]}"#,
                "healthcheck.command[1]",
                "expected a string, found a number",
            ),
            (
                r#","healthcheck": {"command": ["x"], "interval": 0}"#,
                "healthcheck.interval",
                "must be from 1 to 86400, found 0",
            ),
            (
                r#","healthcheck": {"command": ["x"], "interval": "5s"}"#,
                "healthcheck.interval",
                "expected an integer, found a string",
            ),
            (
                r#","healthcheck": {"command": ["x"], "timeout": 3601}"#,
                "healthcheck.timeout",
                "must be from 1 to 3600, found 3601",
            ),
            (
                r#","healthcheck": {"command": ["x"], "retries": 0}"#,
                "healthcheck.retries",
                "must be from 1 to 1000, found 0",
            ),
            (
                r#","healthcheck": {"command": ["x"], "start-period": -1}"#,
                "healthcheck.start-period",
                "must be from 0 to 86400, found -1",
            ),
            (
                r#","healthcheck": {"command": ["x"], "intervall": 1}"#,
                "healthcheck.intervall",
                "unknown key",
            ),
            (
                r#","on-unhealthy": "reboot""#,
                "on-unhealthy",
                "expected \"none\" or \"restart\", found \"reboot\"",
            ),
            (
                r#","on-unhealthy": true"#,
                "on-unhealthy",
                "expected a string, found a boolean",
            ),
            (
                r#","on-unhealthy": "restart""#,
                "on-unhealthy",
                "needs a \"healthcheck\" to act on",
            ),
        ];
        for &(extra, f, reason) in cases {
            assert_eq!(err(extra), field(f, reason), "{extra}");
        }
    }
}
