//! Backend addresses: `host:port`, optionally with an `http://` or `https://` scheme.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// How smartlb talks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Scheme {
    /// Plain HTTP (the default when an address has no scheme).
    #[default]
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port used when an address with this scheme names none: 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a backend is: scheme, host (an IP address or a DNS name) and port.
///
/// Parsed from `"host:port"`, `"[v6]:port"`, `"http://host:port"` or
/// `"https://host[:port]"` (with a scheme the port may be left out: 80 or 443).
/// Host names are stored in lower case; IPv6 hosts without brackets.
///
/// Displays as `host:port` (`[v6]:port` for IPv6), prefixed with `https://` only for
/// HTTPS backends, so the display of an HTTP backend is the usual `127.0.0.1:8081`.
///
/// ```
/// use smartlb_config::{BackendAddress, Scheme};
///
/// let a: BackendAddress = "127.0.0.1:8081".parse().unwrap();
/// assert_eq!(a.scheme, Scheme::Http);
/// assert_eq!(a.to_string(), "127.0.0.1:8081");
/// assert!(a.socket_addr().is_some());
///
/// let b: BackendAddress = "https://API.example.com".parse().unwrap();
/// assert_eq!((b.host.as_str(), b.port), ("api.example.com", 443));
/// assert_eq!(b.to_string(), "https://api.example.com:443");
/// assert_eq!(b.socket_addr(), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendAddress {
    /// `http` unless the address said `https://`.
    pub scheme: Scheme,
    /// An IP address (IPv6 without brackets) or a lower-case DNS name.
    pub host: String,
    /// The TCP port, never 0.
    pub port: u16,
}

/// Why an address string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid address {input:?}: {reason}")]
pub struct AddressError {
    input: String,
    reason: String,
}

impl AddressError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        AddressError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }
}

impl BackendAddress {
    /// An address from its parts (the host is stored in lower case).
    pub fn new(scheme: Scheme, host: impl Into<String>, port: u16) -> Self {
        BackendAddress {
            scheme,
            host: host.into().to_ascii_lowercase(),
            port,
        }
    }

    /// The socket address when the host is an IP address; `None` for a DNS name.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        self.host
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, self.port))
    }

    /// `host:port` (with brackets around an IPv6 host), without the scheme: the HTTP
    /// authority.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port`, always with the scheme.
    pub fn to_url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority())
    }
}

impl From<SocketAddr> for BackendAddress {
    fn from(addr: SocketAddr) -> Self {
        BackendAddress {
            scheme: Scheme::Http,
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }
}

impl fmt::Display for BackendAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.scheme == Scheme::Https {
            f.write_str("https://")?;
        }
        f.write_str(&self.authority())
    }
}

impl FromStr for BackendAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let (scheme, rest) = match input.split_once("://") {
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "http" => (Some(Scheme::Http), rest),
                "https" => (Some(Scheme::Https), rest),
                other => {
                    return Err(AddressError::new(
                        input,
                        format!("unsupported scheme \"{other}\"; use http:// or https://"),
                    ));
                }
            },
            None => (None, input),
        };
        let rest = match rest.strip_suffix('/') {
            Some(r) if scheme.is_some() => r,
            _ => rest,
        };
        if rest.is_empty() {
            return Err(AddressError::new(input, "empty; expected host:port"));
        }
        if let Some(c) = rest.chars().find(|c| matches!(c, '/' | '?' | '#' | '@')) {
            return Err(AddressError::new(
                input,
                format!(
                    "unexpected \"{c}\"; a backend address is host:port, without path, query or user"
                ),
            ));
        }
        let (host, port) = split_host_port(input, rest)?;
        let port = match (port, scheme) {
            (Some(p), _) => parse_port(input, p)?,
            (None, Some(s)) => s.default_port(),
            (None, None) => {
                return Err(AddressError::new(
                    input,
                    "missing port; expected host:port such as 127.0.0.1:8080",
                ));
            }
        };
        let host = validate_host(input, host)?;
        Ok(BackendAddress {
            scheme: scheme.unwrap_or_default(),
            host,
            port,
        })
    }
}

