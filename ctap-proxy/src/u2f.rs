//! CTAP1/U2F over CTAPHID_MSG: the APDU is parsed strictly, register and authenticate pass
//! only for an application parameter (appId hash) that is SHA-256 of an exact RP ID the client
//! may use, VERSION always passes, anything else is refused; what passes is re-encoded from its
//! fields.
//!
//! Refusals answer a status word and never reach the key: SW_WRONG_DATA (0x6A80) for an app ID
//! the client may not use and for malformed APDUs, SW_INS_NOT_SUPPORTED (0x6D00) for other
//! instructions, SW_CLA_NOT_SUPPORTED (0x6E00) for a class byte other than 0. Not
//! SW_CONDITIONS_NOT_SATISFIED (0x6985): U2F clients read that as "touch needed" and poll again.

use crate::policy::{ClientPolicy, Command};

pub const SW_WRONG_DATA: u16 = 0x6A80;
pub const SW_INS_NOT_SUPPORTED: u16 = 0x6D00;
pub const SW_CLA_NOT_SUPPORTED: u16 = 0x6E00;

const INS_REGISTER: u8 = 0x01;
const INS_AUTHENTICATE: u8 = 0x02;
const INS_VERSION: u8 = 0x03;

/// A parsed command APDU (ISO 7816-4, short or extended length).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Apdu {
    ins: u8,
    p1: u8,
    p2: u8,
    data: Vec<u8>,
    /// Ne as encoded (0 = the maximum), if present.
    le: Option<u32>,
    extended: bool,
}

fn parse(b: &[u8]) -> Option<Apdu> {
    if b.len() < 4 || b[0] != 0 {
        return None;
    }
    let (ins, p1, p2) = (b[1], b[2], b[3]);
    let body = &b[4..];
    let apdu = |data: &[u8], le, extended| {
        Some(Apdu {
            ins,
            p1,
            p2,
            data: data.to_vec(),
            le,
            extended,
        })
    };
    match body.len() {
        0 => apdu(&[], None, false),
        1 => apdu(&[], Some(u32::from(body[0])), false),
        _ if body[0] != 0 => {
            // Short: Lc (1..=255), data, optional Le (1 byte).
            let lc = usize::from(body[0]);
            match body.len() - 1 {
                n if n == lc => apdu(&body[1..], None, false),
                n if n == lc + 1 => apdu(&body[1..=lc], Some(u32::from(body[lc + 1])), false),
                _ => None,
            }
        }
        3 => apdu(
            &[],
            Some(u32::from(u16::from_be_bytes([body[1], body[2]]))),
            true,
        ),
        n if n >= 3 => {
            // Extended: 0, Lc (2 bytes, non-zero), data, optional Le (2 bytes).
            let lc = usize::from(u16::from_be_bytes([body[1], body[2]]));
            if lc == 0 {
                return None;
            }
            match n - 3 {
                m if m == lc => apdu(&body[3..], None, true),
                m if m == lc + 2 => apdu(
                    &body[3..3 + lc],
                    Some(u32::from(u16::from_be_bytes([body[3 + lc], body[4 + lc]]))),
                    true,
                ),
                _ => None,
            }
        }
        _ => None,
    }
}

fn encode(a: &Apdu) -> Vec<u8> {
    let mut out = vec![0, a.ins, a.p1, a.p2];
    let len = a.data.len();
    if a.extended {
        if len > 0 {
            out.push(0);
            out.extend((len as u16).to_be_bytes());
            out.extend(&a.data);
            if let Some(le) = a.le {
                out.extend((le as u16).to_be_bytes());
            }
        } else if let Some(le) = a.le {
            out.push(0);
            out.extend((le as u16).to_be_bytes());
        }
    } else {
        if len > 0 {
            out.push(len as u8);
            out.extend(&a.data);
        }
        if let Some(le) = a.le {
            out.push(le as u8);
        }
    }
    out
}

/// What the proxy does with one MSG request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes to the key; the RP ID the app ID belongs to, for the audit line.
    Forward {
        command: &'static str,
        rp_id: Option<String>,
        apdu: Vec<u8>,
    },
    /// Answer the client with this status word.
    Refuse {
        command: &'static str,
        sw: u16,
        reason: &'static str,
    },
}

