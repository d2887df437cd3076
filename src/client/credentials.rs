//! Where `gear` finds the cluster CA and its bearer token, and says which it used.
//!
//! In order: `--ca` / `--token-file`, then `GEARPUMP_TOKEN`, then the first client.conf found
//! of `~/.config/gearpump/client.conf` and `/etc/gearpump/client.conf` (`ca-file`, `token` or
//! `token-file`, and optionally `masters`). A client.conf or token file that group or others
//! may read is refused: it holds a password. When a master refuses the token, `gear` names the
//! source, so the operator knows which file or variable to fix.

use std::path::{Path, PathBuf};

use super::ClientError;

/// The environment variable holding a token.
pub const TOKEN_ENV: &str = "GEARPUMP_TOKEN";
/// The system-wide client configuration (the installer's admin copy goes elsewhere).
pub const SYSTEM_CLIENT_CONF: &str = "/etc/gearpump/client.conf";

/// What `gear` authenticates with.
#[derive(Clone, Default)]
pub struct Credentials {
    pub token: Option<String>,
    /// Where the token came from (`--token-file /x`, `GEARPUMP_TOKEN`, `/etc/.../client.conf`).
    pub token_source: Option<String>,
    /// The cluster CA: with it, masters are called over `https://`.
    pub ca_file: Option<PathBuf>,
    /// `masters` of client.conf, when set.
    pub masters: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "(hidden)"))
            .field("token_source", &self.token_source)
            .field("ca_file", &self.ca_file)
            .field("masters", &self.masters)
            .finish()
    }
}

/// The flags and environment `resolve` looks at.
#[derive(Debug, Default)]
pub struct Sources {
    pub ca: Option<PathBuf>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
    /// client.conf files in order of precedence; the first that exists is read.
    pub client_confs: Vec<PathBuf>,
}

impl Sources {
    /// The flags given, `GEARPUMP_TOKEN`, and the standard client.conf places.
    pub fn standard(ca: Option<PathBuf>, token_file: Option<PathBuf>) -> Sources {
        let mut client_confs = Vec::new();
        if let Some(home) = std::env::var_os("HOME") {
            client_confs.push(PathBuf::from(home).join(".config/gearpump/client.conf"));
        }
        client_confs.push(PathBuf::from(SYSTEM_CLIENT_CONF));
        let token_env = std::env::var(TOKEN_ENV).ok().filter(|t| !t.trim().is_empty());
        Sources { ca, token_file, token_env, client_confs }
    }
}

fn file_error(path: &Path, cause: impl Into<String>) -> ClientError {
    ClientError::File { path: path.display().to_string(), cause: cause.into() }
}

/// Refuses a secret file that group or others may read.
fn check_private(path: &Path) -> Result<(), ClientError> {
    use std::os::unix::fs::PermissionsExt;
    let metadata = std::fs::metadata(path).map_err(|e| file_error(path, e.to_string()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(file_error(
            path,
            format!("mode {mode:o} lets other users read the token; fix: chmod 600 {}", path.display()),
        ));
    }
    Ok(())
}

fn read_token_file(path: &Path) -> Result<String, ClientError> {
    check_private(path)?;
    let text = std::fs::read_to_string(path).map_err(|e| file_error(path, e.to_string()))?;
    let token = text.trim().to_string();
    if token.is_empty() || token.contains(char::is_whitespace) {
        return Err(file_error(path, "expected one token (no spaces) in the file"));
    }
    Ok(token)
}

/// `key = value` lines (`#` comments; values may be quoted), as gearpump-setup writes them.
fn parse_client_conf(path: &Path, text: &str) -> Result<Vec<(String, String)>, ClientError> {
    let mut pairs = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(file_error(path, format!("line {}: expected `key = value`", number + 1)));
        };
        let value = value.trim();
        let value = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value);
        pairs.push((key.trim().to_string(), value.to_string()));
    }
    Ok(pairs)
}

