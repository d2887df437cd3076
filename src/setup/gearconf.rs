//! Rewrites the few gear.conf keys the installer owns, in place, leaving every other byte of the
//! file as the operator left it (comments, other keys, their order and spelling).
//!
//! A full HOCON parser would lose comments and layout on the way back to text, so this is a
//! scanner that only finds where each `key = value` sits (nested objects, dotted paths, quoted
//! keys, multi-line arrays, comments) and splices new values into those spans.

use std::collections::BTreeMap;

use crate::config::keys::{self, Key};

/// One `key = value` found in the text: its full dotted path and the byte span of the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    pub path: String,
    pub value_start: usize,
    pub value_end: usize,
}

/// A key the installer sets: its entry of the key table (whose other spellings are rewritten
/// in place too) and the new value.
#[derive(Debug, Clone)]
pub(crate) struct OwnedKey {
    pub(crate) key: &'static Key,
    /// The value as HOCON text, e.g. `"node1"` or `["a:1", "b:1"]`.
    pub(crate) value: String,
}

impl OwnedKey {
    pub(crate) fn new(key: &'static Key, value: String) -> OwnedKey {
        OwnedKey { key, value }
    }
}

pub(crate) const HOSTNAME: &Key = &keys::HOSTNAME;
pub(crate) const MASTERS: &Key = &keys::MASTERS;
pub(crate) const JAR_ROOT: &Key = &keys::JAR_ROOT;
pub(crate) const FAILOVER: &Key = &keys::FAILOVER;
pub(crate) const SECRET_FILE: &Key = &keys::SECRET_FILE;
pub(crate) const TLS_CA_FILE: &Key = &keys::TLS_CA_FILE;
pub(crate) const TLS_CERT_FILE: &Key = &keys::TLS_CERT_FILE;
pub(crate) const TLS_KEY_FILE: &Key = &keys::TLS_KEY_FILE;
pub(crate) const TOKENS_FILE: &Key = &keys::TOKENS_FILE;
pub(crate) const WORKER_TLS_CA_FILE: &Key = &keys::WORKER_TLS_CA_FILE;
pub(crate) const WORKER_TLS_CERT_FILE: &Key = &keys::WORKER_TLS_CERT_FILE;
pub(crate) const WORKER_TLS_KEY_FILE: &Key = &keys::WORKER_TLS_KEY_FILE;

/// Renders a string as a HOCON quoted string (JSON string syntax is valid HOCON).
pub fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

pub fn quoted_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| quoted(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Finds every assignment in `text`. Anything the scanner does not understand is skipped up to
/// the end of its line, so an exotic construct elsewhere in the file never stops a rewrite.
pub fn scan(text: &str) -> Vec<Assignment> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    // Path segments contributed by each open object (empty for an anonymous root brace).
    let mut stack: Vec<Vec<String>> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() || c == b',' {
            i += 1;
            continue;
        }
        if c == b'#' || (c == b'/' && bytes.get(i + 1) == Some(&b'/')) {
            i = end_of_line(bytes, i);
            continue;
        }
        if c == b'}' {
            stack.pop();
            i += 1;
            continue;
        }
        if c == b'{' {
            stack.push(Vec::new());
            i += 1;
            continue;
        }
        if text[i..].starts_with("include") && bytes.get(i + 7).is_some_and(|b| b.is_ascii_whitespace()) {
            i = end_of_line(bytes, i);
            continue;
        }
        let Some((segments, after_key)) = parse_key(bytes, i) else {
            i = end_of_line(bytes, i);
            continue;
        };
        let mut j = skip_blanks(bytes, after_key);
        match bytes.get(j) {
            Some(b'{') => {
                stack.push(segments);
                i = j + 1;
            }
            Some(b'=') | Some(b':') | Some(b'+') => {
                if bytes[j] == b'+' {
                    if bytes.get(j + 1) != Some(&b'=') {
                        i = end_of_line(bytes, j);
                        continue;
                    }
                    j += 1;
                }
                j = skip_blanks(bytes, j + 1);
                if bytes.get(j) == Some(&b'{') {
                    stack.push(segments);
                    i = j + 1;
                    continue;
                }
                let end = value_end(bytes, j);
                let mut path: Vec<String> = stack.iter().flatten().cloned().collect();
                path.extend(segments);
                found.push(Assignment { path: path.join("."), value_start: j, value_end: end });
                i = end.max(j + 1);
            }
            _ => i = end_of_line(bytes, j),
        }
    }
    found
}

fn end_of_line(bytes: &[u8], from: usize) -> usize {
    bytes[from..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| from + p)
}

