//! Finding FIDO keys among hidraw devices.
//!
//! A FIDO HID interface declares usage page 0xF1D0, usage 0x01 in its report descriptor, which
//! the kernel exposes at /sys/class/hidraw/hidrawN/device/report_descriptor. We parse just enough
//! of the HID descriptor format to find the top-level usage page and usage.

use std::fs;
use std::path::{Path, PathBuf};

use super::TransportError;

const FIDO_USAGE_PAGE: u16 = 0xF1D0;
const FIDO_USAGE_CTAPHID: u16 = 0x01;

/// One attached FIDO key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The /dev/hidrawN node.
    pub path: PathBuf,
    pub vendor_id: u16,
    pub product_id: u16,
    /// HID_NAME from sysfs, e.g. "Yubico YubiKey OTP+FIDO+CCID".
    pub product: String,
}

/// What the top level of a report descriptor declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReportDescriptorInfo {
    pub usage_page: Option<u16>,
    pub usage: Option<u16>,
}

impl ReportDescriptorInfo {
    pub(crate) fn is_fido(&self) -> bool {
        self.usage_page == Some(FIDO_USAGE_PAGE) && self.usage == Some(FIDO_USAGE_CTAPHID)
    }
}

/// Parse a HID report descriptor far enough to find the usage page and usage that apply to its
/// first top-level collection. Never panics; truncated or garbage input yields `None`s.
pub(crate) fn parse_report_descriptor(bytes: &[u8]) -> ReportDescriptorInfo {
    let mut info = ReportDescriptorInfo::default();
    let mut i = 0;
    while i < bytes.len() {
        let prefix = bytes[i];
        if prefix == 0xFE {
            // Long item: 0xFE, bDataSize, bLongItemTag, data.
            let Some(&size) = bytes.get(i + 1) else { break };
            i += 3 + usize::from(size);
            continue;
        }
        let size = match prefix & 0x03 {
            3 => 4,
            n => usize::from(n),
        };
        let Some(data) = bytes.get(i + 1..i + 1 + size) else {
            break;
        };
        let value = data
            .iter()
            .rev()
            .fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        let item_type = (prefix >> 2) & 0x03;
        let tag = prefix >> 4;
        match (item_type, tag) {
            // Global: Usage Page.
            (1, 0x0) => info.usage_page = u16::try_from(value & 0xFFFF).ok(),
            // Local: Usage. A 4-byte usage carries its own page in the high half.
            (2, 0x0) if info.usage.is_none() => {
                if size == 4 {
                    info.usage_page = u16::try_from(value >> 16).ok();
                }
                info.usage = u16::try_from(value & 0xFFFF).ok();
            }
            // Main: Collection. The first one closes what we need.
            (0, 0xA) => return info,
            _ => {}
        }
        i += 1 + size;
    }
    info
}

/// Enumerate FIDO keys under the real sysfs.
pub fn enumerate() -> Result<Vec<DeviceInfo>, TransportError> {
    enumerate_under(Path::new("/sys/class/hidraw"), Path::new("/dev"))
}