/// Splits `host:port` / `[v6]:port` / `host` / `[v6]`.
fn split_host_port<'a>(
    input: &str,
    rest: &'a str,
) -> Result<(&'a str, Option<&'a str>), AddressError> {
    if let Some(bracketed) = rest.strip_prefix('[') {
        let Some((host, after)) = bracketed.split_once(']') else {
            return Err(AddressError::new(
                input,
                "missing \"]\" after an IPv6 address",
            ));
        };
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(AddressError::new(
                input,
                format!("\"{host}\" is not an IPv6 address"),
            ));
        }
        return match after {
            "" => Ok((host, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((host, Some(port))),
                None => Err(AddressError::new(
                    input,
                    "expected \":\" and a port after \"]\"",
                )),
            },
        };
    }
    match rest.rsplit_once(':') {
        Some((host, _)) if host.contains(':') => Err(AddressError::new(
            input,
            "an IPv6 address needs brackets, as in [::1]:8080",
        )),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((rest, None)),
    }
}

fn parse_port(input: &str, port: &str) -> Result<u16, AddressError> {
    match port.parse::<u16>() {
        Ok(0) => Err(AddressError::new(input, "port 0 is not a backend port")),
        Ok(p) if port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(AddressError::new(
            input,
            format!("\"{port}\" is not a port number (1-65535)"),
        )),
    }
}

/// Checks an IP literal or a DNS name; returns it in canonical (lower-case) form.
fn validate_host(input: &str, host: &str) -> Result<String, AddressError> {
    if host.is_empty() {
        return Err(AddressError::new(input, "missing host"));
    }
    if let Ok(ip) = host.parse::<std::net::Ipv6Addr>() {
        return Ok(ip.to_string());
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    validate_dns_name(host).map_err(|reason| AddressError::new(input, reason))?;
    Ok(host.to_ascii_lowercase())
}

/// Checks a DNS host name: labels of letters, digits, `-` and `_`, 1 to 63 characters,
/// 253 at most in all, and not all digits in the last label (that would be a broken
/// IPv4 address).
pub(crate) fn validate_dns_name(name: &str) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() || trimmed.len() > 253 {
        return Err(format!("\"{name}\" is not a valid host name"));
    }
    for label in trimmed.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!(
                "\"{name}\" is not a valid host name (empty or long label)"
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "\"{name}\" is not a valid host name (unexpected \"{c}\")"
            ));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!(
                "\"{name}\" is not a valid host name (a label starts or ends with \"-\")"
            ));
        }
    }
    if trimmed
        .rsplit('.')
        .next()
        .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!(
            "\"{name}\" is not a valid IPv4 address or host name"
        ));
    }
    Ok(())
}

impl Serialize for BackendAddress {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackendAddress {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BackendAddress, String> {
        s.parse::<BackendAddress>().map_err(|e| e.to_string())
    }

    #[test]
    fn accepted_forms() {
        let a = parse("127.0.0.1:8081").unwrap();
        assert_eq!(a, BackendAddress::new(Scheme::Http, "127.0.0.1", 8081));
        assert_eq!(a.socket_addr(), Some("127.0.0.1:8081".parse().unwrap()));

        let b = parse("[::1]:9000").unwrap();
        assert_eq!(b.host, "::1");
        assert_eq!(b.to_string(), "[::1]:9000");
        assert_eq!(b.socket_addr(), Some("[::1]:9000".parse().unwrap()));

        let c = parse("HTTPS://Web.Internal:8443").unwrap();
        assert_eq!(c, BackendAddress::new(Scheme::Https, "web.internal", 8443));
        assert_eq!(c.to_string(), "https://web.internal:8443");
        assert_eq!(c.to_url(), "https://web.internal:8443");

        let d = parse("http://backend-1:80/").unwrap();
        assert_eq!(d.to_string(), "backend-1:80");
        assert_eq!(d.to_url(), "http://backend-1:80");
        assert_eq!(parse("http://[::1]").unwrap().port, 80);
        assert_eq!(parse(&d.to_string()).unwrap(), d);
    }

    #[test]
    fn rejected_forms() {
        let err = |s: &str| parse(s).unwrap_err();
        assert!(err("127.0.0.1").contains("missing port"));
        assert!(err("127.0.0.1:0").contains("port 0"));
        assert!(err("127.0.0.1:70000").contains("not a port number"));
        assert!(err("127.0.0.1:+80").contains("not a port number"));
        assert!(err("ftp://x:1").contains("unsupported scheme"));
        assert!(err("::1:80").contains("brackets"));
        assert!(err("[::1:80").contains("]"));
        assert!(err("[zz]:80").contains("IPv6"));
        assert!(err("host/x:80").contains("without path"));
        assert!(err("http://a:1/path").contains("without path"));
        assert!(err(":80").contains("missing host"));
        assert!(err("300.1.1.1:80").contains("IPv4"));
        assert!(err("bad host:80").contains("host name"));
        assert!(err("-a.b:80").contains("label"));
        assert!(err("").contains("empty"));
    }
}
