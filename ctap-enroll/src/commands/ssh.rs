//! `ssh` and `export-ssh`: the user's own SSH credentials, for ctap-sshagent and OpenSSH.
//! Everything but the terminal is `ctap_core::ssh`.

use std::path::PathBuf;

use ctap_core::flows::session::{keepalive_for, Prompter};
use ctap_core::flows::uv;
use ctap_core::ssh::{self, SkAlgorithm, SkKey, SshEnrollment, SshError};
use ctap_core::store::config::PinPolicy;
use ctap_core::store::credential::load_credential_file;
use ctap_core::store::fs::Ownership;
use ctap_core::transport::ctap2::pin::permission;

use super::{say, single_ssh_key, Context};
use crate::cli::{CredentialsArgs, ExportSshArgs, SshArgs, SshKeyType};
use crate::{Exit, Failure};

fn credentials_path(arg: &Option<PathBuf>) -> Result<PathBuf, Failure> {
    match arg {
        Some(p) => Ok(p.clone()),
        None => ssh::user_credentials_path().ok_or_else(|| {
            Failure::new(
                Exit::Usage,
                "cannot find your home directory",
                "set HOME or pass --credentials FILE",
            )
        }),
    }
}

fn ssh_failure(e: SshError) -> Failure {
    match e {
        SshError::Ctap(c) => c.into(),
        SshError::Refused(m) => Failure::new(Exit::Usage, m.to_string(), ""),
        SshError::Unsupported(m) => Failure::new(Exit::Usage, m.to_string(), ""),
        SshError::Malformed(m) => Failure::new(Exit::Failed, m.to_string(), ""),
        SshError::BadAssertion(m) => Failure::new(Exit::Failed, m.to_string(), ""),
        e @ SshError::Rejected(_) => Failure::new(Exit::Failed, e.to_string(), ""),
    }
}

pub fn enroll(ctx: &mut Context, args: &SshArgs) -> Result<Exit, Failure> {
    let path = credentials_path(&args.credentials)?;
    let owner = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
    };
    // Refuse an insecure or malformed file, and a taken name, before the key is touched.
    let existing = match load_credential_file(&path, owner) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => Default::default(),
        Err(e) => return Err(e.into()),
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => (1..)
            .map(|i| format!("ssh-{i}"))
            .find(|n| existing.find(n).is_none())
            .unwrap_or_else(|| "ssh".into()),
    };
    if existing.find(&name).is_some() {
        return Err(Failure::new(
            Exit::Failed,
            format!("{}: a credential named {name:?} exists", path.display()),
            "choose another --name",
        ));
    }
    if let Some(k) = &args.write_key_file {
        if k.exists() {
            return Err(Failure::new(
                Exit::Failed,
                format!("{} exists", k.display()),
                "choose another --write-key-file path",
            ));
        }
    }
    // No root config is needed for one's own SSH key: --device, else the config's, else auto.
    let device = match &ctx.device {
        Some(d) => d.clone(),
        None => ctx
            .policy()
            .map(|p| p.device)
            .unwrap_or(ctap_core::transport::device::DeviceUri::Auto),
    };
    let mut key = single_ssh_key(&device, ctap_core::transport::ctap2::DEFAULT_TOUCH_TIMEOUT)?;
    // The planner decides how the user is verified (built-in UV, or the PIN through the
    // terminal), as for a login or an enrollment.
    let required = ssh::ssh_enrollment_needs_uv(key.info(), args.verify_required);
    let plan = uv::plan(key.info(), required, PinPolicy::Prompt).map_err(|_| {
        Failure::new(
            Exit::Failed,
            "--verify-required needs a key with a PIN or built-in verification",
            "set one with `ctap-enroll pin set`",
        )
    })?;
    let verification = uv::obtain(
        &mut key,
        plan,
        &args.application,
        permission::MAKE_CREDENTIAL,
        &mut ctx.prompter,
    )
    .map_err(|e| match e {
        uv::UvError::Device(d) => Failure::from(d),
        uv::UvError::Refused(r) => Failure::new(Exit::Failed, r.to_string(), ""),
    })?;
    let req = SshEnrollment {
        application: args.application.clone(),
        algorithm: match args.key_type {
            SshKeyType::EcdsaSk => SkAlgorithm::EcdsaP256,
            SshKeyType::Ed25519Sk => SkAlgorithm::Ed25519,
        },
        no_touch_required: args.no_touch_required,
        verify_required: args.verify_required,
        resident: args.resident,
        user: String::new(),
        name,
    };
    ctx.prompter.touch_cue("Touch your security key");
    let record = {
        let mut on_keepalive = keepalive_for(&mut ctx.prompter);
        ssh::enroll_ssh_credential(&mut key, &req, &verification, &mut on_keepalive)
            .map_err(ssh_failure)?
    };
    let sk = SkKey::from_record(&record).map_err(ssh_failure)?;
    ssh::record_ssh_credential(&path, record)?;
    if let Some(k) = &args.write_key_file {
        ssh::write_key_files(k, &sk).map_err(|e| Failure::new(Exit::Failed, e.to_string(), ""))?;
    }
    say(sk.authorized_keys_line());
    Ok(Exit::Ok)
}

