//! The agent protocol's messages (draft-miller-ssh-agent, PROTOCOL.agent, PROTOCOL.u2f): parsing
//! requests and encoding replies. No I/O and no policy here.
//!
//! Hand-written over ctap-core's SSH wire reader rather than with `ssh-agent-lib`: that crate is
//! async (tokio, async-trait) while a blocking thread per connection is all an agent serving
//! one user needs; and its replies go through `ssh_key::Signature`, whose 0.6 encoder puts the
//! sk-ecdsa flags and counter inside the signature string (see `ctap_core::ssh::signature`).
//! The dozen messages an sk-only agent handles fit in this file.

use ctap_core::ssh::cert::is_certificate_type;
use ctap_core::ssh::wire::{put_string, put_u32, Reader};
use ctap_core::ssh::{SkCertificate, SkKey, SshError, Unsupported};

pub const SSH_AGENT_FAILURE: u8 = 5;
pub const SSH_AGENT_SUCCESS: u8 = 6;
pub const SSH_AGENTC_REQUEST_IDENTITIES: u8 = 11;
pub const SSH_AGENT_IDENTITIES_ANSWER: u8 = 12;
pub const SSH_AGENTC_SIGN_REQUEST: u8 = 13;
pub const SSH_AGENT_SIGN_RESPONSE: u8 = 14;
pub const SSH_AGENTC_ADD_IDENTITY: u8 = 17;
pub const SSH_AGENTC_REMOVE_IDENTITY: u8 = 18;
pub const SSH_AGENTC_REMOVE_ALL_IDENTITIES: u8 = 19;
pub const SSH_AGENTC_LOCK: u8 = 22;
pub const SSH_AGENTC_UNLOCK: u8 = 23;
pub const SSH_AGENTC_ADD_ID_CONSTRAINED: u8 = 25;
pub const SSH_AGENTC_EXTENSION: u8 = 27;
pub const SSH_AGENT_EXTENSION_FAILURE: u8 = 28;
pub const SSH_AGENT_EXTENSION_RESPONSE: u8 = 29;

const CONSTRAIN_LIFETIME: u8 = 1;
const CONSTRAIN_CONFIRM: u8 = 2;
const CONSTRAIN_EXTENSION: u8 = 255;

/// The largest message we accept, as OpenSSH's agent (AGENT_MAX_LEN).
pub const MAX_MESSAGE: usize = 256 * 1024;

/// Constraints sent with SSH_AGENTC_ADD_ID_CONSTRAINED.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Constraints {
    pub confirm: bool,
    pub lifetime_secs: Option<u32>,
}

#[derive(Debug)]
pub enum Request<'a> {
    RequestIdentities,
    Sign {
        key_blob: &'a [u8],
        data: &'a [u8],
        flags: u32,
    },
    AddIdentity {
        key: Box<SkKey>,
        /// `ssh-add` of a key with its `-cert.pub`: the certificate, whose key is `key`'s.
        certificate: Option<Box<SkCertificate>>,
        constraints: Constraints,
    },
    RemoveIdentity {
        key_blob: &'a [u8],
    },
    RemoveAll,
    Lock {
        passphrase: &'a [u8],
    },
    Unlock {
        passphrase: &'a [u8],
    },
    Extension {
        name: &'a str,
        contents: &'a [u8],
    },
    /// A message type we do not implement (smartcard keys, SSH1, …).
    Unknown(u8),
}

/// Parse one message body (the bytes after the length). Errors name what is wrong.
pub fn parse(body: &[u8]) -> Result<Request<'_>, SshError> {
    let mut r = Reader::new(body);
    let kind = r.u8("message type")?;
    let req = match kind {
        SSH_AGENTC_REQUEST_IDENTITIES => Request::RequestIdentities,
        SSH_AGENTC_SIGN_REQUEST => Request::Sign {
            key_blob: r.string("key blob")?,
            data: r.string("data")?,
            flags: r.u32("flags")?,
        },
        SSH_AGENTC_ADD_IDENTITY | SSH_AGENTC_ADD_ID_CONSTRAINED => {
            // A certificate's type name ends in -cert-v01@openssh.com; peek at it.
            let is_cert = r.clone().text("key type").is_ok_and(is_certificate_type);
            let (mut key, certificate) = if is_cert {
                let (key, cert) = SkCertificate::read_private(&mut r)?;
                (key, Some(Box::new(cert)))
            } else {
                (SkKey::read_private(&mut r)?, None)
            };
            key.comment = r.text("comment")?.to_string();
            let constraints = if kind == SSH_AGENTC_ADD_ID_CONSTRAINED {
                parse_constraints(&mut r)?
            } else {
                Constraints::default()
            };
            Request::AddIdentity {
                key: Box::new(key),
                certificate,
                constraints,
            }
        }
        SSH_AGENTC_REMOVE_IDENTITY => Request::RemoveIdentity {
            key_blob: r.string("key blob")?,
        },
        SSH_AGENTC_REMOVE_ALL_IDENTITIES => Request::RemoveAll,
        SSH_AGENTC_LOCK => Request::Lock {
            passphrase: r.string("passphrase")?,
        },
        SSH_AGENTC_UNLOCK => Request::Unlock {
            passphrase: r.string("passphrase")?,
        },
        SSH_AGENTC_EXTENSION => {
            let name = r.text("extension name")?;
            let contents = r.rest();
            return Ok(Request::Extension { name, contents });
        }
        other => return Ok(Request::Unknown(other)),
    };
    r.finish("message")?;
    Ok(req)
}

