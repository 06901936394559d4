//! Subcommands that talk to a key: `devices`, `enroll`, `pin set|change`.

use std::time::Duration;

use ctap_core::flows::devices::{self, DeviceReport};
use ctap_core::flows::enroll::{enroll as enroll_key, enroll_u2f, EnrollRequest};
use ctap_core::flows::session::OpenedKey;
use ctap_core::store::admin::{self, algorithm_name, uv_name};
use ctap_core::store::config::Policy;
use ctap_core::text::{printable, quoted};
use ctap_core::transport::ctap2::pin::Pin;
use ctap_core::transport::ctap2::{CtapError, CtapStatus};
use ctap_core::transport::device::DeviceUri;
use zeroize::Zeroizing;

use super::{json, say, single_key, single_opened_key, user_of, Context};
use crate::cli::{DevicesArgs, EnrollArgs, PinCommand};
use crate::{Exit, Failure};

/// getInfo needs no touch; a key that takes longer than this is not answering.
const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

pub fn devices(ctx: &Context, args: &DevicesArgs) -> Result<Exit, Failure> {
    // A named --device needs no config; otherwise the config says where to look.
    let uri = match &ctx.device {
        Some(d) => d.clone(),
        None => ctx.policy()?.device,
    };
    let reports = devices::describe_devices(&uri, QUERY_TIMEOUT)?;
    if args.json {
        json(&reports)?;
    } else {
        for (i, r) in reports.iter().enumerate() {
            if i > 0 {
                say("");
            }
            print_device(r);
        }
    }
    if reports.is_empty() {
        let hint = match uri {
            DeviceUri::Auto => "insert a key (or name a virtual one with --device unix:PATH)",
            DeviceUri::Hidraw(_) | DeviceUri::Unix(_) | DeviceUri::UnixList(_) => "",
        };
        return Err(Failure::new(Exit::NoKey, "no security key found", hint));
    }
    Ok(Exit::Ok)
}

fn print_device(r: &DeviceReport) {
    let product = if r.product.is_empty() {
        String::new()
    } else {
        // The product name is the device's to choose.
        format!(": {}", printable(&r.product))
    };
    let ids = match (r.vendor_id, r.product_id) {
        (Some(v), Some(p)) => format!(" ({v:04x}:{p:04x})"),
        _ => String::new(),
    };
    say(format!("{}{product}{ids}", r.uri));
    let row = |k: &str, v: String| say(format!("  {k:<15} {v}"));
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.iter()
                .map(|s| printable(s))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    if let Some(a) = &r.aaguid {
        row("aaguid", a.clone());
        row("versions", list(&r.versions));
        row("extensions", list(&r.extensions));
        let opts: Vec<String> = r.options.iter().map(|(k, v)| format!("{k}={v}")).collect();
        row("options", list(&opts));
        let algs: Vec<String> = r.algorithms.iter().map(|a| a.to_string()).collect();
        row("algorithms", list(&algs));
        let protos: Vec<String> = r.pin_protocols.iter().map(|p| p.to_string()).collect();
        row("pin protocols", list(&protos));
        let pin = match (r.pin_set, r.pin_retries) {
            (Some(true), Some(n)) => format!("set, {n} retries left"),
            (Some(true), None) => "set".to_string(),
            (Some(false), _) => "not set".to_string(),
            (None, _) => "not supported".to_string(),
        };
        row("pin", pin);
        if let Some(m) = r.min_pin_length {
            row("min pin length", m.to_string());
        }
        if let Some(f) = r.firmware_version {
            row("firmware", f.to_string());
        }
    }
    if r.aaguid.is_none() && !r.versions.is_empty() {
        // No getInfo: a key that speaks only CTAP1/U2F.
        row("versions", list(&r.versions));
        row(
            "note",
            "U2F only: enroll and log in without hmac-secret or PIN/UV; no SSH keys".into(),
        );
    }
    if let Some(e) = &r.error {
        row("error", e.clone());
    }
}

