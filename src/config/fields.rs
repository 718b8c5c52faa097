//! The pieces both kinds of file are read with: one JSON node taken as a
//! typed field (a string, a path, a bounded integer, a size, an array), the
//! errors that name the file and the field, untrusted text made printable,
//! and the shared spellings of names and sizes.

use std::path::{Path, PathBuf};

use super::types::{ConfigError, MAX_NAME_LEN, MAX_STRING_LEN};
use crate::json::{self, Node, Number, Value};

/// Checks a container name before it becomes part of a path:
/// `[A-Za-z0-9_.-]`, 1 to 64 bytes, no leading '.'.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name must not be empty".to_string());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "name {} is longer than {MAX_NAME_LEN} bytes",
            quoted(name)
        ));
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-');
    if !name.bytes().all(allowed) {
        return Err(format!(
            "name {} may only contain A-Z a-z 0-9 _ . -",
            quoted(name)
        ));
    }
    if name.starts_with('.') {
        return Err(format!("name {} must not start with '.'", quoted(name)));
    }
    Ok(())
}

/// "512", "64k", "64m", "1g" (any case, optionally with a "b" after the
/// unit, or "b" alone) in bytes; units are powers of 1024.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" => 10,
        "m" | "mb" => 20,
        "g" | "gb" => 30,
        "t" | "tb" => 40,
        _ => digits.len() + 64,
    };
    if digits.is_empty() || shift >= 64 {
        return Err(format!(
            "invalid size {}: expected digits and an optional k, m or g suffix",
            quoted(s)
        ));
    }
    let too_large = || format!("size {} is too large", quoted(s));
    let n: u64 = digits.parse().map_err(|_| too_large())?;
    n.checked_mul(1u64 << shift).ok_or_else(too_large)
}

pub(super) fn file_error(file: &Path, reason: String) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        field: None,
        position: None,
        reason,
    }
}

pub(super) fn field_error(
    file: &Path,
    field: impl Into<String>,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError {
        file: file.to_path_buf(),
        field: Some(field.into()),
        position: None,
        reason: reason.into(),
    }
}

/// `prefix` is "" at the top level or like "mounts[1]." inside an object.
pub(super) fn unknown_key(file: &Path, prefix: &str, key: &str) -> ConfigError {
    field_error(file, format!("{prefix}{}", printable(key)), "unknown key")
}

/// At most 64 characters of untrusted text, escaped like a JSON string (so
/// no control character reaches a log line), without the quotes.
pub(super) fn printable(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    let mut out = String::new();
    json::escape_into(&mut out, &short);
    out.pop();
    out.remove(0);
    if short.len() < s.len() {
        out.push_str("...");
    }
    out
}

pub(super) fn quoted(s: &str) -> String {
    format!("\"{}\"", printable(s))
}

/// Parses a whole file that must hold one JSON object.
pub(super) fn parse_top(text: &str, file: &Path) -> Result<Node, ConfigError> {
    let blank = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\u{feff}');
    if text.trim_matches(blank).is_empty() {
        return Err(file_error(file, "empty file".to_string()));
    }
    let at = |line, col, reason| ConfigError {
        file: file.to_path_buf(),
        field: None,
        position: Some((line, col)),
        reason,
    };
    let root = json::parse(text).map_err(|e| at(e.line, e.col, e.reason))?;
    if !matches!(root.value, Value::Object(_)) {
        let reason = format!(
            "expected an object at the top level, found {}",
            root.value.kind()
        );
        return Err(at(root.line, root.col, reason));
    }
    Ok(root)
}

pub(super) fn members(node: &Node) -> &[(String, Node)] {
    match &node.value {
        Value::Object(members) => members,
        _ => &[],
    }
}

pub(super) fn wrong_type(expected: &str, node: &Node) -> String {
    format!("expected {expected}, found {}", node.value.kind())
}

pub(super) fn number_text(n: &Number) -> String {
    match *n {
        Number::Unsigned(v) => v.to_string(),
        Number::Negative(v) => v.to_string(),
        Number::Float(f) => format!("{f:?}"),
    }
}

pub(super) fn get_bool(node: &Node) -> Result<bool, String> {
    match node.value {
        Value::Bool(b) => Ok(b),
        _ => Err(wrong_type("a boolean", node)),
    }
}

/// A string of at most `MAX_STRING_LEN` bytes without NUL.
pub(super) fn get_str(node: &Node) -> Result<&str, String> {
    match &node.value {
        Value::String(s) if s.len() > MAX_STRING_LEN => {
            Err(format!("string is longer than {MAX_STRING_LEN} bytes"))
        }
        Value::String(s) if s.contains('\0') => Err("string contains a NUL byte".to_string()),
        Value::String(s) => Ok(s),
        _ => Err(wrong_type("a string", node)),
    }
}

