//! Command line: `ctap-proxy serve` and `ctap-proxy stdio`.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use clap::{Parser, Subcommand};
use ctap_core::transport::device::DeviceUri;

use crate::audit::Audit;
use crate::backend::Backend;
use crate::policy::{ClientPolicy, Policy};
use crate::server::{Client, Connection, Shared};

/// Exit status: the policy file is missing, untrusted or invalid, or names no section for a
/// client.
pub const EXIT_POLICY: u8 = 3;
/// Exit status: the key cannot be opened.
pub const EXIT_DEVICE: u8 = 4;
/// Exit status: a socket cannot be created, or another runtime failure.
pub const EXIT_RUNTIME: u8 = 1;

/// Most client connections served at once (all sockets together).
const MAX_CONNECTIONS: usize = 64;

/// Hand a FIDO2 security key to a VM, container or sandbox, with per-client rules.
///
/// Clients speak CTAPHID over a byte stream: exactly 64 bytes per HID report in each direction,
/// no other framing (the protocol of ctap-softtoken and of `unix:` device URIs). Every request
/// is decoded strictly, checked against the client's section of the policy file and re-encoded
/// before it reaches the key; every answer is checked and re-encoded before it reaches the
/// client. One audit line per request goes to stderr and to syslog (LOG_AUTHPRIV).
///
/// Exit status: 0 after a stdio client's end of input; 1 runtime failure (a socket); 2 usage;
/// 3 policy file missing, untrusted or invalid, or no section for a client; 4 the key cannot be
/// opened.
#[derive(Debug, Parser)]
#[command(name = "ctap-proxy", version, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve clients on unix sockets until killed.
    ///
    /// Each `--listen` socket is one client section of the policy; every connection to it is a
    /// client of its own (its own channels), under that section's rules.
    Serve(ServeArgs),
    /// Serve one client on stdin/stdout (a qrexec service, `ssh host ctap-proxy stdio`,
    /// `socat`), until the end of input.
    Stdio(StdioArgs),
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The key: `auto` (the first FIDO hidraw device), `hidraw:/dev/hidrawN` or `unix:PATH`.
    #[arg(long, value_name = "URI")]
    pub device: DeviceUri,

    /// The policy file (root-owned, not group/world-writable; see ctap-proxy(1)).
    #[arg(long, value_name = "FILE", default_value = "/etc/ctap/ctap-proxy.toml")]
    pub policy: PathBuf,

    /// Where audit lines go besides stderr: a syslog socket, or `none`.
    #[arg(long, value_name = "PATH", default_value = "/dev/log")]
    pub syslog_socket: String,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: Common,

    /// A socket to serve: `[NAME=]unix:PATH`. NAME is the policy section (`[client.NAME]`);
    /// without it, the socket file's name up to its first `.` (`dev.sock` → `dev`). A stale
    /// socket at PATH is replaced; any other file there is an error. Repeatable.
    #[arg(
        long,
        value_name = "[NAME=]unix:PATH",
        required_unless_present = "uhid"
    )]
    pub listen: Vec<Listen>,

    /// Also show the key to this machine's programs as a HID security key, through uhid:
    /// `[NAME=]PATH` (PATH is normally /dev/uhid; NAME, the policy section, defaults to `uhid`).
    /// Every program using that HID key is the one client NAME.
    #[arg(long, value_name = "[NAME=]PATH", value_parser = parse_uhid)]
    pub uhid: Option<(String, PathBuf)>,

    /// Permissions of the sockets (octal). Whoever can connect gets that client's rules.
    #[arg(long, value_name = "MODE", default_value = "600", value_parser = parse_mode)]
    pub socket_mode: u32,
}

#[derive(Debug, clap::Args)]
pub struct StdioArgs {
    #[command(flatten)]
    pub common: Common,

    /// The policy section (`[client.NAME]`) this client is served under.
    #[arg(long, value_name = "NAME")]
    pub client: String,
}

