//! The uhid frontend: a virtual HID security key on this machine (`/dev/uhid`), so programs
//! that only know HID keys (browsers) can use the proxy. [`bridge`] turns uhid events into the
//! 64-byte-report stream a [`crate::server::Connection`] serves, and back: UHID_OUTPUT reports
//! (what the program wrote to the hidraw node) go to the connection, the connection's reports go
//! back as UHID_INPUT2. All programs using the virtual key are one client, each on its own
//! CTAPHID channels, under one policy section.
//!
//! `struct uhid_event` (linux/uhid.h) is packed, host-endian, 4376 bytes: a u32 type and a union
//! whose largest member is UHID_CREATE2's request.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::hid::{Report, REPORT_SIZE};

/// sizeof(struct uhid_event).
pub const EVENT_SIZE: usize = 4 + 128 + 64 + 64 + 2 + 2 + 4 * 4 + 4096;

pub const UHID_DESTROY: u32 = 1;
pub const UHID_START: u32 = 2;
pub const UHID_STOP: u32 = 3;
pub const UHID_OPEN: u32 = 4;
pub const UHID_CLOSE: u32 = 5;
pub const UHID_OUTPUT: u32 = 6;
pub const UHID_CREATE2: u32 = 11;
pub const UHID_INPUT2: u32 = 12;

const BUS_USB: u16 = 0x03;
/// pid.codes' open-source vendor ID and its test product: no real vendor's IDs are claimed.
const VENDOR: u32 = 0x1209;
const PRODUCT: u32 = 0x0001;

/// The FIDO HID report descriptor (CTAP 2.1 §11.2.8.1): usage page 0xF1D0, usage CTAPHID,
/// 64-byte input and output reports, no report IDs.
pub const FIDO_REPORT_DESCRIPTOR: [u8; 34] = [
    0x06, 0xD0, 0xF1, // Usage Page (FIDO Alliance)
    0x09, 0x01, // Usage (CTAPHID)
    0xA1, 0x01, // Collection (Application)
    0x09, 0x20, //   Usage (Input Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x81, 0x02, //   Input (Data, Var, Abs)
    0x09, 0x21, //   Usage (Output Report Data)
    0x15, 0x00, //   Logical Minimum (0)
    0x26, 0xFF, 0x00, //   Logical Maximum (255)
    0x75, 0x08, //   Report Size (8)
    0x95, 0x40, //   Report Count (64)
    0x91, 0x02, //   Output (Data, Var, Abs)
    0xC0, // End Collection
];

fn event(kind: u32) -> Vec<u8> {
    let mut e = vec![0u8; EVENT_SIZE];
    e[..4].copy_from_slice(&kind.to_ne_bytes());
    e
}

/// UHID_CREATE2: a USB FIDO key named `name` (cut to 127 bytes).
pub fn create2(name: &str) -> Vec<u8> {
    let mut e = event(UHID_CREATE2);
    let name = &name.as_bytes()[..name.len().min(127)];
    e[4..4 + name.len()].copy_from_slice(name);
    let phys = b"ctap-proxy";
    e[132..132 + phys.len()].copy_from_slice(phys);
    e[260..262].copy_from_slice(&(FIDO_REPORT_DESCRIPTOR.len() as u16).to_ne_bytes());
    e[262..264].copy_from_slice(&BUS_USB.to_ne_bytes());
    e[264..268].copy_from_slice(&VENDOR.to_ne_bytes());
    e[268..272].copy_from_slice(&PRODUCT.to_ne_bytes());
    // version, country: 0.
    e[280..280 + FIDO_REPORT_DESCRIPTOR.len()].copy_from_slice(&FIDO_REPORT_DESCRIPTOR);
    e
}

/// UHID_INPUT2: one report to the programs reading the hidraw node.
pub fn input2(report: &Report) -> Vec<u8> {
    let mut e = event(UHID_INPUT2);
    e[4..6].copy_from_slice(&(REPORT_SIZE as u16).to_ne_bytes());
    e[6..6 + REPORT_SIZE].copy_from_slice(report);
    e
}

pub fn destroy() -> Vec<u8> {
    event(UHID_DESTROY)
}

/// An event from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A program wrote a report: 64 bytes (a write of another size is not a CTAPHID report).
    Output(Report),
    /// An output report of the wrong size.
    BadOutput(usize),
    Other(u32),
}

/// Read one event (as the kernel delivers it: one per read).
pub fn parse(buf: &[u8]) -> Option<Event> {
    let kind = u32::from_ne_bytes(buf.get(..4)?.try_into().ok()?);
    if kind != UHID_OUTPUT {
        return Some(Event::Other(kind));
    }
    // struct uhid_output_req { __u8 data[4096]; __u16 size; __u8 rtype; }
    let size = usize::from(u16::from_ne_bytes(buf.get(4100..4102)?.try_into().ok()?));
    if size != REPORT_SIZE {
        return Some(Event::BadOutput(size));
    }
    let mut r = [0u8; REPORT_SIZE];
    r.copy_from_slice(buf.get(4..4 + REPORT_SIZE)?);
    Some(Event::Output(r))
}