/// A non-empty path string, relative ones taken from `file`'s directory.
pub(super) fn get_path(node: &Node, file: &Path) -> Result<PathBuf, String> {
    let s = get_str(node)?;
    if s.is_empty() {
        return Err("must not be empty".to_string());
    }
    let path = Path::new(s);
    Ok(match file.parent() {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    })
}

/// A whole number from `min` to `max`.
pub(super) fn get_uint(node: &Node, min: u64, max: u64) -> Result<u64, String> {
    let Value::Number(n) = &node.value else {
        return Err(wrong_type("an integer", node));
    };
    let out_of_range = || format!("must be from {min} to {max}, found {}", number_text(n));
    match n.as_u64() {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        Some(_) => Err(out_of_range()),
        // Negative, or a whole number too large to be exact.
        None if n.as_f64().fract() == 0.0 => Err(out_of_range()),
        None => Err(format!("expected an integer, found {}", number_text(n))),
    }
}

/// A whole number from `min` to `max`, negative ones included.
pub(super) fn get_int(node: &Node, min: i64, max: i64) -> Result<i64, String> {
    let Value::Number(n) = &node.value else {
        return Err(wrong_type("an integer", node));
    };
    let value = match *n {
        Number::Unsigned(v) => i64::try_from(v).ok(),
        Number::Negative(v) => Some(v),
        Number::Float(f) if f.fract() == 0.0 => None,
        Number::Float(_) => return Err(format!("expected an integer, found {}", number_text(n))),
    };
    match value {
        Some(v) if (min..=max).contains(&v) => Ok(v),
        _ => Err(format!(
            "must be from {min} to {max}, found {}",
            number_text(n)
        )),
    }
}

/// A size string ("64m") or a whole number of bytes, from `min` to `max`.
pub(super) fn get_size(node: &Node, min: u64, max: u64) -> Result<u64, String> {
    let v = match &node.value {
        Value::String(_) => parse_size(get_str(node)?)?,
        Value::Number(n) => n
            .as_u64()
            .ok_or_else(|| format!("expected a whole number of bytes, found {}", number_text(n)))?,
        _ => return Err(wrong_type("a size like \"64m\" or a number of bytes", node)),
    };
    if v < min {
        return Err(format!("must be at least {min} bytes, found {v}"));
    }
    if v > max {
        return Err(format!("must be at most {max} bytes, found {v}"));
    }
    Ok(v)
}

/// An array of at most `max` entries.
pub(super) fn get_array(node: &Node, max: usize) -> Result<&[Node], String> {
    match &node.value {
        Value::Array(items) if items.len() > max => Err(format!("has more than {max} entries")),
        Value::Array(items) => Ok(items),
        _ => Err(wrong_type("an array", node)),
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::types::{GIB, KIB, MIB};

    #[test]
    fn names() {
        for good in ["app", "a", "A.b-c_9", "x..y", &"n".repeat(64)] {
            assert_eq!(validate_name(good), Ok(()), "{good}");
        }
        let bad = |n: &str| validate_name(n).unwrap_err();
        assert_eq!(
            bad("../x"),
            "name \"../x\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            bad("a/b"),
            "name \"a/b\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(bad(".hidden"), "name \".hidden\" must not start with '.'");
        assert_eq!(bad(".."), "name \"..\" must not start with '.'");
        assert_eq!(bad(""), "name must not be empty");
        assert_eq!(
            bad(&"n".repeat(65)),
            format!("name \"{}...\" is longer than 64 bytes", "n".repeat(64))
        );
        assert_eq!(
            bad("a\nb"),
            "name \"a\\nb\" may only contain A-Z a-z 0-9 _ . -"
        );
        assert_eq!(
            bad("caf\u{e9}"),
            "name \"caf\u{e9}\" may only contain A-Z a-z 0-9 _ . -"
        );
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512b", 512),
            ("512B", 512),
            ("64k", 64 * KIB),
            ("64K", 64 * KIB),
            ("64kb", 64 * KIB),
            ("64KB", 64 * KIB),
            ("64m", 64 * MIB),
            ("64Mb", 64 * MIB),
            ("1g", GIB),
            ("1GB", GIB),
            ("2t", 2048 * GIB),
            ("17179869183g", 17_179_869_183 * GIB),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
        for text in [
            "", "k", "1.5g", "-1", " 1", "1 k", "1x", "1kib", "1gg", "0x10",
        ] {
            assert_eq!(
                parse_size(text),
                Err(format!(
                    "invalid size {}: expected digits and an optional k, m or g suffix",
                    quoted(text)
                )),
                "{text}"
            );
        }
        assert_eq!(
            parse_size("17179869184g"),
            Err("size \"17179869184g\" is too large".to_string())
        );
        assert_eq!(
            parse_size("18446744073709551616"),
            Err("size \"18446744073709551616\" is too large".to_string())
        );
        assert_eq!(parse_size("18446744073709551615"), Ok(u64::MAX));
    }
}