/// One `--listen` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    pub client: String,
    pub path: PathBuf,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (name, uri) = match s.split_once('=') {
            Some((name, uri)) => (Some(name), uri),
            None => (None, s),
        };
        let path = match uri.strip_prefix("unix:") {
            Some(p) if p.starts_with('/') => PathBuf::from(p),
            Some(_) => return Err(format!("{s}: the socket path must be absolute")),
            None => return Err(format!("{s}: expected [NAME=]unix:PATH")),
        };
        let client = match name {
            Some(n) => n.to_string(),
            None => path
                .file_name()
                .and_then(|f| f.to_str())
                .and_then(|f| f.split('.').next())
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    format!("{s}: cannot name a client after this path: use NAME=unix:PATH")
                })?
                .to_string(),
        };
        if client.is_empty() {
            return Err(format!("{s}: empty client name"));
        }
        Ok(Listen { client, path })
    }
}

fn parse_uhid(s: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = match s.split_once('=') {
        Some((n, p)) => (n, p),
        None => ("uhid", s),
    };
    if name.is_empty() || !path.starts_with('/') {
        return Err(format!(
            "{s}: expected [NAME=]PATH with an absolute PATH, e.g. /dev/uhid"
        ));
    }
    Ok((name.to_string(), PathBuf::from(path)))
}

fn parse_mode(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s, 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| format!("{s}: expected an octal mode such as 600 or 660"))
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message)) => {
            eprintln!("ctap-proxy: {message}");
            ExitCode::from(code)
        }
    }
}

type Failure = (u8, String);

fn start(common: &Common, names: &[&str]) -> Result<(Arc<Shared>, Vec<ClientPolicy>), Failure> {
    let policy = Policy::load(&common.policy).map_err(|e| (EXIT_POLICY, e.to_string()))?;
    let clients = names
        .iter()
        .map(|n| policy.client(n).cloned())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| (EXIT_POLICY, e.to_string()))?;
    let backend = Backend::open(common.device.clone()).map_err(|e| {
        (
            EXIT_DEVICE,
            format!("cannot open the key {}: {e}", common.device),
        )
    })?;
    let syslog = match common.syslog_socket.as_str() {
        "none" => None,
        p => Some(PathBuf::from(p)),
    };
    Ok((Arc::new(Shared::new(backend, Audit { syslog })), clients))
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Command::Stdio(args) => {
            let (shared, clients) = start(&args.common, &[args.client.as_str()])?;
            let policy = clients
                .into_iter()
                .next()
                .ok_or((EXIT_POLICY, "no client".into()))?;
            let dup = |fd: std::os::fd::BorrowedFd<'_>| {
                fd.try_clone_to_owned()
                    .map(File::from)
                    .map_err(|e| (EXIT_RUNTIME, format!("stdio: {e}")))
            };
            let input = dup(std::io::stdin().as_fd())?;
            let output = dup(std::io::stdout().as_fd())?;
            shared.audit.note(&format!(
                "serving client {} on stdin/stdout",
                ctap_core::text::quoted(&policy.name)
            ));
            let client = Client {
                policy,
                connection: 1,
                peer_uid: None,
            };
            Connection::new(input, output, client, shared).run();
            Ok(())
        }
        Command::Serve(args) => {
            let mut names: Vec<&str> = args.listen.iter().map(|l| l.client.as_str()).collect();
            if let Some((name, _)) = &args.uhid {
                names.push(name);
            }
            let (shared, mut clients) = start(&args.common, &names)?;
            let uhid_policy = args.uhid.as_ref().and_then(|_| clients.pop());
            let mut listeners = Vec::new();
            for (listen, policy) in args.listen.iter().zip(clients) {
                listeners.push((
                    bind(&listen.path, args.socket_mode)?,
                    policy,
                    listen.path.clone(),
                ));
            }
            let mut threads = Vec::new();
            if let (Some((_, path)), Some(policy)) = (&args.uhid, uhid_policy) {
                threads.push(start_uhid(path, policy, &shared)?);
            }
            let ids = Arc::new(AtomicU64::new(1));
            let open = Arc::new(AtomicUsize::new(0));
            for (listener, policy, path) in listeners {
                shared.audit.note(&format!(
                    "listening on {} for client {}",
                    path.display(),
                    ctap_core::text::quoted(&policy.name)
                ));
                let shared = Arc::clone(&shared);
                let ids = Arc::clone(&ids);
                let open = Arc::clone(&open);
                threads.push(std::thread::spawn(move || {
                    accept_loop(&listener, &policy, &shared, &ids, &open)
                }));
            }
            for t in threads {
                let _ = t.join();
            }
            Err((EXIT_RUNTIME, "every listener stopped".into()))
        }
    }
}

