//! `gearpump.jarstore.rootpath`: the one parser of a jar store root, used at load, by
//! gearpump-setup's `--jar-store` check and by the HDFS store itself. Before, each had its own
//! idea of a valid URI, so `hdfs://nn:http/x` passed `--check-config` and then stopped the
//! master at start (exit 1, restarted by systemd) instead of being a configuration error.

use std::path::PathBuf;

use super::JarStoreRoot;

/// Parses a root as written in gear.conf. A relative folder stays relative (the caller anchors
/// it). The error is (what is wrong, how to fix it).
pub(crate) fn parse(text: &str) -> Result<JarStoreRoot, (String, String)> {
    if let Some(rest) = text.strip_prefix("file://") {
        if !rest.starts_with('/') {
            return Err((
                format!("{text:?} is not an absolute file:// URI"),
                "write file:///absolute/path (three slashes)".into(),
            ));
        }
        return Ok(JarStoreRoot::Shared(PathBuf::from(rest)));
    }
    if text.starts_with("hdfs://") {
        parse_hdfs_uri(text).map_err(|problem| {
            (
                format!("{text:?}: {problem}"),
                "write hdfs://namenode:9000/gearpump/jars or hdfs://nameservice/gearpump/jars".into(),
            )
        })?;
        return Ok(JarStoreRoot::Hdfs(text.to_string()));
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err((
            format!("unknown jar store scheme {scheme:?}"),
            "use a local folder, file:///shared/folder (NFS) or hdfs://namenode:port/path".into(),
        ));
    }
    Ok(JarStoreRoot::Local(PathBuf::from(text)))
}

/// Splits `hdfs://authority/path` into the authority (`host:port` or a nameservice) and a
/// normalized absolute path (leading `/`, no trailing `/`).
pub(crate) fn parse_hdfs_uri(uri: &str) -> Result<(String, String), String> {
    let rest = uri.strip_prefix("hdfs://").ok_or_else(|| {
        "the URI must start with hdfs:// (hdfs://host:port/path or hdfs://nameservice/path)".to_string()
    })?;
    let (authority, path) = match rest.find('/') {
        Some(slash) => (&rest[..slash], &rest[slash..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err("the URI has no NameNode address or nameservice (hdfs://host:port/path)".to_string());
    }
    if authority.contains('@') {
        return Err("user names in the URI are not supported; set HADOOP_USER_NAME instead".to_string());
    }
    if authority.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{authority:?} is not a host name"));
    }
    if let Some((host, port)) = authority.rsplit_once(':') {
        if host.is_empty() {
            return Err("the URI has a port but no host".to_string());
        }
        match port.parse::<u16>() {
            Ok(p) if p > 0 => {}
            _ => return Err(format!("{port:?} is not a port number")),
        }
    }
    if path.contains(['?', '#']) || path.chars().any(|c| c.is_control()) {
        return Err(format!("{path:?} is not a plain path (no '?', '#' or control characters)"));
    }
    let mut segments = Vec::new();
    for segment in path.split('/').filter(|s| !s.is_empty()) {
        if segment == "." || segment == ".." {
            return Err(format!("the path {path:?} contains '.' or '..'"));
        }
        segments.push(segment);
    }
    Ok((authority.to_string(), format!("/{}", segments.join("/"))))
}
