//! A small, strict JSON reader for untrusted files, and its canonical writer.
//!
//! Every value keeps the line and column (1-based, counted in characters) it
//! starts at, so a config error can point at it. Objects keep their key order
//! and reject duplicate keys; nesting is capped at `MAX_DEPTH` so hostile
//! input cannot exhaust the stack. The lexer is written here rather than
//! borrowed from nanoserde because nanoserde's accepts comments, `+1`,
//! leading zeros, unknown escapes, raw control characters, and reads a NUL
//! byte as the end of the input. `to_canonical` writes the compact form with
//! sorted keys that definitions are hashed over.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// Deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 32;

/// Integers up to this magnitude are exact as `f64`.
const EXACT_F64_INT: f64 = 9_007_199_254_740_992.0;

/// A JSON number: integers stay exact, anything else is an `f64`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    /// A non-negative integer literal that fits in a `u64`.
    Unsigned(u64),
    /// A negative integer literal that fits in an `i64` (never 0).
    Negative(i64),
    /// A fraction, an exponent, or an integer too large for the above.
    Float(f64),
}

impl Number {
    /// The value as a `u64` when it is a non-negative integer (an integral
    /// float counts when it is exact).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Number::Unsigned(v) => Some(v),
            Number::Negative(_) => None,
            Number::Float(f) if f.fract() == 0.0 && (0.0..=EXACT_F64_INT).contains(&f) => {
                Some(f as u64)
            }
            Number::Float(_) => None,
        }
    }

    /// The value as an `f64` (large integers lose precision).
    pub fn as_f64(&self) -> f64 {
        match *self {
            Number::Unsigned(v) => v as f64,
            Number::Negative(v) => v as f64,
            Number::Float(f) => f,
        }
    }
}

/// A JSON value; the children of arrays and objects carry positions.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Number(Number),
    String(String),
    Array(Vec<Node>),
    /// Members in file order; keys are unique.
    Object(Vec<(String, Node)>),
}

impl Value {
    /// "a string", "an object", ...: for "expected X, found Y" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Number(_) => "a number",
            Value::String(_) => "a string",
            Value::Array(_) => "an array",
            Value::Object(_) => "an object",
        }
    }
}

/// A value and where it starts in the text (1-based line and column).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub line: usize,
    pub col: usize,
}

impl Node {
    /// The value of member `key` when this is an object that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, n)| n),
            _ => None,
        }
    }
}

/// Why and where the text is not acceptable JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub col: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}: {}", self.line, self.col, self.reason)
    }
}

impl std::error::Error for ParseError {}

/// Parses one JSON value that makes up the whole of `text` (white space
/// around it allowed, and a leading byte order mark).
pub fn parse(text: &str) -> Result<Node, ParseError> {
    let mut p = Parser::over(text);
    let node = p.value(0)?;
    p.end()?;
    Ok(node)
}

/// Whether `text` is one JSON value that [`parse`] accepts (with the
/// same error when not), without building its tree.
pub fn check(text: &str) -> Result<(), ParseError> {
    let mut p = Parser::over(text);
    p.skip_value(0)?;
    p.end()?;
    Ok(())
}

/// Objects with more keys than this check them for duplicates in a hash
/// set; smaller ones (nearly all) compare them in turn.
const FEW_KEYS: usize = 16;

/// Compact JSON of `node`: object keys sorted by their bytes, no white space,
/// integral numbers without a fraction. Parsing the result and writing it
/// again gives the same text.
pub fn to_canonical(node: &Node) -> String {
    let mut out = String::new();
    write_canonical(&mut out, &node.value);
    out
}

/// Appends `s` as a JSON string literal, quotes included.
pub fn escape_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn write_canonical(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => write_number(out, *n),
        Value::String(s) => escape_into(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(out, &item.value);
            }
            out.push(']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<&(String, Node)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (key, node)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                escape_into(out, key);
                out.push(':');
                write_canonical(out, &node.value);
            }
            out.push('}');
        }
    }
}

