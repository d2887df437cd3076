//! Jar names come from clients: validate them before they touch a path.

use super::JarStoreError;

pub const MAX_NAME_BYTES: usize = 255;

/// Accepts a plain file name: no separators, no `..`, no NUL, at most 255 bytes.
pub fn validate(name: &str) -> Result<(), JarStoreError> {
    let reason = if name.is_empty() {
        Some("the name is empty")
    } else if name.len() > MAX_NAME_BYTES {
        Some("the name is longer than 255 bytes")
    } else if name.contains('/') || name.contains('\\') {
        Some("the name contains a path separator")
    } else if name.contains('\0') {
        Some("the name contains a NUL byte")
    } else if name == "." || name.contains("..") {
        Some("the name contains '..'")
    } else if name.starts_with('.') {
        Some("names starting with '.' are reserved for partial uploads")
    } else if name.chars().any(|c| c.is_control()) {
        Some("the name contains a control character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(JarStoreError::InvalidName { name: name.to_string(), reason }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_plain_names() {
        assert!(validate("wordcount-1.0.jar").is_ok());
        assert!(validate("1700000000000-app.jar").is_ok());
    }

    #[test]
    fn rejects_hostile_names() {
        for bad in ["", "../x.jar", "a/b.jar", "a\\b.jar", "a\0.jar", "..", ".partial", "x..jar"] {
            assert!(validate(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate(&"a".repeat(256)).is_err());
        assert!(validate(&"a".repeat(255)).is_ok());
    }
}
