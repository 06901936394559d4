use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::TransportError;

/// Which authenticator to talk to, as root's configuration names it.
///
/// `auto` scans hidraw devices; `hidraw:/dev/hidrawN` names one USB key; `unix:/path` names a
/// socket carrying raw 64-byte reports (the virtual key, or a proxy); several `unix:` URIs
/// joined by commas (`unix:/a.sock,unix:/b.sock`, or a list in the TOML file) name several keys
/// at once, as `auto` finds several USB keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUri {
    Auto,
    Hidraw(PathBuf),
    Unix(PathBuf),
    /// Several `unix:` sockets, each a key.
    UnixList(Vec<PathBuf>),
}

impl DeviceUri {
    /// The `unix:` sockets this URI names (to be checked like files before use).
    pub fn sockets(&self) -> Vec<&std::path::Path> {
        match self {
            DeviceUri::Unix(p) => vec![p.as_path()],
            DeviceUri::UnixList(ps) => ps.iter().map(PathBuf::as_path).collect(),
            DeviceUri::Auto | DeviceUri::Hidraw(_) => Vec::new(),
        }
    }

    /// The single-key URIs of a list (the URI itself otherwise).
    pub fn each(&self) -> Vec<DeviceUri> {
        match self {
            DeviceUri::UnixList(ps) => ps.iter().cloned().map(DeviceUri::Unix).collect(),
            other => vec![other.clone()],
        }
    }

    /// Several `unix:` URIs as one (a list of one is that URI).
    pub fn from_list<S: AsRef<str>>(items: &[S]) -> Result<Self, TransportError> {
        let mut paths = Vec::new();
        for item in items {
            match item.as_ref().parse()? {
                DeviceUri::Unix(p) => paths.push(p),
                DeviceUri::UnixList(ps) => paths.extend(ps),
                _ => {
                    return Err(TransportError::BadUri {
                        uri: item.as_ref().to_string(),
                        reason: "only unix: URIs can be listed",
                    })
                }
            }
        }
        match paths.len() {
            0 => Err(TransportError::BadUri {
                uri: String::new(),
                reason: "an empty list names no key",
            }),
            1 => Ok(DeviceUri::Unix(paths.remove(0))),
            _ => Ok(DeviceUri::UnixList(paths)),
        }
    }
}

impl FromStr for DeviceUri {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| TransportError::BadUri {
            uri: s.to_string(),
            reason,
        };
        if s == "auto" {
            return Ok(DeviceUri::Auto);
        }
        if s.contains(",unix:") {
            let parts: Vec<String> = s
                .split(",unix:")
                .enumerate()
                .map(|(i, p)| {
                    if i == 0 {
                        p.to_string()
                    } else {
                        format!("unix:{p}")
                    }
                })
                .collect();
            return DeviceUri::from_list(&parts);
        }
        let (scheme, rest) = s.split_once(':').ok_or_else(|| bad("missing scheme"))?;
        if rest.is_empty() {
            return Err(bad("missing path"));
        }
        if !rest.starts_with('/') {
            return Err(bad("path must be absolute"));
        }
        if rest.contains('\0') {
            return Err(bad("path contains a NUL byte"));
        }
        match scheme {
            "hidraw" => Ok(DeviceUri::Hidraw(PathBuf::from(rest))),
            "unix" => Ok(DeviceUri::Unix(PathBuf::from(rest))),
            _ => Err(bad("unknown scheme")),
        }
    }
}

impl fmt::Display for DeviceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceUri::Auto => write!(f, "auto"),
            DeviceUri::Hidraw(p) => write!(f, "hidraw:{}", p.display()),
            DeviceUri::Unix(p) => write!(f, "unix:{}", p.display()),
            DeviceUri::UnixList(ps) => {
                for (i, p) in ps.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "unix:{}", p.display())?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_scheme_and_round_trips() {
        for s in ["auto", "hidraw:/dev/hidraw3", "unix:/run/ctap/key.sock"] {
            let uri: DeviceUri = s.parse().unwrap();
            assert_eq!(uri.to_string(), s);
        }
        assert_eq!(
            "unix:/tmp/s".parse::<DeviceUri>().unwrap(),
            DeviceUri::Unix("/tmp/s".into())
        );
    }

    #[test]
    fn several_unix_sockets_are_one_uri() {
        let uri: DeviceUri = "unix:/a.sock,unix:/b.sock".parse().unwrap();
        assert_eq!(
            uri,
            DeviceUri::UnixList(vec!["/a.sock".into(), "/b.sock".into()])
        );
        assert_eq!(uri.to_string(), "unix:/a.sock,unix:/b.sock");
        assert_eq!(uri.each().len(), 2);
        assert_eq!(uri.sockets().len(), 2);
        assert!("unix:/a.sock,unix:rel".parse::<DeviceUri>().is_err());
        assert!(DeviceUri::from_list(&["unix:/a", "hidraw:/dev/hidraw0"]).is_err());
        assert_eq!(
            DeviceUri::from_list(&["unix:/a"]).unwrap(),
            DeviceUri::Unix("/a".into())
        );
    }

    #[test]
    fn rejects_malformed_uris_with_a_reason() {
        for (s, reason) in [
            ("", "missing scheme"),
            ("/dev/hidraw0", "missing scheme"),
            ("hidraw:", "missing path"),
            ("unix:relative.sock", "path must be absolute"),
            ("usb:/dev/x", "unknown scheme"),
            ("unix:/a\0b", "path contains a NUL byte"),
        ] {
            match s.parse::<DeviceUri>() {
                Err(TransportError::BadUri { reason: r, .. }) => assert_eq!(r, reason, "{s:?}"),
                other => panic!("{s:?}: expected BadUri, got {other:?}"),
            }
        }
        let msg = "usb:/x".parse::<DeviceUri>().unwrap_err().to_string();
        assert!(
            msg.contains("expected auto, hidraw:/dev/hidrawN or unix:"),
            "{msg}"
        );
    }
}