fn parse_constraints(r: &mut Reader<'_>) -> Result<Constraints, SshError> {
    let mut c = Constraints::default();
    let mut provider_seen = false;
    while !r.is_empty() {
        match r.u8("constraint")? {
            CONSTRAIN_LIFETIME if c.lifetime_secs.is_none() => {
                c.lifetime_secs = Some(r.u32("lifetime")?)
            }
            CONSTRAIN_CONFIRM if !c.confirm => c.confirm = true,
            CONSTRAIN_EXTENSION => match r.text("constraint extension")? {
                // ssh-add names the middleware that would drive the key; we are our own middleware.
                "sk-provider@openssh.com" if !provider_seen => {
                    provider_seen = true;
                    r.text("sk provider")?;
                }
                other => {
                    return Err(SshError::Unsupported(Unsupported::ConstraintExtension {
                        name: other.to_string(),
                    }))
                }
            },
            other => {
                return Err(SshError::Unsupported(Unsupported::Constraint {
                    code: other,
                }))
            }
        }
    }
    Ok(c)
}

/// session-bind@openssh.com contents.
pub struct SessionBind<'a> {
    pub host_key: &'a [u8],
    pub session_id: &'a [u8],
    pub signature: &'a [u8],
    pub forwarding: bool,
}

pub fn parse_session_bind(contents: &[u8]) -> Result<SessionBind<'_>, SshError> {
    let mut r = Reader::new(contents);
    let b = SessionBind {
        host_key: r.string("host key")?,
        session_id: r.string("session id")?,
        signature: r.string("signature")?,
        forwarding: r.bool("is_forwarding")?,
    };
    r.finish("session-bind")?;
    Ok(b)
}

/// A reply, encoded with its length prefix.
pub enum Response {
    Success,
    Failure,
    ExtensionFailure,
    Identities(Vec<(Vec<u8>, String)>),
    Signature(Vec<u8>),
    /// SSH_AGENT_EXTENSION_RESPONSE: the extension name, then its own contents.
    Extension(Vec<u8>),
}

impl Response {
    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::new();
        match self {
            Response::Success => body.push(SSH_AGENT_SUCCESS),
            Response::Failure => body.push(SSH_AGENT_FAILURE),
            Response::ExtensionFailure => body.push(SSH_AGENT_EXTENSION_FAILURE),
            Response::Identities(ids) => {
                body.push(SSH_AGENT_IDENTITIES_ANSWER);
                put_u32(&mut body, u32::try_from(ids.len()).unwrap_or(0));
                for (blob, comment) in ids {
                    put_string(&mut body, blob);
                    put_string(&mut body, comment.as_bytes());
                }
            }
            Response::Signature(sig) => {
                body.push(SSH_AGENT_SIGN_RESPONSE);
                put_string(&mut body, sig);
            }
            Response::Extension(contents) => {
                body.push(SSH_AGENT_EXTENSION_RESPONSE);
                body.extend_from_slice(contents);
            }
        }
        let mut out = Vec::with_capacity(body.len() + 4);
        put_string(&mut out, &body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_and_oversized_fields_are_errors() {
        let mut m = vec![SSH_AGENTC_SIGN_REQUEST];
        put_string(&mut m, b"blob");
        put_string(&mut m, b"data");
        put_u32(&mut m, 0);
        assert!(matches!(
            parse(&m),
            Ok(Request::Sign {
                key_blob: b"blob",
                data: b"data",
                flags: 0
            })
        ));
        for cut in 1..m.len() {
            assert!(parse(&m[..cut]).is_err(), "cut {cut}");
        }
        let mut big = vec![SSH_AGENTC_SIGN_REQUEST];
        put_u32(&mut big, 1_000_000);
        big.extend_from_slice(b"short");
        assert!(parse(&big).is_err());
        assert!(parse(&[]).is_err());
        assert!(matches!(parse(&[200]), Ok(Request::Unknown(200))));
        let mut extra = vec![SSH_AGENTC_REQUEST_IDENTITIES];
        extra.push(0);
        assert!(parse(&extra).is_err());
    }

    #[test]
    fn constraints_parse_and_unknown_ones_are_refused() {
        let mut c = vec![CONSTRAIN_CONFIRM, CONSTRAIN_LIFETIME];
        put_u32(&mut c, 60);
        c.push(CONSTRAIN_EXTENSION);
        put_string(&mut c, b"sk-provider@openssh.com");
        put_string(&mut c, b"internal");
        let got = parse_constraints(&mut Reader::new(&c)).unwrap();
        assert_eq!(
            got,
            Constraints {
                confirm: true,
                lifetime_secs: Some(60)
            }
        );
        let mut bad = vec![CONSTRAIN_EXTENSION];
        put_string(&mut bad, b"restrict-destination-v00@openssh.com");
        put_string(&mut bad, b"");
        assert!(parse_constraints(&mut Reader::new(&bad)).is_err());
        assert!(
            parse_constraints(&mut Reader::new(&[CONSTRAIN_CONFIRM, CONSTRAIN_CONFIRM])).is_err()
        );
        assert!(parse_constraints(&mut Reader::new(&[9])).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse(&bytes);
            let _ = parse_session_bind(&bytes);
            let _ = parse_constraints(&mut Reader::new(&bytes));
        }
    }

    #[test]
    fn replies_are_length_prefixed() {
        assert_eq!(Response::Failure.encode(), [0, 0, 0, 1, SSH_AGENT_FAILURE]);
        let ids = Response::Identities(vec![(b"k".to_vec(), "c".into())]).encode();
        assert_eq!(
            ids,
            [0, 0, 0, 15, 12, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 0, 0, 0, 1, b'c']
        );
    }
}