pub fn check(policy: &ClientPolicy, payload: &[u8]) -> Decision {
    let refuse = |command, sw, reason| Decision::Refuse {
        command,
        sw,
        reason,
    };
    if !policy.allows(Command::U2f) {
        return refuse("u2f", SW_INS_NOT_SUPPORTED, "command-not-allowed");
    }
    if payload.first().is_some_and(|&c| c != 0) {
        return refuse("u2f", SW_CLA_NOT_SUPPORTED, "bad-class");
    }
    let Some(apdu) = parse(payload) else {
        return refuse("u2f", SW_WRONG_DATA, "malformed-apdu");
    };
    let (command, app) = match apdu.ins {
        INS_VERSION => {
            if !apdu.data.is_empty() {
                return refuse("u2f-version", SW_WRONG_DATA, "malformed-apdu");
            }
            return Decision::Forward {
                command: "u2f-version",
                rp_id: None,
                apdu: encode(&apdu),
            };
        }
        INS_REGISTER => {
            if apdu.data.len() != 64 {
                return refuse("u2f-register", SW_WRONG_DATA, "malformed-apdu");
            }
            if !policy.make_credential || !policy.allows(Command::MakeCredential) {
                return refuse("u2f-register", SW_WRONG_DATA, "make-credential-not-allowed");
            }
            ("u2f-register", &apdu.data[32..64])
        }
        INS_AUTHENTICATE => {
            let d = &apdu.data;
            if !matches!(apdu.p1, 0x03 | 0x07 | 0x08)
                || d.len() < 65
                || d.len() != 65 + usize::from(d[64])
            {
                return refuse("u2f-authenticate", SW_WRONG_DATA, "malformed-apdu");
            }
            if !policy.allows(Command::GetAssertion) {
                return refuse("u2f-authenticate", SW_WRONG_DATA, "command-not-allowed");
            }
            ("u2f-authenticate", &d[32..64])
        }
        _ => return refuse("u2f", SW_INS_NOT_SUPPORTED, "command-not-allowed"),
    };
    match policy.rp_for_app_id_hash(app) {
        Some(rp) => Decision::Forward {
            command,
            rp_id: Some(rp.to_string()),
            apdu: encode(&apdu),
        },
        None => refuse(command, SW_WRONG_DATA, "rp-not-allowed"),
    }
}

/// The key's answer must end in a status word; it passes unchanged (its signature covers it).
pub fn check_response(response: &[u8]) -> Option<&[u8]> {
    (response.len() >= 2).then_some(response)
}

pub fn status_word(sw: u16) -> Vec<u8> {
    sw.to_be_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{RpPattern, DEFAULT_COMMANDS};
    use sha2::{Digest, Sha256};

    fn policy() -> ClientPolicy {
        ClientPolicy::new(
            "t",
            vec![
                RpPattern::Exact("example.org".into()),
                RpPattern::Suffix("example.net".into()),
            ],
            true,
            true,
            DEFAULT_COMMANDS.to_vec(),
        )
    }

    fn register(app: &[u8]) -> Vec<u8> {
        let mut a = vec![0, INS_REGISTER, 0, 0, 0, 0, 64];
        a.extend([1u8; 32]);
        a.extend(app);
        a.extend([0, 0]);
        a
    }

    fn authenticate(app: &[u8], short: bool) -> Vec<u8> {
        let mut data = vec![2u8; 32];
        data.extend(app);
        data.push(3);
        data.extend([9, 9, 9]);
        let mut a = vec![0, INS_AUTHENTICATE, 0x03, 0];
        if short {
            a.push(data.len() as u8);
            a.extend(data);
        } else {
            a.extend([0, 0, data.len() as u8]);
            a.extend(data);
            a.extend([0, 0]);
        }
        a
    }

    #[test]
    fn allowed_app_ids_pass_unchanged() {
        let app = Sha256::digest(b"example.org");
        for apdu in [
            register(&app),
            authenticate(&app, true),
            authenticate(&app, false),
        ] {
            match check(&policy(), &apdu) {
                Decision::Forward {
                    rp_id, apdu: out, ..
                } => {
                    assert_eq!(rp_id.as_deref(), Some("example.org"));
                    assert_eq!(out, apdu);
                }
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(
            check(&policy(), &[0, INS_VERSION, 0, 0]),
            Decision::Forward { .. }
        ));
    }

    #[test]
    fn other_app_ids_and_instructions_are_refused() {
        let other = Sha256::digest(b"evil.example");
        // Wildcards cannot be matched by hash: only exact RP IDs are U2F app IDs.
        let wild = Sha256::digest(b"a.example.net");
        for apdu in [
            register(&other),
            authenticate(&other, true),
            register(&wild),
        ] {
            assert!(matches!(
                check(&policy(), &apdu),
                Decision::Refuse {
                    sw: SW_WRONG_DATA,
                    reason: "rp-not-allowed",
                    ..
                }
            ));
        }
        assert!(matches!(
            check(&policy(), &[0, 0x40, 0, 0]),
            Decision::Refuse {
                sw: SW_INS_NOT_SUPPORTED,
                ..
            }
        ));
        assert!(matches!(
            check(&policy(), &[0x80, INS_VERSION, 0, 0]),
            Decision::Refuse {
                sw: SW_CLA_NOT_SUPPORTED,
                ..
            }
        ));
    }

    #[test]
    fn malformed_apdus_are_refused() {
        let app = Sha256::digest(b"example.org");
        let mut long = register(&app);
        long.push(0);
        let mut short_lc = register(&app);
        short_lc[6] = 63;
        let mut bad_len = authenticate(&app, true);
        bad_len[4 + 1 + 64] = 200;
        for apdu in [
            vec![],
            vec![0, 1, 0],
            long,
            short_lc,
            bad_len,
            vec![0, 1, 0, 0, 0, 0],
        ] {
            assert!(
                matches!(
                    check(&policy(), &apdu),
                    Decision::Refuse {
                        sw: SW_WRONG_DATA,
                        ..
                    }
                ),
                "{apdu:?}"
            );
        }
    }

    #[test]
    fn u2f_off_in_policy_refuses_everything() {
        let p = ClientPolicy::new(
            "t",
            vec![RpPattern::Exact("example.org".into())],
            true,
            true,
            vec![Command::GetInfo],
        );
        assert!(matches!(
            check(&p, &[0, INS_VERSION, 0, 0]),
            Decision::Refuse { .. }
        ));
    }
}