fn skip_blanks(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
        i += 1;
    }
    i
}

/// A key: unquoted and quoted segments joined by dots (`a."b.c".d`).
fn parse_key(bytes: &[u8], mut i: usize) -> Option<(Vec<String>, usize)> {
    let mut segments = Vec::new();
    loop {
        if bytes.get(i) == Some(&b'"') {
            let end = string_end(bytes, i)?;
            let raw = std::str::from_utf8(&bytes[i..end]).ok()?;
            segments.push(serde_json::from_str::<String>(raw).ok()?);
            i = end;
        } else {
            let start = i;
            while i < bytes.len() && is_unquoted_key_byte(bytes[i]) {
                i += 1;
            }
            if i == start {
                return None;
            }
            segments.push(String::from_utf8_lossy(&bytes[start..i]).into_owned());
        }
        if bytes.get(i) == Some(&b'.') {
            i += 1;
        } else {
            return Some((segments, i));
        }
    }
}

fn is_unquoted_key_byte(b: u8) -> bool {
    !(b.is_ascii_whitespace()
        || matches!(b, b'.' | b'=' | b':' | b'{' | b'}' | b'[' | b']' | b',' | b'+' | b'#' | b'"' | b'$'))
}

/// End (exclusive) of the quoted string starting at `start` (`"..."` or `"""..."""`).
fn string_end(bytes: &[u8], start: usize) -> Option<usize> {
    if bytes[start..].starts_with(b"\"\"\"") {
        let rest = &bytes[start + 3..];
        let close = rest.windows(3).position(|w| w == b"\"\"\"")?;
        let mut end = start + 3 + close + 3;
        // HOCON: extra quotes before the closing triple belong to the string.
        while bytes.get(end) == Some(&b'"') {
            end += 1;
        }
        return Some(end);
    }
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            b'\n' => return None,
            _ => i += 1,
        }
    }
    None
}

/// End (exclusive, trailing blanks trimmed) of the value starting at `start`: it runs to the end
/// of the line, a comma, a closing brace or a comment outside of brackets and strings.
fn value_end(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    let mut end = start;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'"' {
            match string_end(bytes, i) {
                Some(e) => {
                    i = e;
                    end = i;
                    continue;
                }
                None => {
                    i = end_of_line(bytes, i);
                    end = i;
                    break;
                }
            }
        }
        let comment = c == b'#' || (c == b'/' && bytes.get(i + 1) == Some(&b'/'));
        if comment {
            if depth == 0 {
                break;
            }
            i = end_of_line(bytes, i);
            continue;
        }
        match c {
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth > 0 => depth -= 1,
            b'}' => break,
            b'\n' | b',' if depth == 0 => break,
            _ => {}
        }
        i += 1;
        if !c.is_ascii_whitespace() {
            end = i;
        }
    }
    end
}

/// The result of a rewrite: the new text and, per key, what happened to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub text: String,
    /// key -> (old value text if it was set, new value text), only for keys that changed.
    pub changes: BTreeMap<String, (Option<String>, String)>,
}