pub fn export(args: &ExportSshArgs) -> Result<Exit, Failure> {
    let path = credentials_path(&args.credentials)?;
    let owner = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
    };
    let file = load_credential_file(&path, owner)?;
    let Some(name) = &args.name else {
        for line in ssh::export_ssh_lines(&file).map_err(ssh_failure)? {
            say(line);
        }
        return Ok(Exit::Ok);
    };
    let record = file
        .credentials
        .iter()
        .find(|r| r.name == *name && ssh::is_ssh_record(r))
        .ok_or_else(|| {
            Failure::new(
                Exit::Failed,
                format!("{}: no SSH credential named {name:?}", path.display()),
                "`ctap-enroll export-ssh` lists them (the comment is the name)",
            )
        })?;
    let sk = SkKey::from_record(record).map_err(ssh_failure)?;
    if let Some(k) = &args.write_key_file {
        ssh::write_key_files(k, &sk).map_err(|e| Failure::new(Exit::Failed, e.to_string(), ""))?;
    }
    say(sk.authorized_keys_line());
    Ok(Exit::Ok)
}

/// `load-resident-ssh`: the key's discoverable `ssh:` credentials into the user's file.
pub fn load_resident(ctx: &mut Context, args: &CredentialsArgs) -> Result<Exit, Failure> {
    use ctap_core::store::credential::{CredentialRecord, EnrolledKey, RpId, UvRequirement};
    let path = credentials_path(&args.credentials)?;
    let owner = Ownership {
        uid: nix::unistd::geteuid().as_raw(),
    };
    let mut existing = match load_credential_file(&path, owner) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => Default::default(),
        Err(e) => return Err(e.into()),
    };
    let device = match &ctx.device {
        Some(d) => d.clone(),
        None => ctx
            .policy()
            .map(|p| p.device)
            .unwrap_or(ctap_core::transport::device::DeviceUri::Auto),
    };
    let mut key = single_ssh_key(&device, ctap_core::transport::ctap2::DEFAULT_TOUCH_TIMEOUT)?;
    if !key.info().pin_set() {
        return Err(Failure::new(
            Exit::Failed,
            "the security key has no PIN, and listing its credentials needs one",
            "set one with `ctap-enroll pin set`",
        ));
    }
    // The same rule as every other PIN: never spend the last try.
    match key.pin_retries()?.retries {
        0 => {
            return Err(Failure::from(
                ctap_core::transport::ctap2::CtapError::Status(
                    ctap_core::transport::ctap2::CtapStatus::PinBlocked,
                ),
            ))
        }
        1 => {
            return Err(Failure::new(
                Exit::Failed,
                uv::UvRefusal::LastRetry.to_string(),
                "",
            ))
        }
        _ => {}
    }
    let pin = ctx
        .prompter
        .request_pin(ctap_core::text::DEFAULT_PIN_PROMPT)
        .ok_or_else(|| Failure::new(Exit::Failed, "no PIN was entered", ""))?;
    let token = key.pin_token(&pin, permission::CREDENTIAL_MANAGEMENT, None)?;
    let found = key.resident_credentials(&token, &|rp| rp.starts_with("ssh:"))?;
    let aaguid = key.info().aaguid_string();
    let mut added = 0;
    for cred in found {
        if existing
            .credentials
            .iter()
            .any(|c| c.credential_id == cred.credential_id)
        {
            continue;
        }
        let name = (1..)
            .map(|i| format!("resident-{i}"))
            .find(|n| existing.find(n).is_none())
            .unwrap_or_else(|| "resident".into());
        let bad = |what: String| Failure::new(Exit::Failed, what, "");
        let record = CredentialRecord {
            name,
            credential_id: cred.credential_id,
            rp_id: RpId::parse(&cred.rp_id)
                .map_err(|e| bad(format!("the key lists RP ID {:?}: {e}", cred.rp_id)))?,
            public_key: EnrolledKey::new(cred.public_key)
                .map_err(|e| bad(format!("the key lists an unusable public key: {e}")))?,
            aaguid: aaguid.clone(),
            // verify-required travels on the key as credProtect level 3 (what `ctap-enroll ssh
            // --resident --verify-required` and OpenSSH set). no-touch-required has no such
            // place, so it is not restored (OpenSSH's `ssh-keygen -K` does not either).
            user_verification: if cred.cred_protect
                == Some(ctap_core::ssh::CRED_PROTECT_UV_REQUIRED)
            {
                UvRequirement::Required
            } else {
                UvRequirement::Discouraged
            },
            hmac_secret: false,
            created: String::new(),
            no_touch_required: false,
            protocol: ctap_core::store::credential::Protocol::Fido2,
        };
        let sk = SkKey::from_record(&record).map_err(ssh_failure)?;
        ssh::record_ssh_credential(&path, record.clone())?;
        existing.credentials.push(record);
        say(sk.authorized_keys_line());
        added += 1;
    }
    eprintln!("{added} resident SSH key(s) loaded into {}", path.display());
    Ok(Exit::Ok)
}
