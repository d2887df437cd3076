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

/// The store key of a new upload: `<upload millis>-<64 random bits, hex>-<file name>`.
///
/// Unique by construction: the time alone is not (two clients, or two masters sharing one store,
/// uploading `app.jar` in the same millisecond got the same key, and the second jar replaced the
/// first one's bytes under its replicated SHA-256). The random part comes from the OS's CSPRNG
/// on every master, so keys of concurrent uploads anywhere in the cluster differ; the stores
/// also refuse to replace a key, so even a collision could only fail an upload, never corrupt
/// one. The leading time stays: the retention sweep dates orphaned uploads by it.
pub fn new_key(file_name: &str, now_ms: u64) -> Result<String, JarStoreError> {
    validate(file_name)?;
    let key = format!("{now_ms}-{:016x}-{file_name}", rand::random::<u64>());
    validate(&key)?;
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::{new_key, validate};

    #[test]
    fn keys_of_the_same_name_in_the_same_millisecond_differ() {
        let keys: std::collections::HashSet<String> =
            (0..1000).map(|_| new_key("app.jar", 1_700_000_000_000).expect("valid")).collect();
        assert_eq!(keys.len(), 1000);
        let key = keys.iter().next().expect("a key");
        assert!(key.starts_with("1700000000000-") && key.ends_with("-app.jar"), "{key}");
        assert_eq!(crate::jarstore::retention::uploaded_at_ms(key), Some(1_700_000_000_000));
    }

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