/// Sets every owned key to its value: each existing definition (under any alias) is replaced in
/// place, and keys the file does not define yet are appended in a marked block at the end
/// (HOCON: a later definition wins, and a dotted key at the top level sets the nested one).
pub(crate) fn rewrite(text: &str, keys: &[OwnedKey]) -> Rewrite {
    let assignments = scan(text);
    let mut splices: Vec<(usize, usize, String)> = Vec::new();
    let mut changes = BTreeMap::new();
    let mut missing = Vec::new();
    for key in keys {
        let name = key.key.name;
        let matches: Vec<&Assignment> = assignments
            .iter()
            .filter(|a| key.key.all_spellings().any(|spelling| spelling == a.path))
            .collect();
        if matches.is_empty() {
            missing.push(key);
            changes.insert(name.to_string(), (None, key.value.clone()));
            continue;
        }
        for a in matches {
            let old = &text[a.value_start..a.value_end];
            if old != key.value {
                splices.push((a.value_start, a.value_end, key.value.clone()));
                changes.insert(name.to_string(), (Some(old.to_string()), key.value.clone()));
            }
        }
    }
    splices.sort_by_key(|s| std::cmp::Reverse(s.0));
    let mut out = text.to_string();
    for (start, end, value) in splices {
        out.replace_range(start..end, &value);
    }
    if !missing.is_empty() {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str("\n# Set by gearpump-setup; it rewrites only these values on a re-run.\n");
        for key in missing {
            out.push_str(&format!("{} = {}\n", key.key.name, key.value));
        }
    }
    Rewrite { text: out, changes }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(key: &'static Key, value: &str) -> OwnedKey {
        OwnedKey::new(key, value.to_string())
    }

    #[test]
    fn scans_nested_dotted_quoted_and_multiline_values() {
        let text = r#"
# comment with gearpump.hostname = "x"
gearpump {
  hostname = "127.0.0.1"   # trailing comment
  cluster {
    masters = [
      "a:3000",  # first
      "b:3000"
    ]
  }
  "jarstore".rootpath: "file:///x" // note
}
gearpump.master.failover-timeout = 2s
gearpump { master { secret-file = ${?SECRET} } }
"#;
        let found: Vec<(String, String)> = scan(text)
            .iter()
            .map(|a| (a.path.clone(), text[a.value_start..a.value_end].to_string()))
            .collect();
        assert_eq!(
            found,
            vec![
                ("gearpump.hostname".into(), "\"127.0.0.1\"".into()),
                (
                    "gearpump.cluster.masters".into(),
                    "[\n      \"a:3000\",  # first\n      \"b:3000\"\n    ]".into()
                ),
                ("gearpump.jarstore.rootpath".into(), "\"file:///x\"".into()),
                ("gearpump.master.failover-timeout".into(), "2s".into()),
                ("gearpump.master.secret-file".into(), "${?SECRET}".into()),
            ]
        );
    }

    #[test]
    fn rewrites_only_owned_keys_and_keeps_everything_else() {
        let text = "# my notes\ngearpump {\n  hostname = \"127.0.0.1\"\n  cluster { masters = [\"127.0.0.1:3000\"] }\n  application.total-retries = 9 # mine\n}\n";
        let keys = vec![
            key(HOSTNAME, "\"node1\""),
            key(MASTERS, "[\"node1:3000\", \"node2:3000\", \"node3:3000\"]"),
            key(SECRET_FILE, "\"/etc/gearpump/cluster.secret\""),
        ];
        let result = rewrite(text, &keys);
        assert_eq!(
            result.text,
            "# my notes\ngearpump {\n  hostname = \"node1\"\n  cluster { masters = [\"node1:3000\", \"node2:3000\", \"node3:3000\"] }\n  application.total-retries = 9 # mine\n}\n\n# Set by gearpump-setup; it rewrites only these values on a re-run.\ngearpump.master.secret-file = \"/etc/gearpump/cluster.secret\"\n"
        );
        assert_eq!(result.changes.len(), 3);
        // A second pass finds every key where the first one put it: nothing changes.
        let again = rewrite(&result.text, &keys);
        assert_eq!(again.text, result.text);
        assert!(again.changes.is_empty());
    }

    #[test]
    fn aliases_are_rewritten_too() {
        let text = "gearpump.jarstore.rootPath = \"old\"\n";
        let keys = vec![key(JAR_ROOT, "\"new\"")];
        assert_eq!(rewrite(text, &keys).text, "gearpump.jarstore.rootPath = \"new\"\n");
    }

    #[test]
    fn shipped_gear_conf_rewritten_still_loads() {
        let shipped = include_str!("../../conf/gear.conf");
        let keys = vec![
            key(HOSTNAME, &quoted("node2")),
            key(MASTERS, &quoted_list(&["node1:3000".into(), "node2:3000".into(), "node3:3000".into()])),
            key(JAR_ROOT, &quoted("file:///mnt/gearpump-jars")),
            key(FAILOVER, "2s"),
            key(SECRET_FILE, &quoted("/etc/gearpump/cluster.secret")),
        ];
        let result = rewrite(shipped, &keys);
        let config = crate::config::load_str(
            std::path::Path::new("/etc/gearpump/gear.conf"),
            &result.text,
            &Default::default(),
        )
        .expect("the rewritten file loads");
        assert_eq!(config.this_master.to_string(), "node2:3000");
        assert_eq!(config.masters.len(), 3);
        assert_eq!(config.failover_timeout, std::time::Duration::from_secs(2));
        assert_eq!(config.secret_file.as_deref(), Some(std::path::Path::new("/etc/gearpump/cluster.secret")));
        // every line of the shipped file that holds no owned key is still there
        let kept = shipped.lines().filter(|l| {
            !["hostname =", "masters =", "rootpath =", "failover-timeout ="]
                .iter()
                .any(|k| l.trim_start().starts_with(k))
        });
        for line in kept {
            assert!(result.text.contains(line), "lost line {line:?}");
        }
    }
}
