//! `host:port` entries of `gearpump.cluster.masters`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl HostPort {
    /// Parses `host:port`, `[v6]:port`; the error says what is wrong with the entry.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let text = text.trim();
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or("an IPv6 address needs a closing ']'")?;
            let port = after.strip_prefix(':').ok_or("expected ':PORT' after the IPv6 address")?;
            (host, port)
        } else {
            text.rsplit_once(':').ok_or("expected HOST:PORT, the port is missing")?
        };
        if host.is_empty() {
            return Err("the host is empty".into());
        }
        if host.contains(char::is_whitespace) || host.contains('/') {
            return Err(format!("{host:?} is not a host name or address"));
        }
        if !host.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':')) {
            return Err(format!("{host:?} is not a host name or address"));
        }
        let port: u16 = port.parse().map_err(|_| format!("port {port:?} is not a number from 1 to 65535"))?;
        if port == 0 {
            return Err("port 0 is not allowed".into());
        }
        Ok(HostPort { host: host.to_string(), port })
    }
}

#[cfg(test)]
mod tests {
    use super::HostPort;

    #[test]
    fn parses_names_addresses_and_v6() {
        assert_eq!(HostPort::parse("node1:3000"), Ok(HostPort { host: "node1".into(), port: 3000 }));
        assert_eq!(HostPort::parse("[::1]:3000").map(|hp| hp.to_string()), Ok("[::1]:3000".into()));
    }

    #[test]
    fn rejects_malformed_entries() {
        for bad in ["node1", ":3000", "node1:", "node1:0", "node1:70000", "node 1:3000", "http://x:1"] {
            assert!(HostPort::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
