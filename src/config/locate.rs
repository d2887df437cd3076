//! The HOCON parser gives positions for syntax errors only. For a well-formed file whose value
//! is wrong, find the line that sets the key so the message can still point at it.

use std::path::Path;

/// `FILE:LINE:COL: ` for the line that sets `key`, or `FILE: ` when it cannot be found.
pub fn describe(path: &Path, text: &str, key: &str) -> String {
    match key_position(text, key) {
        Some((line, col)) => format!("{}:{line}:{col}: ", path.display()),
        None => format!("{}: ", path.display()),
    }
}

pub fn key_line(text: &str, key: &str) -> Option<usize> {
    key_position(text, key).map(|(line, _)| line)
}

/// The last line that assigns the key: written out whole (`a.b.c = `) if such a line exists,
/// otherwise by its last segment (`c = ` inside `a.b { ... }`). Later assignments win in HOCON.
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let last_segment = key.rsplit('.').next().unwrap_or(key);
    let mut best_full = None;
    let mut best_segment = None;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let code = code.split('#').next().unwrap_or("");
        let trimmed = code.trim_start();
        let col = code.len() - trimmed.len() + 1;
        if assigns(trimmed, key) {
            best_full = Some((index + 1, col));
        } else if assigns(trimmed, last_segment) {
            best_segment = Some((index + 1, col));
        }
    }
    best_full.or(best_segment)
}

fn assigns(code: &str, key: &str) -> bool {
    let rest = code.strip_prefix(key).or_else(|| code.strip_prefix(&format!("\"{key}\"")));
    rest.is_some_and(|rest| {
        let rest = rest.trim_start();
        rest.starts_with('=')
            || rest.starts_with(':')
            || rest.starts_with('{')
            || rest.starts_with('[')
            || rest.starts_with("+=")
    })
}
