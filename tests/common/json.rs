//! Writing the JSON that tests feed berth: string quoting, arrays, and
//! merging the members of two objects (later keys win), enough to build
//! daemon.json and container files from a default and a test's extras.
//! Parsing berth's answers is nanoserde's job, not this file's.

/// `s` as a JSON string literal.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `items` as a JSON array of strings.
pub fn string_array(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| string(s)).collect();
    format!("[{}]", quoted.join(", "))
}

/// The members of the JSON object text `object`, as (key, raw value text)
/// in order. Panics on text that is not an object: it is written by tests.
pub fn members(object: &str) -> Vec<(String, String)> {
    let inner = object
        .trim()
        .strip_prefix('{')
        .and_then(|s| s.strip_suffix('}'))
        .unwrap_or_else(|| panic!("not a JSON object: {object}"));
    split_top_level(inner)
        .into_iter()
        .filter(|m| !m.trim().is_empty())
        .map(|member| {
            let (key, value) = split_key(&member)
                .unwrap_or_else(|| panic!("not a JSON member: {member:?} in {object}"));
            (key, value)
        })
        .collect()
}

/// `base` with `extra`'s members added; a key present in both takes
/// `extra`'s value at `base`'s position. Printed one member per line.
pub fn merge(base: &str, extra: &str) -> String {
    let mut merged = members(base);
    for (key, value) in members(extra) {
        match merged.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => merged.push((key, value)),
        }
    }
    let lines: Vec<String> = merged
        .iter()
        .map(|(k, v)| format!("  {}: {}", string(k), v))
        .collect();
    format!("{{\n{}\n}}\n", lines.join(",\n"))
}

/// Splits `text` at the commas that are outside strings, arrays and objects.
fn split_top_level(text: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for c in text.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else {
            match c {
                '"' => in_string = true,
                '[' | '{' => depth += 1,
                ']' | '}' => depth = depth.saturating_sub(1),
                ',' if depth == 0 => {
                    parts.push(String::new());
                    continue;
                }
                _ => {}
            }
        }
        parts.last_mut().expect("never empty").push(c);
    }
    parts
}

/// `"key": value` into the unquoted key and the trimmed raw value.
fn split_key(member: &str) -> Option<(String, String)> {
    let rest = member.trim().strip_prefix('"')?;
    let mut escaped = false;
    let end = rest.char_indices().find(|&(_, c)| {
        let closes = c == '"' && !escaped;
        escaped = c == '\\' && !escaped;
        closes
    })?;
    let key = &rest[..end.0];
    let value = rest[end.0 + 1..].trim_start().strip_prefix(':')?.trim();
    (!value.is_empty() && !key.contains('\\')).then(|| (key.to_string(), value.to_string()))
}
