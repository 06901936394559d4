use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::TransportError;

/// Which authenticator to talk to, as root's configuration names it.
///
/// `auto` scans hidraw devices; `hidraw:/dev/hidrawN` names one USB key; `unix:/path` names a
/// socket carrying raw 64-byte reports (the virtual key, or a proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceUri {
    Auto,
    Hidraw(PathBuf),
    Unix(PathBuf),
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