fn write_number(out: &mut String, n: Number) {
    let _ = match n {
        Number::Unsigned(v) => write!(out, "{v}"),
        Number::Negative(v) => write!(out, "{v}"),
        // An exact integer reads back as one, so 2.0 and 2 agree.
        Number::Float(f) if f.fract() == 0.0 && f.abs() < EXACT_F64_INT => {
            write!(out, "{}", f as i64)
        }
        // Debug is the shortest text that reads back as the same f64, and
        // it is valid JSON for finite values ("0.5", "1e-7", "1e300").
        Number::Float(f) if f.is_finite() => write!(out, "{f:?}"),
        // Not produced by `parse`; JSON has no spelling for it.
        Number::Float(_) => write!(out, "null"),
    };
}

struct Parser<'a> {
    src: &'a str,
    bytes: &'a [u8],
    pos: usize,
    line: usize,
    col: usize,
}

impl<'a> Parser<'a> {
    /// A parser at the start of `text`, past a leading byte order mark.
    fn over(text: &'a str) -> Parser<'a> {
        let mut p = Parser {
            src: text,
            bytes: text.as_bytes(),
            pos: 0,
            line: 1,
            col: 1,
        };
        if text.starts_with('\u{feff}') {
            p.pos = '\u{feff}'.len_utf8();
        }
        p
    }

    /// After the value: only white space may follow.
    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err(self.error("trailing characters after the value"));
        }
        Ok(())
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    /// Moves past one byte; columns count characters, not bytes.
    fn bump(&mut self) {
        if let Some(b) = self.peek() {
            self.pos += 1;
            if b == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if b & 0xc0 != 0x80 {
                self.col += 1;
            }
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.bump();
        }
    }

    fn error(&self, reason: impl Into<String>) -> ParseError {
        self.error_at(self.line, self.col, reason)
    }

    fn error_at(&self, line: usize, col: usize, reason: impl Into<String>) -> ParseError {
        ParseError {
            line,
            col,
            reason: reason.into(),
        }
    }