/// Open the uhid device and serve the HID key it creates as one client.
fn start_uhid(
    path: &std::path::Path,
    policy: ClientPolicy,
    shared: &Arc<Shared>,
) -> Result<std::thread::JoinHandle<()>, Failure> {
    let device = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| {
            (
                EXIT_RUNTIME,
                format!("{}: cannot open uhid: {e}", path.display()),
            )
        })?;
    let (bridge_end, connection_end) =
        UnixStream::pair().map_err(|e| (EXIT_RUNTIME, format!("socketpair: {e}")))?;
    let name = format!("ctap-proxy {}", policy.name);
    shared.audit.note(&format!(
        "serving a uhid HID key ({}) for client {}",
        path.display(),
        ctap_core::text::quoted(&policy.name)
    ));
    let path = path.to_path_buf();
    let audit = shared.audit.clone();
    std::thread::spawn(move || {
        if let Err(e) = crate::uhid::bridge(device, bridge_end, &name) {
            audit.note(&format!("{}: uhid: {e}", path.display()));
        }
    });
    let client = Client {
        policy,
        connection: 0,
        peer_uid: None,
    };
    let shared = Arc::clone(shared);
    Ok(std::thread::spawn(move || {
        serve_stream(connection_end, client, shared)
    }))
}

fn bind(path: &std::path::Path, mode: u32) -> Result<UnixListener, Failure> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        (EXIT_RUNTIME, format!("{}: {what}: {e}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| fail("cannot replace the stale socket", &e))?
        }
        Ok(_) => {
            return Err((
                EXIT_RUNTIME,
                format!(
                    "{}: exists and is not a socket: refusing to replace it",
                    path.display()
                ),
            ))
        }
        Err(_) => {}
    }
    let listener = UnixListener::bind(path).map_err(|e| fail("cannot listen", &e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| fail("cannot set the socket's mode", &e))?;
    Ok(listener)
}

fn accept_loop(
    listener: &UnixListener,
    policy: &ClientPolicy,
    shared: &Arc<Shared>,
    ids: &AtomicU64,
    open: &Arc<AtomicUsize>,
) {
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) => {
                shared.audit.note(&format!("accept: {e}"));
                continue;
            }
        };
        if open.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, Ordering::SeqCst);
            shared.audit.note("too many connections: closing a new one");
            continue;
        }
        let connection = ids.fetch_add(1, Ordering::Relaxed);
        let peer_uid =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()
                .map(|c| c.uid());
        let client = Client {
            policy: policy.clone(),
            connection,
            peer_uid,
        };
        let shared = Arc::clone(shared);
        let open_c = Arc::clone(open);
        let spawned = std::thread::Builder::new()
            .name(format!("client-{connection}"))
            .spawn(move || {
                serve_stream(stream, client, shared);
                open_c.fetch_sub(1, Ordering::SeqCst);
            });
        if let Err(e) = spawned {
            open.fetch_sub(1, Ordering::SeqCst);
            eprintln!("ctap-proxy: cannot start a connection thread: {e}");
        }
    }
}

fn serve_stream(stream: UnixStream, client: Client, shared: Arc<Shared>) {
    // A client that stops reading is dropped rather than holding the key.
    let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(5)));
    let output = match stream.try_clone() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("ctap-proxy: connection {}: {e}", client.connection);
            return;
        }
    };
    Connection::new(stream, output, client, shared).run();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn listen_values() {
        assert_eq!(
            "unix:/run/ctap-proxy/dev.sock".parse::<Listen>().unwrap(),
            Listen {
                client: "dev".into(),
                path: "/run/ctap-proxy/dev.sock".into()
            }
        );
        assert_eq!(
            "vm1=unix:/run/x.sock".parse::<Listen>().unwrap().client,
            "vm1"
        );
        assert!("unix:relative.sock".parse::<Listen>().is_err());
        assert!("/run/x.sock".parse::<Listen>().is_err());
        assert!("=unix:/run/x.sock".parse::<Listen>().is_err());
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert!(parse_mode("999").is_err());
    }
}
