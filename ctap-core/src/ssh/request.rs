//! What a sign request asks to sign: an SSH userauth request, an SSHSIG blob, or something else.
//!
//! A security key whose application is a web origin (not `ssh:…`) must not sign a web login
//! challenge passed through the agent, so for those keys the agent signs only the two SSH
//! structures (OpenSSH's ssh-agent makes the same check). Userauth requests also carry the
//! session identifier, which the agent compares with the session bound to the connection.

use super::wire::Reader;

const SSH2_MSG_USERAUTH_REQUEST: u8 = 50;

/// The classified data of a sign request. Borrowed from the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedData<'a> {
    /// A publickey userauth request for the key being asked to sign.
    Userauth {
        session_id: &'a [u8],
        user: &'a str,
        host_key: Option<&'a [u8]>,
    },
    /// `ssh-keygen -Y sign` data.
    Sshsig {
        namespace: &'a str,
    },
    Other,
}

impl SignedData<'_> {
    pub fn is_ssh(&self) -> bool {
        !matches!(self, SignedData::Other)
    }
}

/// Classify `data` that a client asks `key_blob`'s key to sign. A userauth request counts only if
/// it names that very key, exactly as OpenSSH builds it.
pub fn classify<'a>(key_blob: &[u8], key_type: &str, data: &'a [u8]) -> SignedData<'a> {
    if let Some(u) = parse_userauth(key_blob, key_type, data) {
        return u;
    }
    if let Some(namespace) = parse_sshsig(data) {
        return SignedData::Sshsig { namespace };
    }
    SignedData::Other
}

fn parse_userauth<'a>(key_blob: &[u8], key_type: &str, data: &'a [u8]) -> Option<SignedData<'a>> {
    let mut r = Reader::new(data);
    let session_id = r.string("session id").ok()?;
    if session_id.is_empty() || r.u8("message").ok()? != SSH2_MSG_USERAUTH_REQUEST {
        return None;
    }
    let user = r.text("user").ok()?;
    let service = r.text("service").ok()?;
    let method = r.text("method").ok()?;
    let has_sig = r.u8("has signature").ok()?;
    let alg = r.text("algorithm").ok()?;
    let blob = r.string("key").ok()?;
    if service != "ssh-connection" || has_sig != 1 || alg != key_type || blob != key_blob {
        return None;
    }
    let host_key = match method {
        "publickey" => None,
        "publickey-hostbound-v00@openssh.com" => Some(r.string("host key").ok()?),
        _ => return None,
    };
    r.finish("userauth").ok()?;
    Some(SignedData::Userauth {
        session_id,
        user,
        host_key,
    })
}

fn parse_sshsig(data: &[u8]) -> Option<&str> {
    let rest = data.strip_prefix(b"SSHSIG")?;
    let mut r = Reader::new(rest);
    let namespace = r.text("namespace").ok()?;
    r.string("reserved").ok()?;
    r.text("hash algorithm").ok()?;
    r.string("hash").ok()?;
    r.finish("sshsig").ok()?;
    Some(namespace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::wire::put_string;

    fn userauth(blob: &[u8], method: &str) -> Vec<u8> {
        let mut d = Vec::new();
        put_string(&mut d, &[9; 32]);
        d.push(50);
        put_string(&mut d, b"alice");
        put_string(&mut d, b"ssh-connection");
        put_string(&mut d, method.as_bytes());
        d.push(1);
        put_string(&mut d, b"sk-ssh-ed25519@openssh.com");
        put_string(&mut d, blob);
        if method != "publickey" {
            put_string(&mut d, b"hostkey");
        }
        d
    }

    #[test]
    fn recognises_userauth_for_this_key_only() {
        let t = "sk-ssh-ed25519@openssh.com";
        let d = userauth(b"KEY", "publickey");
        assert_eq!(
            classify(b"KEY", t, &d),
            SignedData::Userauth {
                session_id: &[9; 32],
                user: "alice",
                host_key: None
            }
        );
        assert_eq!(classify(b"OTHER", t, &d), SignedData::Other);
        let hb = userauth(b"KEY", "publickey-hostbound-v00@openssh.com");
        assert!(matches!(
            classify(b"KEY", t, &hb),
            SignedData::Userauth {
                host_key: Some(b"hostkey"),
                ..
            }
        ));
        assert_eq!(
            classify(b"KEY", t, &userauth(b"KEY", "password")),
            SignedData::Other
        );
        let mut trailing = d.clone();
        trailing.push(0);
        assert_eq!(classify(b"KEY", t, &trailing), SignedData::Other);
    }

    #[test]
    fn recognises_sshsig_and_refuses_web_challenges() {
        let mut s = b"SSHSIG".to_vec();
        put_string(&mut s, b"file");
        put_string(&mut s, b"");
        put_string(&mut s, b"sha512");
        put_string(&mut s, &[1; 64]);
        assert_eq!(
            classify(b"K", "t", &s),
            SignedData::Sshsig { namespace: "file" }
        );
        assert_eq!(classify(b"K", "t", &[0x42; 32]), SignedData::Other);
        assert_eq!(classify(b"K", "t", b"SSHSIG"), SignedData::Other);
    }
}