pub fn enroll(ctx: &mut Context, args: &EnrollArgs) -> Result<Exit, Failure> {
    let policy = ctx.policy()?;
    let account = user_of(&args.user)?;
    let account_of_record = account.clone();
    let mapping_target = if args.directory {
        Some(super::sssd::mapping_target(&policy, &account, args)?)
    } else {
        None
    };
    let user = account.name().to_string();
    let store = policy.store();
    // Fail on unreadable or insecure files, and on missing privileges, before the key is touched.
    let records = store.load_system_records(&user)?;
    drop(store.lock_state(&user, admin::EDIT_LOCK_WAIT)?);
    let name = match &args.name {
        Some(n) => n.clone(),
        None => admin::default_credential_name(&records),
    };
    let req = EnrollRequest {
        user: account,
        name,
        // None: enroll uses pam://<hostname>.
        rp_id: args.rp_id.clone().or_else(|| policy.rp_id.clone()),
        uv: args.uv.into(),
        pin_policy: policy.pin,
    };
    let record = match single_opened_key(&policy.device, policy.touch_timeout())? {
        OpenedKey::Fido2(mut key) => enroll_key(&store, &req, &mut key, &mut ctx.prompter)?,
        OpenedKey::U2f(mut key) => {
            let record = enroll_u2f(&store, &req, &mut key, &mut ctx.prompter)?;
            say(
                "This key speaks only U2F: its credential has no hmac-secret and no PIN/UV \
                 (a policy with require_hmac_secret = true refuses it).",
            );
            record
        }
    };
    let counter = store
        .read_state(&user)
        .ok()
        .and_then(|s| s.get(&record.credential_id).map(|c| c.sign_count));
    say(format!("Enrolled {} for {user}.", quoted(&record.name)));
    let row = |k: &str, v: &str| say(format!("  {k:<18} {v}"));
    row("credential id", &record.id_b64());
    row("relying party", record.rp_id.as_str());
    row("algorithm", algorithm_name(record.public_key.algorithm()));
    row("aaguid", &record.aaguid);
    row("user verification", uv_name(record.user_verification));
    row("hmac-secret", if record.hmac_secret { "yes" } else { "no" });
    row("protocol", record.protocol.name());
    if let Some(c) = counter {
        row("counter", &c.to_string());
    }
    row("records", &store.records_path(&user)?.display().to_string());
    row("state", &store.state_path(&user)?.display().to_string());
    say(format!("Check it with: ctap-enroll test --user {user}"));
    if let Some(target) = &mapping_target {
        // The mapping for the directory (SSSD/FreeIPA format): every host that reads it counts
        // the key's signatures in its own state from its first login on.
        if args.write {
            target.write(&account_of_record, args, &record)?;
        } else {
            say(target.ldif(&record)?);
        }
    }
    Ok(Exit::Ok)
}

/// Ask for a new PIN twice; `None` if the user gave none or the two differ (already reported).
fn new_pin(ctx: &mut Context) -> Result<Pin, Failure> {
    let first = ctx
        .prompter
        .read_secret("New PIN: ")
        .ok_or_else(|| Failure::new(Exit::Failed, "no PIN was entered", "run it again"))?;
    let second: Zeroizing<String> = ctx
        .prompter
        .read_secret("Repeat the new PIN: ")
        .ok_or_else(|| Failure::new(Exit::Failed, "no PIN was entered", "run it again"))?;
    if *first != *second {
        return Err(Failure::new(
            Exit::Failed,
            "the two PINs differ",
            "run it again and type the same PIN twice",
        ));
    }
    Ok(Pin::new(first.to_string())?)
}

pub fn pin(ctx: &mut Context, cmd: &PinCommand) -> Result<Exit, Failure> {
    let policy: Policy = ctx.policy()?;
    let mut key = single_key(&policy.device, policy.touch_timeout())?;
    if key.info().option("clientPin").is_none() {
        return Err(Failure::new(
            Exit::Failed,
            "this security key does not support a PIN",
            "",
        ));
    }
    match cmd {
        PinCommand::Set => {
            if key.info().pin_set() {
                return Err(Failure::new(
                    Exit::Failed,
                    "the key already has a PIN",
                    "change it with `ctap-enroll pin change`",
                ));
            }
            let new = new_pin(ctx)?;
            key.set_pin(&new)?;
            say("PIN set.");
        }
        PinCommand::Change => {
            if !key.info().pin_set() {
                return Err(Failure::new(
                    Exit::Failed,
                    "the key has no PIN yet",
                    "set one with `ctap-enroll pin set`",
                ));
            }
            let retries = key.pin_retries()?.retries;
            if retries == 0 {
                return Err(CtapError::Status(CtapStatus::PinBlocked).into());
            }
            let current = ctx
                .prompter
                .read_secret(&format!("Current PIN ({retries} tries left): "))
                .ok_or_else(|| Failure::new(Exit::Failed, "no PIN was entered", "run it again"))?;
            let current = Pin::new(current.to_string())?;
            let new = new_pin(ctx)?;
            match key.change_pin(&current, &new) {
                Ok(()) => say("PIN changed."),
                Err(CtapError::Status(CtapStatus::PinInvalid)) => {
                    let left = key.pin_retries().map(|r| r.retries).unwrap_or(0);
                    return Err(Failure::new(
                        Exit::Failed,
                        format!("wrong current PIN ({left} tries left)"),
                        "try again with the right PIN",
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Exit::Ok)
}
