//! `serve`: state file, authenticator, socket, one thread per connection, clean shutdown.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::stat::{umask, Mode};

use crate::cli::ServeArgs;
use crate::engine::{self, EngineConfig, EngineHandle};
use crate::error::Error;
use crate::fault::Fault;
use crate::state_file::StateFile;

/// How long shutdown waits for a running transaction to finish before exiting anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Run the virtual key until SIGTERM/SIGINT.
pub fn serve(args: ServeArgs) -> Result<(), Error> {
    let pin = args.pin.as_deref().map(crate::pin::parse).transpose()?;
    let state = StateFile::open(&args.state)?;
    if state.is_fresh() {
        eprintln!(
            "ctap-softtoken: created a new key in {}",
            args.state.display()
        );
    }
    // Block the shutdown signals in this thread before any other starts, so that every thread
    // inherits the mask and only the signal thread's sigwait sees them.
    let signals = shutdown_signals();
    signals.thread_block().map_err(|errno| Error::Runtime {
        what: "blocking SIGTERM/SIGINT",
        source: io::Error::from(errno),
    })?;

    if args.ctap1_only {
        crate::connection::set_ctap1_only();
    }
    if let Some(path) = &args.cancel_log {
        crate::connection::set_cancel_log(path.clone());
    }
    let config = EngineConfig {
        presence: args.presence,
    };
    engine::run(&state, config, |engine| {
        clear_socket_path(&args.socket)?;
        // The PIN goes in before the socket exists: whoever waits for the socket file then
        // finds a key that already has its PIN.
        if let Some(pin) = &pin {
            if crate::pin::set_if_unset(&engine, pin)? {
                eprintln!("ctap-softtoken: PIN set");
            } else {
                eprintln!("ctap-softtoken: the key already has a PIN; --pin left it unchanged");
            }
        }
        let listener = bind(&args.socket)?;
        spawn("signal", {
            let engine = engine.clone();
            let socket = args.socket.clone();
            move || wait_for_shutdown(signals, &socket, &engine)
        })?;
        spawn("accept", {
            let fault = args.fault;
            move || accept_loop(listener, engine, fault)
        })?;
        eprintln!("ctap-softtoken: listening on {}", args.socket.display());
        Ok(())
    })
}

fn shutdown_signals() -> SigSet {
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGINT);
    set
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(f)
        .map(drop)
        .map_err(|source| Error::Runtime {
            what: "spawning a thread",
            source,
        })
}

/// Remove a stale socket at `path`, but nothing else.
fn clear_socket_path(path: &Path) -> Result<(), Error> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            fs::remove_file(path).map_err(|source| Error::Socket {
                path: path.to_owned(),
                source,
            })
        }
        Ok(_) => Err(Error::SocketPathOccupied {
            path: path.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Socket {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Bind the socket with mode 0600.
fn bind(path: &Path) -> Result<UnixListener, Error> {
    let socket_error = |source| Error::Socket {
        path: path.to_owned(),
        source,
    };
    // The socket inode gets its mode at bind time from the umask: make it 0600 from the start
    // rather than chmod afterwards and leave a window. No other thread creates files meanwhile.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener = bound.map_err(socket_error)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(socket_error)?;
    Ok(listener)
}

/// Accept forever; each connection is a device opened by a client, served on its own thread.
fn accept_loop(listener: UnixListener, engine: EngineHandle, fault: Option<Fault>) {
    let mut next_id: u64 = 1;
    for stream in listener.incoming() {
        match stream {
            Ok(stream) => {
                let id = next_id;
                next_id += 1;
                let engine = engine.clone();
                let spawned = thread::Builder::new()
                    .name(format!("conn-{id}"))
                    .spawn(move || crate::connection::serve(stream, engine, fault, id));
                if let Err(e) = spawned {
                    eprintln!("ctap-softtoken: cannot start a thread for connection {id}: {e}");
                }
            }
            Err(e) => {
                eprintln!("ctap-softtoken: accept failed: {e}");
                // EMFILE and friends: back off instead of spinning.
                thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// On SIGTERM/SIGINT: remove the socket, let a running transaction finish, exit 0.
fn wait_for_shutdown(signals: SigSet, socket: &PathBuf, engine: &EngineHandle) {
    let signal = match signals.wait() {
        Ok(signal) => signal,
        Err(errno) => {
            eprintln!("ctap-softtoken: waiting for signals failed ({errno}); shutdown by signal will not be clean");
            return;
        }
    };
    if let Err(e) = fs::remove_file(socket) {
        if e.kind() != io::ErrorKind::NotFound {
            eprintln!("ctap-softtoken: cannot remove {}: {e}", socket.display());
        }
    }
    eprintln!("ctap-softtoken: {signal}, shutting down");
    engine.when_idle(SHUTDOWN_GRACE, || std::process::exit(0))
}