/// Finds the CA and token from `sources`, in the order the module documentation gives.
pub fn resolve(sources: &Sources) -> Result<Credentials, ClientError> {
    let mut credentials = Credentials { ca_file: sources.ca.clone(), ..Credentials::default() };
    if let Some(path) = &sources.token_file {
        credentials.token = Some(read_token_file(path)?);
        credentials.token_source = Some(format!("--token-file {}", path.display()));
    } else if let Some(token) = &sources.token_env {
        credentials.token = Some(token.trim().to_string());
        credentials.token_source = Some(TOKEN_ENV.to_string());
    }
    let Some(conf) = sources.client_confs.iter().find(|path| path.exists()) else { return Ok(credentials) };
    check_private(conf)?;
    let text = std::fs::read_to_string(conf).map_err(|e| file_error(conf, e.to_string()))?;
    let base = conf.parent().unwrap_or(Path::new("/"));
    for (key, value) in parse_client_conf(conf, &text)? {
        match key.as_str() {
            "ca-file" if credentials.ca_file.is_none() => credentials.ca_file = Some(base.join(value)),
            "token" if credentials.token.is_none() => {
                credentials.token = Some(value);
                credentials.token_source = Some(conf.display().to_string());
            }
            "token-file" if credentials.token.is_none() => {
                let path = base.join(&value);
                credentials.token = Some(read_token_file(&path)?);
                credentials.token_source =
                    Some(format!("{} (token-file {})", conf.display(), path.display()));
            }
            "masters" if credentials.masters.is_none() => credentials.masters = Some(value),
            "ca-file" | "token" | "token-file" | "masters" => {}
            other => {
                return Err(file_error(
                    conf,
                    format!("unknown key {other:?} (ca-file, token, token-file, masters)"),
                ))
            }
        }
    }
    Ok(credentials)
}

/// The rustls client configuration trusting only the cluster CA.
pub fn tls_config(ca_file: &Path) -> Result<rustls::ClientConfig, ClientError> {
    let roots = crate::tls::read_roots(ca_file).map_err(|e| file_error(ca_file, e.to_string()))?;
    Ok(rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).expect("write");
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }

    #[test]
    fn flags_beat_the_environment_which_beats_client_conf() {
        let dir = tempfile::tempdir().expect("dir");
        let conf = dir.path().join("client.conf");
        write(&conf, "# admin\nca-file = \"ca.pem\"\ntoken = conftoken\nmasters = a:3000,b:3000\n", 0o600);
        let token_file = dir.path().join("token");
        write(&token_file, "filetoken\n", 0o600);
        let sources = |token_file: Option<PathBuf>, env: Option<&str>| Sources {
            ca: None,
            token_file,
            token_env: env.map(str::to_string),
            client_confs: vec![dir.path().join("missing.conf"), conf.clone()],
        };
        let from_conf = resolve(&sources(None, None)).expect("conf");
        assert_eq!(from_conf.token.as_deref(), Some("conftoken"));
        assert_eq!(from_conf.token_source.as_deref(), Some(conf.to_str().expect("utf-8")));
        assert_eq!(from_conf.ca_file, Some(dir.path().join("ca.pem")));
        assert_eq!(from_conf.masters.as_deref(), Some("a:3000,b:3000"));
        let from_env = resolve(&sources(None, Some("envtoken"))).expect("env");
        assert_eq!(
            (from_env.token.as_deref(), from_env.token_source.as_deref()),
            (Some("envtoken"), Some(TOKEN_ENV))
        );
        let from_flag = resolve(&sources(Some(token_file.clone()), Some("envtoken"))).expect("flag");
        assert_eq!(from_flag.token.as_deref(), Some("filetoken"));
        assert!(from_flag.token_source.as_deref().is_some_and(|s| s.starts_with("--token-file")));
        assert!(!format!("{from_flag:?}").contains("filetoken"));
    }

    #[test]
    fn readable_client_conf_and_token_files_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let conf = dir.path().join("client.conf");
        write(&conf, "token = conftoken\n", 0o644);
        let sources = Sources { client_confs: vec![conf.clone()], ..Sources::default() };
        let error = resolve(&sources).expect_err("0644").to_string();
        assert!(error.contains("chmod 600"), "{error}");
        let token_file = dir.path().join("token");
        write(&token_file, "filetoken\n", 0o640);
        let sources = Sources { token_file: Some(token_file), ..Sources::default() };
        assert!(resolve(&sources).is_err());
    }
}