    /// What is at the current position, for "found ..." messages.
    fn found(&self) -> String {
        match self.src[self.pos..].chars().next() {
            None => "end of input".to_string(),
            Some(c) if c.is_control() => format!("control character U+{:04X}", c as u32),
            Some(c) => format!("'{c}'"),
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, ParseError> {
        self.skip_ws();
        let (line, col) = (self.line, self.col);
        let value = match self.peek() {
            Some(b'{') => self.object(depth + 1)?,
            Some(b'[') => self.array(depth + 1)?,
            Some(b'"') => Value::String(self.string()?.into_owned()),
            Some(b'-' | b'0'..=b'9') => Value::Number(self.number()?),
            Some(b) if b.is_ascii_alphabetic() => self.literal()?,
            _ => return Err(self.error(format!("expected a value, found {}", self.found()))),
        };
        Ok(Node { value, line, col })
    }

    fn enter(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.error(format!("nesting deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.enter(depth)?;
        self.bump();
        let mut members: Vec<(String, Node)> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error(format!("expected a key string, found {}", self.found())));
            }
            let (line, col) = (self.line, self.col);
            let key = self.string()?.into_owned();
            if !seen.insert(key.clone()) {
                let mut quoted = String::new();
                escape_into(&mut quoted, &key);
                return Err(self.error_at(line, col, format!("duplicate key {quoted}")));
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after the key"));
            }
            self.bump();
            let node = self.value(depth)?;
            members.push((key, node));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(Value::Object(members));
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<Value, ParseError> {
        self.enter(depth)?;
        self.bump();
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(Value::Array(items));
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// `true`, `false`, `null`; any other bare word is an error.
    fn literal(&mut self) -> Result<Value, ParseError> {
        let (line, col) = (self.line, self.col);
        let start = self.pos;
        while let Some(b) = self.peek() {
            if !(b.is_ascii_alphanumeric() || b == b'_') {
                break;
            }
            self.bump();
        }
        match &self.src[start..self.pos] {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            "null" => Ok(Value::Null),
            word => {
                let shown: String = word.chars().take(32).collect();
                Err(self.error_at(
                    line,
                    col,
                    format!("expected a value, found '{shown}' (strings need double quotes)"),
                ))
            }
        }
    }

    fn digits(&mut self) -> usize {
        let mut n = 0;
        while let Some(b'0'..=b'9') = self.peek() {
            self.bump();
            n += 1;
        }
        n
    }

    fn number(&mut self) -> Result<Number, ParseError> {
        let (line, col) = (self.line, self.col);
        let start = self.pos;
        let invalid = |p: &Self| p.error_at(line, col, "invalid number");
        if self.peek() == Some(b'-') {
            self.bump();
        }
        match self.peek() {
            Some(b'0') => self.bump(),
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(invalid(self)),
        }
        let mut integer = true;
        if self.peek() == Some(b'.') {
            integer = false;
            self.bump();
            if self.digits() == 0 {
                return Err(invalid(self));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            integer = false;
            self.bump();
            if let Some(b'+' | b'-') = self.peek() {
                self.bump();
            }
            if self.digits() == 0 {
                return Err(invalid(self));
            }
        }
        if let Some(b) = self.peek()
            && (b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
        {
            return Err(invalid(self));
        }
        let text = &self.src[start..self.pos];
        if integer {
            if let Some(digits) = text.strip_prefix('-') {
                if digits == "0" {
                    return Ok(Number::Unsigned(0));
                }
                if let Ok(v) = text.parse::<i64>() {
                    return Ok(Number::Negative(v));
                }
            } else if let Ok(v) = text.parse::<u64>() {
                return Ok(Number::Unsigned(v));
            }
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Number::Float(f)),
            _ => Err(self.error_at(line, col, "number out of range")),
        }
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let mut v = 0;
        for _ in 0..4 {
            let d = match self.peek() {
                Some(b) if b.is_ascii_hexdigit() => (b as char).to_digit(16).unwrap_or(0),
                _ => return Err(self.error("invalid \\u escape: expected 4 hex digits")),
            };
            self.bump();
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// After `\u`: one escape, or two making a surrogate pair.
    fn unicode_escape(&mut self, line: usize, col: usize) -> Result<char, ParseError> {
        let unpaired = |p: &Self| p.error_at(line, col, "unpaired surrogate in \\u escape");
        let first = self.hex4()?;
        let code = match first {
            0xd800..=0xdbff => {
                if self.peek() != Some(b'\\') {
                    return Err(unpaired(self));
                }
                self.bump();
                if self.peek() != Some(b'u') {
                    return Err(unpaired(self));
                }
                self.bump();
                let second = self.hex4()?;
                if !(0xdc00..=0xdfff).contains(&second) {
                    return Err(unpaired(self));
                }
                0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00)
            }
            0xdc00..=0xdfff => return Err(unpaired(self)),
            c => c,
        };
        char::from_u32(code).ok_or_else(|| unpaired(self))
    }

    /// As [`Parser::value`], checking the text without building the
    /// tree: the same grammar, depth cap and duplicate keys refused, with
    /// the same errors. Object keys are borrowed from the text when they
    /// have no escapes.
    fn skip_value(&mut self, depth: usize) -> Result<(), ParseError> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.skip_object(depth + 1),
            Some(b'[') => self.skip_array(depth + 1),
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b) if b.is_ascii_alphabetic() => self.literal().map(drop),
            _ => Err(self.error(format!("expected a value, found {}", self.found()))),
        }
    }

    fn skip_object(&mut self, depth: usize) -> Result<(), ParseError> {
        self.enter(depth)?;
        self.bump();
        // Few keys: compared in turn; many: hashed.
        let mut seen: Vec<Cow<'a, str>> = Vec::new();
        let mut many: HashSet<Cow<'a, str>> = HashSet::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.bump();
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error(format!("expected a key string, found {}", self.found())));
            }
            let (line, col) = (self.line, self.col);
            let key = self.string()?;
            if seen.len() == FEW_KEYS {
                many.extend(seen.drain(..));
            }
            let again = if many.is_empty() {
                seen.contains(&key)
            } else {
                many.contains(&key)
            };
            if again {
                let mut quoted = String::new();
                escape_into(&mut quoted, &key);
                return Err(self.error_at(line, col, format!("duplicate key {quoted}")));
            }
            if many.is_empty() {
                seen.push(key);
            } else {
                many.insert(key);
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error("expected ':' after the key"));
            }
            self.bump();
            self.skip_value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b'}') => {
                    self.bump();
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or '}'")),
            }
        }
    }

    fn skip_array(&mut self, depth: usize) -> Result<(), ParseError> {
        self.enter(depth)?;
        self.bump();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.bump();
            return Ok(());
        }
        loop {
            self.skip_value(depth)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.bump(),
                Some(b']') => {
                    self.bump();
                    return Ok(());
                }
                _ => return Err(self.error("expected ',' or ']'")),
            }
        }
    }

    /// A string's value: borrowed from the text when it has no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump();
        let mut out = String::new();
        let start = self.pos;
        let mut run = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.error_at(line, col, "unterminated string")),
                Some(b'"') => {
                    let end = self.pos;
                    self.bump();
                    if !escaped {
                        return Ok(Cow::Borrowed(&self.src[start..end]));
                    }
                    out.push_str(&self.src[run..end]);
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    escaped = true;
                    out.push_str(&self.src[run..self.pos]);
                    let (eline, ecol) = (self.line, self.col);
                    self.bump();
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.bump();
                            let c = self.unicode_escape(eline, ecol)?;
                            out.push(c);
                            run = self.pos;
                            continue;
                        }
                        None => return Err(self.error_at(line, col, "unterminated string")),
                        Some(_) => {
                            return Err(self.error_at(
                                eline,
                                ecol,
                                format!("invalid escape: \\ followed by {}", self.found()),
                            ));
                        }
                    };
                    self.bump();
                    out.push(c);
                    run = self.pos;
                }
                Some(b) if b < 0x20 => {
                    return Err(self.error(format!("{} in a string must be escaped", self.found())));
                }
                Some(_) => self.bump(),
            }
        }
    }
}

