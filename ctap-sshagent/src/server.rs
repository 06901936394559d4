//! The listening socket and its life: choose or inherit the socket, daemonise, print the
//! environment, serve each connection on its own thread, exit cleanly on SIGTERM.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, Signal};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use zeroize::Zeroizing;

use crate::agent::{Agent, Config, Connection};
use crate::cli::Args;
use crate::device::{DeviceConfig, TokenCache};
use crate::error::ServerError;
use crate::log;
use crate::protocol::{Response, MAX_MESSAGE};

/// Set in the background copy started by the foreground one, which prints the environment.
const CHILD_ENV: &str = "CTAP_SSHAGENT_BACKGROUND";
/// A started message must arrive whole within this; a stalled client then gets SSH_AGENT_FAILURE
/// and is disconnected.
const MESSAGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; more are closed at once (each holds a thread).
const MAX_CONNECTIONS: usize = 64;

pub fn run(args: Args) -> i32 {
    match serve(args) {
        Ok(()) => 0,
        Err(e) => {
            log(e);
            1
        }
    }
}

fn serve(args: Args) -> Result<(), ServerError> {
    let uid = nix::unistd::geteuid().as_raw();
    let uri = args.device.parse().map_err(ServerError::BadDevice)?;
    let askpass = args
        .askpass
        .clone()
        .or_else(|| std::env::var_os("SSH_ASKPASS").map(PathBuf::from));
    let credentials = match &args.credentials {
        Some(p) => p.clone(),
        None => ctap_core::ssh::user_credentials_path().ok_or(ServerError::NoHome)?,
    };
    let timeout = Duration::from_secs(args.timeout);
    let cfg = Config {
        device: DeviceConfig {
            uri,
            askpass,
            notify: args.notify.clone(),
            touch_timeout: timeout,
            askpass_timeout: Duration::from_secs(120),
            verbose: args.verbose,
            pin_cache: args.pin_cache.map(Duration::from_secs),
        },
        credentials,
        uid,
    };

    // Socket activation: systemd passes the listening socket (LISTEN_FDS); it owns the path.
    let mut fds = listenfd::ListenFd::from_env();
    if let Ok(Some(listener)) = fds.take_unix_listener(0) {
        log("listening on the socket systemd passed");
        let agent = Agent::new(cfg);
        block_signals(None, agent.token_cache())?;
        return accept_loop(listener, agent);
    }

    let socket = match &args.socket {
        Some(p) => absolute(p)?,
        None => {
            let dir = std::env::var_os("XDG_RUNTIME_DIR").ok_or(ServerError::NoRuntimeDir)?;
            PathBuf::from(dir).join("ctap-sshagent.sock")
        }
    };

    if !args.foreground && std::env::var_os(CHILD_ENV).is_none() {
        return daemonize(&socket);
    }
    let listener = bind(&socket)?;
    if std::env::var_os(CHILD_ENV).is_none() {
        print_env(&socket, std::process::id());
    }
    log(format!("listening on {}", socket.display()));
    let agent = Agent::new(cfg);
    block_signals(Some(socket), agent.token_cache())?;
    accept_loop(listener, agent)
}

fn absolute(p: &Path) -> Result<PathBuf, ServerError> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        std::env::current_dir()
            .map(|d| d.join(p))
            .map_err(ServerError::CurrentDir)
    }
}

fn print_env(socket: &Path, pid: u32) {
    println!("SSH_AUTH_SOCK={}; export SSH_AUTH_SOCK;", socket.display());
    println!("SSH_AGENT_PID={pid}; export SSH_AGENT_PID;");
    println!("echo Agent pid {pid};");
}

