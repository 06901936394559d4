//! The library's enroll-and-assert round trip against a key named by URI, printing each step.
//! Used by `scripts/demo`: `roundtrip unix:/path/to/key.sock`.

use std::process::ExitCode;

use ctap_core::flows::session::open_authenticators;
use ctap_core::transport::ctap2::cose::Algorithm;
use ctap_core::transport::ctap2::ext::hmac_secret::HmacSalts;
use ctap_core::transport::ctap2::{GetAssertionRequest, MakeCredentialRequest};
use ctap_core::transport::ctaphid::{KeepaliveStatus, WaitDecision};
use sha2::{Digest, Sha256};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("roundtrip: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "auto".into())
        .parse()?;
    let rp = "pam://demo";
    let mut cue = |s: KeepaliveStatus| {
        if s == KeepaliveStatus::UpNeeded {
            eprintln!("    (key asks for a touch)");
        }
        WaitDecision::Continue
    };
    println!("[1] open {uri} and getInfo");
    let mut keys = open_authenticators(&uri, std::time::Duration::from_secs(30))?;
    let key = &mut keys[0];
    let info = key.info().clone();
    println!(
        "    versions {:?}, aaguid {}, extensions {:?}, PIN set: {}",
        info.versions,
        info.aaguid_string(),
        info.extensions,
        info.pin_set()
    );

    println!(
        "[2] makeCredential rp={rp} user=demo (ES256, hmac-secret, credProtect=2); touch your key"
    );
    let made = key.make_credential(
        &MakeCredentialRequest {
            client_data_hash: rand::random(),
            rp_id: rp.into(),
            rp_name: None,
            user_id: b"demo".to_vec(),
            user_name: "demo".into(),
            user_display_name: None,
            algorithms: vec![Algorithm::Es256],
            exclude_list: vec![],
            resident_key: false,
            user_verification: false,
            hmac_secret: true,
            cred_protect: Some(2),
        },
        None,
        &mut cue,
    )?;
    let cred = made.credential().clone();
    println!(
        "    credential id {}… ({} bytes), attestation fmt {:?}, hmac-secret on: {}",
        &hex(&cred.credential_id)[..16],
        cred.credential_id.len(),
        made.fmt,
        made.hmac_secret_enabled()
    );

    for round in 1..=2 {
        let cdh: [u8; 32] = rand::random();
        println!(
            "[{}] getAssertion with hmac-secret salt; touch your key",
            2 + round
        );
        let a = key.get_assertion(
            &GetAssertionRequest {
                rp_id: rp.into(),
                client_data_hash: cdh,
                allow_list: vec![cred.credential_id.clone()],
                user_presence: true,
                user_verification: false,
                hmac_secret: Some(HmacSalts {
                    salt1: [7; 32],
                    salt2: None,
                }),
            },
            None,
            &mut cue,
        )?;
        let signed = [a.auth_data.raw.as_slice(), &cdh].concat();
        let ok = cred.public_key.verify(&signed, &a.signature);
        let rp_ok = a.auth_data.rp_id_hash == <[u8; 32]>::from(Sha256::digest(rp.as_bytes()));
        let out = a
            .hmac_secret
            .as_ref()
            .and_then(|h| h.as_ref().ok())
            .map(|h| hex(&Sha256::digest(&h.output1[..]))[..16].to_string())
            .unwrap_or_default();
        println!(
            "    signature verifies with the enrolled key: {ok}; rpIdHash ok: {rp_ok}; UP: {}; counter: {}; SHA-256(hmac output): {out}…",
            a.auth_data.flags.user_present(),
            a.auth_data.sign_count
        );
        if !ok || !rp_ok {
            return Err("verification failed".into());
        }
    }
    println!("round trip complete");
    Ok(())
}
