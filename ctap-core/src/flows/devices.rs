//! What `ctap-enroll devices` shows about each attached key: a flow, since it opens the keys
//! (getInfo, PIN retries), kept apart from the record edits in [`crate::store::admin`].

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::flows::session::{open_keys, OpenedKey};
use crate::transport::ctap1::U2F_V2;
use crate::transport::ctap2::CtapError;
use crate::transport::device::{self, DeviceUri};

/// One attached key, as `devices` shows it (`fido2-token -L` and `-I` together).
#[derive(Debug, Clone, Serialize)]
pub struct DeviceReport {
    /// The URI that names this key for `--device` and root's config.
    pub uri: String,
    pub product: String,
    pub vendor_id: Option<u16>,
    pub product_id: Option<u16>,
    pub aaguid: Option<String>,
    pub versions: Vec<String>,
    pub extensions: Vec<String>,
    pub options: BTreeMap<String, bool>,
    pub algorithms: Vec<&'static str>,
    pub pin_protocols: Vec<u64>,
    pub pin_set: Option<bool>,
    pub pin_retries: Option<u64>,
    pub min_pin_length: Option<u64>,
    pub firmware_version: Option<u64>,
    /// Set when the key could not be queried; the other fields then say what is known.
    pub error: Option<String>,
}

impl DeviceReport {
    fn empty(uri: String, product: String, ids: Option<(u16, u16)>) -> Self {
        DeviceReport {
            uri,
            product,
            vendor_id: ids.map(|i| i.0),
            product_id: ids.map(|i| i.1),
            aaguid: None,
            versions: Vec::new(),
            extensions: Vec::new(),
            options: BTreeMap::new(),
            algorithms: Vec::new(),
            pin_protocols: Vec::new(),
            pin_set: None,
            pin_retries: None,
            min_pin_length: None,
            firmware_version: None,
            error: None,
        }
    }
}

fn cose_name(id: i64) -> &'static str {
    match id {
        crate::transport::ctap2::cose::ALG_ES256 => "es256",
        crate::transport::ctap2::cose::ALG_EDDSA => "eddsa",
        -257 => "rs256",
        -35 => "es384",
        _ => "other",
    }
}

/// Fill `report` from the key's getInfo (and PIN retries). Only opening the key fails the call;
/// a later failure is recorded in `report.error`.
fn query(uri: &DeviceUri, report: &mut DeviceReport, timeout: Duration) -> Result<(), CtapError> {
    let mut keys = open_keys(uri, timeout, None)?;
    let key = match keys.first_mut() {
        Some(OpenedKey::Fido2(key)) => key,
        // A U2F-only key has no getInfo: its version is all there is to show.
        Some(OpenedKey::U2f(_)) => {
            report.versions = vec![String::from_utf8_lossy(U2F_V2).into_owned()];
            return Ok(());
        }
        None => {
            return Err(CtapError::Hid(
                crate::transport::device::TransportError::NoDevice.into(),
            ))
        }
    };
    let info = key.info().clone();
    report.aaguid = Some(info.aaguid_string());
    report.versions = info.versions.clone();
    report.extensions = info.extensions.clone();
    report.options = info.options.clone();
    report.algorithms = info.algorithms.iter().map(|a| cose_name(*a)).collect();
    report.pin_protocols = info.pin_uv_auth_protocols.clone();
    report.pin_set = info.option("clientPin");
    report.min_pin_length = info.min_pin_length;
    report.firmware_version = info.firmware_version;
    if info.pin_set() {
        match key.pin_retries() {
            Ok(r) => report.pin_retries = Some(r.retries),
            Err(e) => report.error = Some(format!("reading PIN retries: {e}")),
        }
    }
    Ok(())
}

/// Describe every key `uri` names: each attached FIDO key for `auto`, else the one named.
/// With `auto`, a key that cannot be queried is listed with its error rather than hidden; a named
/// key that cannot be opened is an error.
pub fn describe_devices(
    uri: &DeviceUri,
    timeout: Duration,
) -> Result<Vec<DeviceReport>, CtapError> {
    match uri {
        DeviceUri::Auto => {
            let found = device::enumerate().map_err(|e| CtapError::Hid(e.into()))?;
            Ok(found
                .into_iter()
                .map(|d| {
                    let one = DeviceUri::Hidraw(d.path.clone());
                    let mut r = DeviceReport::empty(
                        one.to_string(),
                        d.product.clone(),
                        Some((d.vendor_id, d.product_id)),
                    );
                    if let Err(e) = query(&one, &mut r, timeout) {
                        r.error = Some(e.to_string());
                    }
                    r
                })
                .collect())
        }
        DeviceUri::UnixList(_) => {
            let mut all = Vec::new();
            for one in uri.each() {
                all.extend(describe_devices(&one, timeout)?);
            }
            Ok(all)
        }
        DeviceUri::Hidraw(_) | DeviceUri::Unix(_) => {
            let product = match uri {
                DeviceUri::Unix(_) => "virtual key (unix socket)".to_string(),
                DeviceUri::Hidraw(_) | DeviceUri::Auto | DeviceUri::UnixList(_) => String::new(),
            };
            let mut r = DeviceReport::empty(uri.to_string(), product, None);
            query(uri, &mut r, timeout)?;
            Ok(vec![r])
        }
    }
}
