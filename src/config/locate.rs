//! The HOCON parser gives positions for syntax errors only. For a well-formed file whose value
//! is wrong, find the line that sets the key so the message can still point at it.

use std::path::Path;

/// `FILE:LINE:COL: ` for the line that sets `key`, or `FILE: ` when it cannot be found.
pub(super) fn describe(path: &Path, text: &str, key: &str) -> String {
    match key_position(text, key) {
        Some((line, col)) => format!("{}:{line}:{col}: ", path.display()),
        None => format!("{}: ", path.display()),
    }
}

pub(super) fn key_line(text: &str, key: &str) -> Option<usize> {
    key_position(text, key).map(|(line, _)| line)
}

/// The last line that assigns the key by its longest written suffix: whole (`a.b.c = `) if
/// such a line exists, else `b.c = ` (inside `a { ... }`, as in a `gearpump-worker { }`
/// overlay), else `c = ` (inside `a.b { ... }`). Later assignments win in HOCON.
fn key_position(text: &str, key: &str) -> Option<(usize, usize)> {
    let suffixes: Vec<&str> =
        std::iter::once(key).chain(key.match_indices('.').map(|(at, _)| &key[at + 1..])).collect();
    // (suffix index, line, column); a lower index is a longer, better match.
    let mut best: Option<(usize, usize, usize)> = None;
    for (index, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or("");
        let code = code.split('#').next().unwrap_or("");
        let trimmed = code.trim_start();
        let col = code.len() - trimmed.len() + 1;
        let Some(rank) = suffixes.iter().position(|suffix| assigns(trimmed, suffix)) else { continue };
        if best.is_none_or(|(best_rank, _, _)| rank <= best_rank) {
            best = Some((rank, index + 1, col));
        }
    }
    best.map(|(_, line, col)| (line, col))
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