/// Deserialises a typed value with nanoserde, after the strict parser
/// here has accepted the text: nanoserde's own reader panics on some
/// truncated input (a torn record, a hostile request) and never returns on
/// other, which must be an error instead (the tests below pin both).
pub fn decode<T: nanoserde::DeJson>(text: &str) -> Result<T, String> {
    check(text).map_err(|e| e.to_string())?;
    T::deserialize_json(text).map_err(|e| format!("{e}"))
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    use nanoserde::DeJson;

    use super::*;

    fn err(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    fn canon(text: &str) -> String {
        to_canonical(&parse(text).unwrap())
    }

    /// `check` accepts what `parse` accepts and refuses the rest with the
    /// same error, without building the tree.
    #[test]
    fn check_agrees_with_parse() {
        let many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        let many_ok = format!("{{{}}}", many.join(","));
        let many_dup = format!("{{{},\"k39\":0}}", many.join(","));
        let many_dup_escaped = format!("{{{},\"k\\u00339\":0}}", many.join(","));
        let deep_ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        let too_deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let cases: Vec<&str> = vec![
            "null",
            " {\"a\":[1,-2,3.5e2,true,false,null,\"x\\n\\u00e9\\ud83d\\ude00\"],\"b\":{}} ",
            "\u{feff}{\"a\":1}",
            "{\"a\":1,\"a\":2}",
            "{\"a\":1,\"\\u0061\":2}",
            "{\"a\":{\"b\":1,\"b\":1}}",
            &many_ok,
            &many_dup,
            &many_dup_escaped,
            &deep_ok,
            &too_deep,
            "{\"a\":01}",
            "{\"a\":1,}",
            "[1,]",
            "{a:1}",
            "{\"a\" 1}",
            "{\"a\":1} x",
            "\"unterminated",
            "\"bad \\x escape\"",
            "\"\\ud800\"",
            "\"tab\there\"",
            "nul",
            "1e999",
            "",
            "{\"version\":3,\"name\":\"c00\",\"run-id\":\"",
        ];
        for text in cases {
            assert_eq!(check(text), parse(text).map(drop), "{text:?}");
        }
    }

    #[test]
    fn scalars() {
        assert_eq!(parse("null").unwrap().value, Value::Null);
        assert_eq!(parse(" true ").unwrap().value, Value::Bool(true));
        assert_eq!(parse("false").unwrap().value, Value::Bool(false));
        assert_eq!(
            parse("\"a\\n\\u00e9\\ud83d\\ude00\"").unwrap().value,
            Value::String("a\n\u{e9}\u{1f600}".into())
        );
        assert_eq!(
            parse("\u{feff}1").unwrap().value,
            Value::Number(Number::Unsigned(1))
        );
    }

    #[test]
    fn numbers() {
        let n = |t: &str| match parse(t).unwrap().value {
            Value::Number(n) => n,
            v => panic!("{v:?}"),
        };
        assert_eq!(n("0"), Number::Unsigned(0));
        assert_eq!(n("-0"), Number::Unsigned(0));
        assert_eq!(
            n("9007199254740993"),
            Number::Unsigned(9_007_199_254_740_993)
        );
        assert_eq!(n("18446744073709551615"), Number::Unsigned(u64::MAX));
        assert_eq!(
            n("18446744073709551616"),
            Number::Float(18446744073709551616.0)
        );
        assert_eq!(n("-12"), Number::Negative(-12));
        assert_eq!(n("0.5"), Number::Float(0.5));
        assert_eq!(n("1e3"), Number::Float(1000.0));
        assert_eq!(n("1E-2"), Number::Float(0.01));
        assert_eq!(n("1e3").as_u64(), Some(1000));
        assert_eq!(n("0.5").as_u64(), None);
        assert_eq!(n("-1").as_u64(), None);
        for bad in [
            "01", "1.", "-", "1e", "1e+", "0x10", "1.5.2", "--1", "-a", "1_0",
        ] {
            assert_eq!(err(bad).reason, "invalid number", "{bad}");
        }
        assert_eq!(err("1e999").reason, "number out of range");
        assert_eq!(err(".5").reason, "expected a value, found '.'");
        assert_eq!(err("+1").reason, "expected a value, found '+'");
    }

    #[test]
    fn containers_keep_order_and_positions() {
        let node = parse("{\n  \"b\": [1, {\"x\": null}],\n  \"a\": \"s\"\n}").unwrap();
        assert_eq!((node.line, node.col), (1, 1));
        let Value::Object(members) = &node.value else {
            panic!()
        };
        let keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["b", "a"]);
        let b = node.get("b").unwrap();
        assert_eq!((b.line, b.col), (2, 8));
        let Value::Array(items) = &b.value else {
            panic!()
        };
        assert_eq!((items[1].line, items[1].col), (2, 12));
        assert_eq!(node.get("x"), None);
        let a = node.get("a").unwrap();
        assert_eq!((a.line, a.col), (3, 8));
        // Columns count characters, not bytes.
        let node = parse("[\"\u{e9}\u{e9}\", 7]").unwrap();
        let Value::Array(items) = &node.value else {
            panic!()
        };
        assert_eq!(items[1].col, 8);
    }

    #[test]
    fn syntax_errors_name_the_position() {
        let e = err("{\n  \"a\": 1\n  \"b\": 2\n}");
        assert_eq!(
            (e.line, e.col, e.reason.as_str()),
            (3, 3, "expected ',' or '}'")
        );
        let e = err("[1 2]");
        assert_eq!(
            (e.line, e.col, e.reason.as_str()),
            (1, 4, "expected ',' or ']'")
        );
        let e = err("{\"a\" 1}");
        assert_eq!(
            (e.line, e.col, e.reason.as_str()),
            (1, 6, "expected ':' after the key")
        );
        let e = err("{\"a\": 1} x");
        assert_eq!(
            (e.line, e.col, e.reason.as_str()),
            (1, 10, "trailing characters after the value")
        );
        let e = err("{\"rootfs\": 1, \"rootfs\": 2}");
        assert_eq!(
            (e.line, e.col, e.reason.as_str()),
            (1, 15, "duplicate key \"rootfs\"")
        );
        assert_eq!(err("").reason, "expected a value, found end of input");
        assert_eq!(err("   ").reason, "expected a value, found end of input");
        assert_eq!(
            err("{\"a\": 1,}").reason,
            "expected a key string, found '}'"
        );
        assert_eq!(err("[1,]").reason, "expected a value, found ']'");
        assert_eq!(err("{a: 1}").reason, "expected a key string, found 'a'");
        let e = err("{\"a\": yes}");
        assert_eq!((e.line, e.col), (1, 7));
        assert_eq!(
            e.reason,
            "expected a value, found 'yes' (strings need double quotes)"
        );
        assert_eq!(
            err("True").reason,
            "expected a value, found 'True' (strings need double quotes)"
        );
        assert_eq!(err("// c\n1").reason, "expected a value, found '/'");
        assert_eq!(err("\"abc").reason, "unterminated string");
        assert_eq!(err("\"a\\").reason, "unterminated string");
        assert_eq!(err("\"a\\q\"").reason, "invalid escape: \\ followed by 'q'");
        assert_eq!(
            err("\"a\nb\"").reason,
            "control character U+000A in a string must be escaped"
        );
        assert_eq!(
            err("\"\\u12g4\"").reason,
            "invalid \\u escape: expected 4 hex digits"
        );
        assert_eq!(
            err("\"\\ud800\"").reason,
            "unpaired surrogate in \\u escape"
        );
        assert_eq!(
            err("\"\\ud800\\u0041\"").reason,
            "unpaired surrogate in \\u escape"
        );
        assert_eq!(
            err("\"\\udc00\"").reason,
            "unpaired surrogate in \\u escape"
        );
        assert_eq!(
            err("\0").reason,
            "expected a value, found control character U+0000"
        );
        assert_eq!(err("[1]\0").reason, "trailing characters after the value");
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let e = err(&deep);
        assert_eq!(e.reason, "nesting deeper than 32 levels");
        assert_eq!((e.line, e.col), (1, MAX_DEPTH + 1));
        // Far deeper input fails the same way instead of overflowing.
        let e = err(&"{\"a\":[".repeat(100_000));
        assert_eq!(e.reason, "nesting deeper than 32 levels");
    }

    #[test]
    fn canonical_form() {
        assert_eq!(
            canon(
                " { \"b\" : [ 1 , 2.0, -3, 0.5, 1e-7, 1e300, -0.0 ], \"a\": {\"z\": null, \"y\": true} } "
            ),
            "{\"a\":{\"y\":true,\"z\":null},\"b\":[1,2,-3,0.5,1e-7,1e300,0]}"
        );
        assert_eq!(
            canon("\"q\\\"b\\\\s\\/\\u0001\\t\""),
            "\"q\\\"b\\\\s/\\u0001\\t\""
        );
        assert_eq!(canon("[]"), "[]");
        assert_eq!(canon("{}"), "{}");
        // Writing what was written gives the same text again.
        for text in [
            "{\"k\":[0.1,123456789012345678901234567890,-9223372036854775808,9007199254740993]}",
            "[1.7976931348623157e308,5e-324,9007199254740994.0,\"\\u007f\u{e9}\"]",
        ] {
            let once = canon(text);
            assert_eq!(canon(&once), once, "{text}");
        }
    }

    #[test]
    fn escaping() {
        let mut out = String::new();
        escape_into(&mut out, "a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}\u{e9}");
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\b\\f\\u0000\\u001f\\u007f\u{e9}\""
        );
        let back = parse(&out).unwrap();
        assert_eq!(
            back.value,
            Value::String("a\"b\\c\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}\u{e9}".into())
        );
    }

    /// A record that knows no key "x": nanoserde skips an unknown key's
    /// value by counting brackets, which is where both failures below are.
    #[derive(DeJson)]
    struct Versioned {
        version: u32,
    }

    /// Cut off right after an unknown key: nanoserde 0.2.1 panics
    /// ("not implemented: Eof").
    const TRUNCATED: &str = r#"{"x":"#;

    /// Cut off inside an unknown key's array: nanoserde 0.2.1 reads end of
    /// input again and again, waiting for the ']', and never returns.
    const UNCLOSED: &str = r#"{"version":1,"x":["b""#;

    /// Set in the child process that runs `nanoserde_unclosed_child`.
    const CHILD_ENV: &str = "BERTH_TEST_NANOSERDE_CHILD";

    /// What the child prints just before it calls nanoserde.
    const CHILD_MARKER: &str = "berth-test: calling nanoserde";

    #[test]
    fn nanoserde_panics_on_a_truncated_unknown_key() {
        let outcome = std::panic::catch_unwind(|| Versioned::deserialize_json(TRUNCATED));
        assert!(
            outcome.is_err(),
            "nanoserde no longer panics on {TRUNCATED:?}"
        );
    }

    /// Runs in a child process only (see `nanoserde_never_returns_...`);
    /// in the normal test run it does nothing.
    #[test]
    fn nanoserde_unclosed_child() {
        if std::env::var_os(CHILD_ENV).is_none() {
            return;
        }
        println!("{CHILD_MARKER}");
        let _ = Versioned::deserialize_json(UNCLOSED);
        println!("nanoserde returned");
    }

    /// Kills and reaps the child however the test ends.
    struct Reaped(std::process::Child);

    impl Drop for Reaped {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn nanoserde_never_returns_on_an_unclosed_unknown_array() {
        let exe = std::env::current_exe().unwrap();
        let child = Command::new(exe)
            .args([
                "--exact",
                "json::tests::nanoserde_unclosed_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Reaped(child);
        // Time the call from when the child reaches it, not from its start;
        // the pipe is read without blocking so that nothing here waits
        // without a deadline.
        let mut out = mio::unix::pipe::Receiver::from(child.0.stdout.take().unwrap());
        out.set_nonblocking(true).unwrap();
        let mut seen = Vec::new();
        let started = Instant::now();
        while !String::from_utf8_lossy(&seen).contains(CHILD_MARKER) {
            let mut buf = [0u8; 512];
            match out.read(&mut buf) {
                Ok(0) => panic!("the child ended before calling nanoserde"),
                Ok(n) => seen.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(
                        started.elapsed() < Duration::from_secs(60),
                        "the child never called nanoserde"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("read the child's output: {e}"),
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!("nanoserde returned on {UNCLOSED:?} (child {status})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(child.0.try_wait().unwrap(), None);
    }

    #[test]
    fn decode_rejects_what_nanoserde_mishandles() {
        let start = Instant::now();
        let e = decode::<Versioned>(TRUNCATED).err();
        assert_eq!(
            e.as_deref(),
            Some("line 1 column 6: expected a value, found end of input")
        );
        let e = decode::<Versioned>(UNCLOSED).err();
        assert_eq!(e.as_deref(), Some("line 1 column 22: expected ',' or ']'"));
        assert!(start.elapsed() < Duration::from_secs(1));
        // Whole, the same text is read, the unknown key skipped.
        let whole = decode::<Versioned>(r#"{"version":1,"x":["b"]}"#);
        assert_eq!(whole.map(|v| v.version), Ok(1));
    }
}