/// Start a background copy of ourselves (`-D`, in its own process group so the terminal's ^C
/// does not reach it), wait until it listens, print the environment for it and return.
/// Re-executing avoids fork(), which would need `unsafe` in a multi-threaded-capable process.
fn daemonize(socket: &Path) -> Result<(), ServerError> {
    let exe = std::env::current_exe().map_err(ServerError::OwnExecutable)?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("-D".into());
    args.push("-a".into());
    args.push(socket.into());
    let mut child = Command::new(exe)
        .args(args)
        .env(CHILD_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .map_err(ServerError::Start)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if UnixStream::connect(socket).is_ok() {
            print_env(socket, child.id());
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(ServerError::ExitedAtStart(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(ServerError::StartTimeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bind the socket with mode 0600 (umask during bind, so there is no window with a wider mode).
/// A stale socket nobody listens on is replaced; a live one or a non-socket is an error.
fn bind(path: &Path) -> Result<UnixListener, ServerError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(ServerError::NotASocket(path.to_path_buf()));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(ServerError::AlreadyListening(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(|source| ServerError::RemoveStale {
            path: path.to_path_buf(),
            source,
        })?;
    }
    let old = umask(Mode::from_bits_truncate(0o177));
    let listener = UnixListener::bind(path);
    umask(old);
    let listener = listener.map_err(|source| ServerError::Listen {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServerError::Permissions {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}

/// Block SIGTERM/SIGINT/SIGHUP in every thread and handle them on one: wipe the `--pin-cache`
/// token, remove our socket, exit.
fn block_signals(socket: Option<PathBuf>, tokens: TokenCache) -> Result<(), ServerError> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set.add(Signal::SIGHUP);
    set.thread_block().map_err(ServerError::Signals)?;
    std::thread::spawn(move || {
        let sig = set.wait();
        // process::exit runs no destructors: the token is wiped here.
        tokens.forget();
        if let Some(s) = &socket {
            let _ = std::fs::remove_file(s);
        }
        log(format!(
            "exiting on {}",
            sig.map(|s| s.as_str()).unwrap_or("signal")
        ));
        std::process::exit(0);
    });
    Ok(())
}

fn accept_loop(listener: UnixListener, agent: Agent) -> Result<(), ServerError> {
    let agent = Arc::new(agent);
    let active = Arc::new(AtomicUsize::new(0));
    let uid = nix::unistd::geteuid().as_raw();
    for stream in listener.incoming() {
        let stream = match stream {
            Ok(s) => s,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                log(format!("accept: {e}"));
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        // Like ssh-agent: only our own user (or root) may use the keys.
        match getsockopt(&stream, PeerCredentials) {
            Ok(c) if c.uid() == uid || c.uid() == 0 => {}
            Ok(c) => {
                log(format!("refused a connection from uid {}", c.uid()));
                continue;
            }
            Err(e) => {
                log(format!("refused a connection: peer credentials: {e}"));
                continue;
            }
        }
        let Some(slot) = Slot::take(&active) else {
            log("too many connections: closing a new one");
            continue;
        };
        let agent = Arc::clone(&agent);
        // Builder, not thread::spawn: a failed spawn must not panic the accept loop.
        let spawned = std::thread::Builder::new().spawn(move || {
            let _slot = slot;
            serve_connection(&agent, stream);
        });
        if let Err(e) = spawned {
            log(format!("cannot start a connection thread: {e}"));
        }
    }
    Ok(())
}

/// One of the MAX_CONNECTIONS places, given back on drop: also when the connection's thread
/// panics or never starts, so such failures cannot use up the places one by one.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(active: &Arc<AtomicUsize>) -> Option<Slot> {
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Slot(Arc::clone(active)))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Read length-prefixed messages and answer each, until the client closes or misbehaves.
pub fn serve_connection(agent: &Agent, mut stream: UnixStream) {
    let mut conn = Connection::default();
    loop {
        let mut first = [0u8; 1];
        if stream.set_read_timeout(None).is_err() {
            return;
        }
        match stream.read(&mut first) {
            Ok(1) => {}
            Ok(_) | Err(_) => return,
        }
        // One deadline for the whole message, not for each read: a client sending a byte
        // every few seconds must not hold a connection slot (and a thread) for hours.
        let deadline = Instant::now() + MESSAGE_TIMEOUT;
        let mut rest = [0u8; 3];
        if read_before(&mut stream, &mut rest, deadline).is_err() {
            log("incomplete message length: closing the connection");
            let _ = stream.write_all(&Response::Failure.encode());
            return;
        }
        let len = u32::from_be_bytes([first[0], rest[0], rest[1], rest[2]]);
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_MESSAGE {
            // We cannot skip that much reliably: answer and hang up, as ssh-agent does.
            log(format!(
                "message of {len} bytes exceeds {MAX_MESSAGE}: closing the connection"
            ));
            let _ = stream.write_all(&Response::Failure.encode());
            return;
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        if let Err(e) = read_before(&mut stream, &mut body, deadline) {
            log(format!(
                "message not received whole within {} s ({e}): closing the connection",
                MESSAGE_TIMEOUT.as_secs()
            ));
            let _ = stream.write_all(&Response::Failure.encode());
            return;
        }
        let reply = agent.handle(&mut conn, &body);
        if stream.write_all(&reply.encode()).is_err() {
            return;
        }
    }
}

/// Fill `buf` from `stream` before `deadline`, however the bytes are spread out in time.
fn read_before(stream: &mut UnixStream, buf: &mut [u8], deadline: Instant) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let left = deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(ErrorKind::TimedOut))?;
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf[filled..]) {
            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