/// Move reports between the uhid device and `stream` (the connection's end) until the stream
/// ends; then destroy the device.
pub fn bridge<U, S>(mut uhid: U, mut stream: S, name: &str) -> io::Result<()>
where
    U: Read + Write + AsFd,
    S: Read + Write + AsFd,
{
    uhid.write_all(&create2(name))?;
    let mut event_buf = vec![0u8; EVENT_SIZE];
    let mut report = [0u8; REPORT_SIZE];
    let mut filled = 0;
    let result = loop {
        let (from_uhid, from_stream) = match wait2(&uhid, &stream, None) {
            Ok(r) => r,
            Err(e) => break Err(e),
        };
        if from_uhid {
            let n = match uhid.read(&mut event_buf) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            };
            if let Some(Event::Output(r)) = parse(&event_buf[..n]) {
                if let Err(e) = stream.write_all(&r) {
                    break Err(e);
                }
            }
        }
        if from_stream {
            match stream.read(&mut report[filled..]) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    filled += n;
                    if filled == REPORT_SIZE {
                        filled = 0;
                        if let Err(e) = uhid.write_all(&input2(&report)) {
                            break Err(e);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        }
    };
    let _ = uhid.write_all(&destroy());
    result
}

fn wait2(a: &impl AsFd, b: &impl AsFd, timeout: Option<Duration>) -> io::Result<(bool, bool)> {
    let timeout = timeout.map_or(PollTimeout::NONE, |t| {
        PollTimeout::try_from(t.as_millis()).unwrap_or(PollTimeout::MAX)
    });
    let mut fds = [
        PollFd::new(a.as_fd(), PollFlags::POLLIN),
        PollFd::new(b.as_fd(), PollFlags::POLLIN),
    ];
    loop {
        match poll(&mut fds, timeout) {
            Ok(_) => break,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let fired = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
    Ok((fired(&fds[0]), fired(&fds[1])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
    use std::fs::File;
    use std::os::unix::net::UnixStream;

    /// A socketpair standing in for /dev/uhid: SOCK_SEQPACKET keeps one event per read, as the
    /// character device does. (No machine here has /dev/uhid.)
    fn fake_uhid() -> (File, File) {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        (File::from(a), File::from(b))
    }

    fn read_event(kernel: &mut File) -> Vec<u8> {
        let mut buf = vec![0u8; EVENT_SIZE + 16];
        let n = kernel.read(&mut buf).unwrap();
        buf.truncate(n);
        buf
    }

    fn output(report: &Report, size: u16) -> Vec<u8> {
        let mut e = event(UHID_OUTPUT);
        e[4..4 + REPORT_SIZE].copy_from_slice(report);
        e[4100..4102].copy_from_slice(&size.to_ne_bytes());
        e[4102] = 1; // UHID_OUTPUT_REPORT
        e
    }

    #[test]
    fn event_size_is_the_kernels() {
        // linux/uhid.h: struct uhid_event is packed; its union's largest member is
        // uhid_create2_req (name 128, phys 64, uniq 64, rd_size, bus, vendor, product,
        // version, country, rd_data 4096).
        assert_eq!(EVENT_SIZE, 4376);
        assert_eq!(create2("x").len(), EVENT_SIZE);
    }

    #[test]
    fn bridge_creates_a_fido_device_and_moves_reports_both_ways() {
        let (mut kernel, device) = fake_uhid();
        let (proxy_end, mut connection) = UnixStream::pair().unwrap();
        let t = std::thread::spawn(move || bridge(device, proxy_end, "ctap-proxy test"));

        let create = read_event(&mut kernel);
        assert_eq!(create.len(), EVENT_SIZE);
        assert_eq!(
            u32::from_ne_bytes(create[..4].try_into().unwrap()),
            UHID_CREATE2
        );
        assert_eq!(&create[4..19], b"ctap-proxy test");
        assert_eq!(create[19], 0);
        assert_eq!(u16::from_ne_bytes([create[260], create[261]]), 34);
        assert_eq!(u16::from_ne_bytes([create[262], create[263]]), BUS_USB);
        assert_eq!(&create[280..314], &FIDO_REPORT_DESCRIPTOR);

        // A program writes an INIT report to the hidraw node: the connection reads it.
        let mut init = [0u8; REPORT_SIZE];
        init[..5].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x86]);
        init[6] = 8;
        kernel.write_all(&output(&init, 64)).unwrap();
        // Another size is not a report and goes nowhere.
        kernel.write_all(&output(&init, 65)).unwrap();
        kernel.write_all(&event(UHID_OPEN)).unwrap();
        let mut got = [0u8; REPORT_SIZE];
        connection.read_exact(&mut got).unwrap();
        assert_eq!(got, init);

        // The connection answers in two pieces: one UHID_INPUT2 with the whole report.
        let mut answer = [0u8; REPORT_SIZE];
        answer[..5].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF, 0x86]);
        answer[63] = 0x5A;
        connection.write_all(&answer[..10]).unwrap();
        connection.write_all(&answer[10..]).unwrap();
        let input = read_event(&mut kernel);
        assert_eq!(
            u32::from_ne_bytes(input[..4].try_into().unwrap()),
            UHID_INPUT2
        );
        assert_eq!(u16::from_ne_bytes([input[4], input[5]]), 64);
        assert_eq!(&input[6..70], &answer);

        // The connection ends: the device is destroyed.
        drop(connection);
        let last = read_event(&mut kernel);
        assert_eq!(
            u32::from_ne_bytes(last[..4].try_into().unwrap()),
            UHID_DESTROY
        );
        t.join().unwrap().unwrap();
        // Nothing but those three events came: the device end is closed now.
        let mut rest = [0u8; 16];
        assert_eq!(kernel.read(&mut rest).unwrap(), 0);
    }

    #[test]
    fn parse_rejects_short_buffers() {
        assert_eq!(parse(&[1, 0]), None);
        assert_eq!(parse(&event(UHID_START)), Some(Event::Other(UHID_START)));
        assert_eq!(parse(&event(UHID_OUTPUT)[..100]), None);
    }
}