/// Enumerate FIDO keys under a given sysfs class directory (tests point this at a fake tree).
pub(crate) fn enumerate_under(
    sys_class: &Path,
    dev: &Path,
) -> Result<Vec<DeviceInfo>, TransportError> {
    let entries = match fs::read_dir(sys_class) {
        Ok(e) => e,
        // No hidraw class at all (no HID devices, or a container): no keys.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(TransportError::Io(e)),
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let device_dir = entry.path().join("device");
        let Ok(descriptor) = fs::read(device_dir.join("report_descriptor")) else {
            continue;
        };
        if !parse_report_descriptor(&descriptor).is_fido() {
            continue;
        }
        let uevent = fs::read_to_string(device_dir.join("uevent")).unwrap_or_default();
        let (vendor_id, product_id, product) = parse_uevent(&uevent);
        found.push(DeviceInfo {
            path: dev.join(name),
            vendor_id,
            product_id,
            product,
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// HID_ID=0003:00001050:00000407 and HID_NAME=... from a hid device's uevent.
fn parse_uevent(uevent: &str) -> (u16, u16, String) {
    let mut vid = 0;
    let mut pid = 0;
    let mut name = String::new();
    for line in uevent.lines() {
        if let Some(id) = line.strip_prefix("HID_ID=") {
            let parts: Vec<&str> = id.split(':').collect();
            if let [_, v, p] = parts.as_slice() {
                vid = u32::from_str_radix(v, 16)
                    .ok()
                    .and_then(|v| u16::try_from(v).ok())
                    .unwrap_or(0);
                pid = u32::from_str_radix(p, 16)
                    .ok()
                    .and_then(|p| u16::try_from(p).ok())
                    .unwrap_or(0);
            }
        } else if let Some(n) = line.strip_prefix("HID_NAME=") {
            name = n.to_string();
        }
    }
    (vid, pid, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The FIDO interface descriptor YubiKey 5, SoloKey and Nitrokey 3 report.
    const FIDO_DESCRIPTOR: &str =
        "06d0f10901a1010920150026ff007508954081020921150026ff00750895409102c0";
    /// A YubiKey's keyboard (OTP) interface: not FIDO.
    const KEYBOARD_DESCRIPTOR: &str =
        "05010906a101050719e029e71500250175019508810295017508810195057501050819012905910295017503910195067508150025650507190029658100c0";
    /// A FIDO descriptor written with an extended (4-byte) usage, as some firmwares do.
    const FIDO_EXTENDED_USAGE: &str = "0b0100d0f1a1010920150026ff007508954081020921c0";

    #[test]
    fn recognises_real_fido_descriptors() {
        let info = parse_report_descriptor(&hex::decode(FIDO_DESCRIPTOR).unwrap());
        assert_eq!(info.usage_page, Some(0xF1D0));
        assert_eq!(info.usage, Some(0x01));
        assert!(info.is_fido());
        assert!(parse_report_descriptor(&hex::decode(FIDO_EXTENDED_USAGE).unwrap()).is_fido());
    }

    #[test]
    fn rejects_keyboard_truncated_and_garbage_descriptors() {
        let kbd = parse_report_descriptor(&hex::decode(KEYBOARD_DESCRIPTOR).unwrap());
        assert_eq!(kbd.usage_page, Some(0x01));
        assert_eq!(kbd.usage, Some(0x06));
        assert!(!kbd.is_fido());
        let fido = hex::decode(FIDO_DESCRIPTOR).unwrap();
        // Cut in the middle of the usage page item: no usage page is read.
        assert!(!parse_report_descriptor(&fido[..2]).is_fido());
        assert!(!parse_report_descriptor(&[]).is_fido());
        assert!(!parse_report_descriptor(&[0xFE]).is_fido());
        assert!(!parse_report_descriptor(&[0xFF; 40]).is_fido());
    }

    proptest! {
        #[test]
        fn descriptor_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_report_descriptor(&bytes);
        }
    }

    #[test]
    fn enumerates_a_fake_sysfs_tree() {
        let root = std::env::temp_dir().join(format!("ctap-sysfs-{}", rand::random::<u64>()));
        let add = |name: &str, desc: &str, uevent: &str| {
            let d = root.join(name).join("device");
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("report_descriptor"), hex::decode(desc).unwrap()).unwrap();
            fs::write(d.join("uevent"), uevent).unwrap();
        };
        add(
            "hidraw0",
            KEYBOARD_DESCRIPTOR,
            "HID_ID=0003:00001050:00000407\nHID_NAME=Yubico YubiKey OTP+FIDO+CCID\n",
        );
        add("hidraw1", FIDO_DESCRIPTOR, "DRIVER=hid-generic\nHID_ID=0003:00001050:00000407\nHID_NAME=Yubico YubiKey OTP+FIDO+CCID\n");
        add(
            "hidraw2",
            FIDO_DESCRIPTOR,
            "HID_ID=0003:000020A0:000042B2\nHID_NAME=Nitrokey Nitrokey 3\n",
        );
        fs::create_dir_all(root.join("hidraw3")).unwrap(); // no descriptor: skipped
        let found = enumerate_under(&root, Path::new("/dev")).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].path, PathBuf::from("/dev/hidraw1"));
        assert_eq!((found[0].vendor_id, found[0].product_id), (0x1050, 0x0407));
        assert_eq!(found[0].product, "Yubico YubiKey OTP+FIDO+CCID");
        assert_eq!(found[1].product, "Nitrokey Nitrokey 3");
        assert_eq!(found[1].vendor_id, 0x20A0);
    }

    #[test]
    fn missing_sysfs_class_means_no_devices() {
        assert!(
            enumerate_under(Path::new("/nonexistent/hidraw"), Path::new("/dev"))
                .unwrap()
                .is_empty()
        );
    }
}
