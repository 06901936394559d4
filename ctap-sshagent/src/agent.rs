//! The agent's answers: identities from the credentials file and from `ssh-add`, constraints,
//! lock, session binding, and the policy applied before a key is asked to sign.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ctap_core::ssh::request::{classify, SignedData};
use ctap_core::ssh::{self, SkCertificate, SkKey, Validity};
use ctap_core::store::credential::load_credential_file;
use ctap_core::store::fs::Ownership;
use ctap_core::text::{printable, quoted};

use crate::device::{DeviceConfig, DeviceGate};
use crate::error::{AgentError, AskpassPurpose, BindError};
use crate::lock::Lock;
use crate::protocol::{self, Constraints, Request, Response};
use crate::{askpass, log};

/// At most this many session bindings per connection (OpenSSH: AGENT_MAX_SESSION_IDS).
const MAX_BINDS: usize = 16;
/// Session identifiers are hashes: 64 bytes for SHA-512 key exchanges; OpenSSH allows 128.
const MAX_SESSION_ID: usize = 128;
/// Identities `ssh-add` may add (the credentials file's are not counted): a client must not be
/// able to grow the agent without bound. Far above what a person adds.
pub const MAX_IDENTITIES: usize = 1000;
/// Total bytes of added identities' key handles, applications and comments (a key handle can be
/// up to a message long, 256 KiB).
pub const MAX_IDENTITY_BYTES: usize = 4 * 1024 * 1024;
/// Wait after the n-th wrong unlock passphrase in a row: n × this, at most [`MAX_UNLOCK_DELAY`].
const UNLOCK_DELAY_STEP: Duration = Duration::from_millis(100);
const MAX_UNLOCK_DELAY: Duration = Duration::from_secs(10);

pub struct Config {
    pub device: DeviceConfig,
    /// `~/.config/ctap/credentials.toml`: records with an `ssh:` rp_id are identities.
    pub credentials: PathBuf,
    pub uid: u32,
}

struct Identity {
    key: SkKey,
    /// The public key blob, or the certificate's blob for a certificate identity.
    blob: Vec<u8>,
    /// `ssh-add` of a key with its `-cert.pub`: the agent lists and signs for the certificate
    /// (its blob and type name) with the same key.
    certificate: Option<Box<SkCertificate>>,
    confirm: bool,
    expires: Option<Instant>,
}

/// An identity as listed and matched: the key that signs, the blob clients name it by, and the
/// algorithm name a userauth request for it carries (the certificate type for a certificate).
struct Visible {
    key: SkKey,
    blob: Vec<u8>,
    type_name: &'static str,
    confirm: bool,
}

impl Identity {
    /// What this identity counts against [`MAX_IDENTITY_BYTES`].
    fn size(&self) -> usize {
        identity_size(&self.key, &self.blob)
    }
}

fn identity_size(key: &SkKey, blob: &[u8]) -> usize {
    blob.len() + key.key_handle.len() + key.application.len() + key.comment.len()
}

#[derive(Default)]
struct State {
    added: Vec<Identity>,
    /// Blobs of file identities removed with `ssh-add -d/-D`, hidden until re-added or restart.
    hidden: Vec<Vec<u8>>,
    /// Shared so a guess can be checked (a slow hash) without holding the state.
    lock: Option<Arc<Lock>>,
}

/// Per-connection state: the sessions this connection was bound to (session-bind@openssh.com).
#[derive(Default)]
pub struct Connection {
    binds: Vec<Bind>,
}

struct Bind {
    host_key: Vec<u8>,
    session_id: Vec<u8>,
    forwarding: bool,
}

pub struct Agent {
    cfg: Config,
    state: Mutex<State>,
    gate: DeviceGate,
    /// Wrong unlock passphrases in a row, for every connection together. Held during each lock
    /// and unlock attempt, its hash and its back-off sleep: guesses from parallel connections
    /// wait their turn, so N guesses take as long from N connections as from one, and at most
    /// one Argon2 hash (19 MiB) is computed at a time.
    unlock_failures: Mutex<u32>,
    /// The credentials file as last read, with what identified it then: a signature does not
    /// re-read and re-parse an unchanged file (it was a tenth of the agent's time per signature).
    file_cache: Mutex<Option<(FileStamp, Vec<SkKey>)>>,
}

/// What changes whenever the credentials file is replaced, edited, chmod-ed or chown-ed: the
/// inode, its size, and its modification and change times. A different stamp means a fresh read
/// with every check of [`load_credential_file`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl FileStamp {
    fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::symlink_metadata(path).ok()?;
        Some(FileStamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

impl Agent {
    pub fn new(cfg: Config) -> Self {
        Agent {
            cfg,
            state: Mutex::new(State::default()),
            gate: DeviceGate::default(),
            unlock_failures: Mutex::new(0),
            file_cache: Mutex::new(None),
        }
    }

    /// Answer one message. Any error is logged with its reason, and [`AgentError::reply`]
    /// decides what the client gets (SSH_AGENT_FAILURE, or the extension failure).
    /// The `--pin-cache` token store, for the exit path (server.rs) to wipe.
    pub fn token_cache(&self) -> crate::device::TokenCache {
        self.gate.tokens.clone()
    }

    pub fn handle(&self, conn: &mut Connection, body: &[u8]) -> Response {
        let (what, result) = match protocol::parse(body) {
            Ok(req) => (refusal_words(&req), self.answer(conn, req)),
            Err(e) => ("bad request", Err(AgentError::Protocol(e))),
        };
        match result {
            Ok(r) => r,
            Err(e) => {
                log(format!("{what}: {e}"));
                e.reply()
            }
        }
    }

    fn answer(&self, conn: &mut Connection, req: Request<'_>) -> Result<Response, AgentError> {
        match req {
            Request::RequestIdentities => Ok(self.identities()),
            Request::Sign {
                key_blob,
                data,
                flags: _,
            } => self.sign(conn, key_blob, data).map(Response::Signature),
            Request::AddIdentity {
                key,
                certificate,
                constraints,
            } => self.add(*key, certificate, constraints),
            Request::RemoveIdentity { key_blob } => self.remove(key_blob),
            Request::RemoveAll => self.remove_all(),
            Request::Lock { passphrase } => self.lock(passphrase),
            Request::Unlock { passphrase } => self.unlock(passphrase),
            Request::Extension { name, contents } => self.extension(conn, name, contents),
            Request::Unknown(t) => Err(AgentError::UnsupportedMessage(t)),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in a way that matters
        // more than refusing to serve: recover the data.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The user's SSH credentials, read (ownership and mode checked) whenever the file changed
    /// since the last read, so `ctap-enroll ssh` takes effect without restarting the agent; an
    /// unchanged file costs one lstat.
    fn file_keys(&self) -> Vec<SkKey> {
        let stamp = FileStamp::of(&self.cfg.credentials);
        let mut cache = self.file_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(now), Some((then, keys))) = (stamp, cache.as_ref()) {
            if now == *then {
                return keys.clone();
            }
        }
        // Stamped before the read: a change during the read makes the next call read again. A
        // file that could not be used is not remembered: it is read (and refused) again.
        let (keys, usable) = self.read_file_keys();
        *cache = stamp.filter(|_| usable).map(|s| (s, keys.clone()));
        keys
    }

    /// The keys, and whether the file was read and trusted (only then is the result cached).
    fn read_file_keys(&self) -> (Vec<SkKey>, bool) {
        match load_credential_file(&self.cfg.credentials, Ownership { uid: self.cfg.uid }) {
            Ok(file) => (
                file.credentials
                    .iter()
                    .filter(|r| ssh::is_ssh_record(r))
                    .filter_map(|r| match SkKey::from_record(r) {
                        Ok(k) => Some(k),
                        Err(e) => {
                            log(format!(
                                "{}: credential {} skipped: {e}",
                                self.cfg.credentials.display(),
                                quoted(&r.name)
                            ));
                            None
                        }
                    })
                    .collect(),
                true,
            ),
            Err(e) if e.is_not_found() => (Vec::new(), false),
            Err(e) => {
                log(format!("credentials not used: {e}"));
                (Vec::new(), false)
            }
        }
    }

    /// Visible identities: file keys not removed, then added keys and certificates not
    /// expired, in the order they were added (as OpenSSH's agent lists them).
    fn visible(&self, st: &mut State) -> Vec<Visible> {
        let now = Instant::now();
        st.added.retain(|i| i.expires.is_none_or(|t| t > now));
        let mut out: Vec<Visible> = Vec::new();
        for k in self.file_keys() {
            let blob = k.public_blob();
            if !st.hidden.contains(&blob) && !st.added.iter().any(|i| i.blob == blob) {
                out.push(Visible {
                    type_name: k.algorithm().ssh_name(),
                    key: k,
                    blob,
                    confirm: false,
                });
            }
        }
        for i in &st.added {
            out.push(Visible {
                key: i.key.clone(),
                blob: i.blob.clone(),
                type_name: match &i.certificate {
                    Some(c) => c.type_name(),
                    None => i.key.algorithm().ssh_name(),
                },
                confirm: i.confirm,
            });
        }
        out
    }

    fn identities(&self) -> Response {
        let mut st = self.state();
        if st.lock.is_some() {
            return Response::Identities(Vec::new());
        }
        let ids = self
            .visible(&mut st)
            .into_iter()
            .map(|v| (v.blob, v.key.comment))
            .collect();
        Response::Identities(ids)
    }

    fn sign(&self, conn: &Connection, key_blob: &[u8], data: &[u8]) -> Result<Vec<u8>, AgentError> {
        let (key, confirm, names) = {
            let mut st = self.state();
            if st.lock.is_some() {
                return Err(AgentError::Locked);
            }
            let visible = self.visible(&mut st);
            let v = visible
                .iter()
                .find(|v| v.blob == key_blob)
                .ok_or(AgentError::NoSuchIdentity)?;
            // The names a userauth request may give this key: its own blob, and those of the
            // same key's other identity (its certificate, or the plain key of a certificate):
            // ssh signs a certificate's userauth request with the plain key when the agent
            // holds both (sshconnect2.c identity_sign).
            let names: Vec<(Vec<u8>, &'static str)> = std::iter::once(v)
                .chain(visible.iter().filter(|o| {
                    o.blob != v.blob
                        && o.key.key_handle == v.key.key_handle
                        && o.key.public_blob() == v.key.public_blob()
                }))
                .map(|o| (o.blob.clone(), o.type_name))
                .collect();
            (v.key.clone(), v.confirm, names)
        };
        // A certificate only changes the blob and the algorithm name the request names: the
        // signature is the key's own sk signature (PROTOCOL.certkeys).
        let what = names
            .iter()
            .map(|(blob, type_name)| classify(blob, type_name, data))
            .find(SignedData::is_ssh)
            .unwrap_or(SignedData::Other);
        if !key.is_ssh_application() && !what.is_ssh() {
            return Err(AgentError::NotSshApplication {
                fingerprint: key.fingerprint(),
                application: key.application.clone(),
            });
        }
        if let (
            SignedData::Userauth {
                session_id,
                host_key,
                ..
            },
            Some(last),
        ) = (&what, conn.binds.last())
        {
            if !last.forwarding
                && (*session_id != last.session_id.as_slice()
                    || host_key.is_some_and(|h| h != last.host_key.as_slice()))
            {
                return Err(AgentError::OtherSession);
            }
        }
        if confirm {
            let prog = self
                .cfg
                .device
                .askpass
                .as_ref()
                .ok_or(AgentError::NoAskpass(AskpassPurpose::Confirm))?;
            let prompt = confirm_prompt(&key, &what, conn.binds.last());
            if !askpass::confirm(prog, &prompt, self.cfg.device.askpass_timeout) {
                return Err(AgentError::NotConfirmed);
            }
        }
        let (sig, t) = crate::device::sign(&self.cfg.device, &self.gate, &key, data)?;
        if !self.cfg.device.verbose {
            // One line per signature fills the journal of a busy user (`-v` shows them).
            return Ok(sig.encoded);
        }
        log(format!(
            "signed {} with {} ({}): flags {:#04x} counter {} (device open {} us, getAssertion {} us)",
            describe(&what),
            printable(&key.comment),
            key.fingerprint(),
            sig.flags,
            sig.counter,
            t.open.as_micros(),
            t.assertion.as_micros()
        ));
        Ok(sig.encoded)
    }

    fn add(
        &self,
        key: SkKey,
        certificate: Option<Box<SkCertificate>>,
        c: Constraints,
    ) -> Result<Response, AgentError> {
        let mut st = self.state();
        if st.lock.is_some() {
            return Err(AgentError::Locked);
        }
        let blob = match &certificate {
            Some(cert) => {
                self.check_certificate(&st, &key, cert)?;
                cert.blob().to_vec()
            }
            None => key.public_blob(),
        };
        // Re-adding a key replaces it, so the old copy does not count.
        let others = st.added.iter().filter(|i| i.blob != blob);
        let (count, bytes) = others.fold((0usize, 0usize), |(n, b), i| (n + 1, b + i.size()));
        let size = identity_size(&key, &blob);
        if count >= MAX_IDENTITIES || bytes.saturating_add(size) > MAX_IDENTITY_BYTES {
            return Err(AgentError::Limits {
                fingerprint: key.fingerprint(),
                comment: key.comment.clone(),
                count,
                bytes,
                max_count: MAX_IDENTITIES,
                max_bytes: MAX_IDENTITY_BYTES,
            });
        }
        match &certificate {
            None => log(format!(
                "added {} {} ({}){}",
                key.algorithm().ssh_name(),
                printable(&key.comment),
                key.fingerprint(),
                if c.confirm { " confirm" } else { "" }
            )),
            Some(cert) => log(certificate_added(&key, cert, c.confirm)),
        }
        st.hidden.retain(|b| *b != blob);
        st.added.retain(|i| i.blob != blob);
        let expires = c
            .lifetime_secs
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        st.added.push(Identity {
            key,
            blob,
            certificate,
            confirm: c.confirm,
            expires,
        });
        Ok(Response::Success)
    }

    /// A certificate comes with the key handle of the key it is for (`ssh-add` reads both from
    /// the key file); its public key comes only from the certificate. When that handle is one
    /// the agent already knows (a credentials-file key, or the plain key `ssh-add` added just
    /// before), the certificate must certify that very key. An unknown handle (`ssh-add -C` of
    /// a key not otherwise loaded) is taken as OpenSSH's agent takes it: a signature is checked
    /// with the certified public key before it is returned, so a certificate for another key
    /// never yields a signature.
    fn check_certificate(
        &self,
        st: &State,
        key: &SkKey,
        cert: &SkCertificate,
    ) -> Result<(), AgentError> {
        let file = self.file_keys();
        let added = st
            .added
            .iter()
            .filter(|i| i.certificate.is_none())
            .map(|i| &i.key);
        match file
            .iter()
            .chain(added)
            .find(|k| k.key_handle == key.key_handle && !cert.certifies(k))
        {
            Some(k) => Err(AgentError::CertificateForAnotherKey {
                key_id: cert.key_id.clone(),
                certified: cert.key_fingerprint(),
                credential: k.fingerprint(),
                comment: k.comment.clone(),
            }),
            None => Ok(()),
        }
    }

    fn remove(&self, key_blob: &[u8]) -> Result<Response, AgentError> {
        let mut st = self.state();
        if st.lock.is_some() {
            return Err(AgentError::Locked);
        }
        let before = st.added.len();
        st.added.retain(|i| i.blob != key_blob);
        let removed = st.added.len() != before;
        let in_file = self.file_keys().iter().any(|k| k.public_blob() == key_blob);
        if in_file && !st.hidden.iter().any(|b| b == key_blob) {
            st.hidden.push(key_blob.to_vec());
            return Ok(Response::Success);
        }
        if removed {
            Ok(Response::Success)
        } else {
            Err(AgentError::NoSuchIdentity)
        }
    }

    fn remove_all(&self) -> Result<Response, AgentError> {
        let mut st = self.state();
        if st.lock.is_some() {
            return Err(AgentError::Locked);
        }
        st.added.clear();
        for k in self.file_keys() {
            let blob = k.public_blob();
            if !st.hidden.contains(&blob) {
                st.hidden.push(blob);
            }
        }
        Ok(Response::Success)
    }

    fn lock(&self, passphrase: &[u8]) -> Result<Response, AgentError> {
        // In turn with unlock attempts: one slow hash at a time.
        let _turn = self.unlock_turn();
        if self.state().lock.is_some() || passphrase.is_empty() {
            return Err(AgentError::CannotLock);
        }
        let lock = Lock::new(passphrase).ok_or(AgentError::LockHash)?;
        let mut st = self.state();
        if st.lock.is_some() {
            return Err(AgentError::CannotLock);
        }
        st.lock = Some(Arc::new(lock));
        // A kept PIN token must not outlive the lock (--pin-cache).
        self.gate.tokens.forget();
        log("locked");
        Ok(Response::Success)
    }

    fn unlock_turn(&self) -> std::sync::MutexGuard<'_, u32> {
        self.unlock_failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn unlock(&self, passphrase: &[u8]) -> Result<Response, AgentError> {
        // Held through the hash and the back-off sleep (see `unlock_failures`).
        let mut failures = self.unlock_turn();
        let lock = self.state().lock.clone().ok_or(AgentError::NotLocked)?;
        if !passphrase.is_empty() && lock.matches(passphrase) {
            let mut st = self.state();
            if st.lock.as_ref().is_some_and(|l| Arc::ptr_eq(l, &lock)) {
                st.lock = None;
            }
            *failures = 0;
            log("unlocked");
            return Ok(Response::Success);
        }
        *failures = failures.saturating_add(1);
        let delay = UNLOCK_DELAY_STEP
            .saturating_mul(*failures)
            .min(MAX_UNLOCK_DELAY);
        // The answer (and the log line `handle` writes) waits; so does every other attempt.
        std::thread::sleep(delay);
        Err(AgentError::WrongPassphrase {
            in_a_row: *failures,
            delay,
        })
    }

    fn extension(
        &self,
        conn: &mut Connection,
        name: &str,
        contents: &[u8],
    ) -> Result<Response, AgentError> {
        match name {
            // Allowed while locked: a new connection must be bindable before it can unlock.
            "session-bind@openssh.com" => {
                bind(conn, contents)?;
                Ok(Response::Success)
            }
            "query" if self.state().lock.is_none() => {
                let mut out = Vec::new();
                ctap_core::ssh::wire::put_string(&mut out, b"query");
                ctap_core::ssh::wire::put_string(&mut out, b"session-bind@openssh.com");
                Ok(Response::Extension(out))
            }
            other => Err(AgentError::UnsupportedExtension(other.to_string())),
        }
    }
}

/// Record a session binding after checking the host's signature over the session id, with
/// OpenSSH's rules: a connection bound for authentication cannot be bound again, a session id
/// cannot move to another host key.
fn bind(conn: &mut Connection, contents: &[u8]) -> Result<(), BindError> {
    let b = protocol::parse_session_bind(contents).map_err(BindError::Malformed)?;
    if b.session_id.is_empty() || b.session_id.len() > MAX_SESSION_ID {
        return Err(BindError::SessionIdLength(b.session_id.len()));
    }
    ssh::verify_host_signature(b.host_key, b.session_id, b.signature)
        .map_err(BindError::HostSignature)?;
    for old in &conn.binds {
        if !old.forwarding {
            return Err(BindError::AlreadyBoundForAuthentication);
        }
        if old.session_id == b.session_id {
            return if old.host_key == b.host_key {
                Ok(())
            } else {
                Err(BindError::HostKeyChanged)
            };
        }
    }
    if conn.binds.len() >= MAX_BINDS {
        return Err(BindError::TooMany);
    }
    conn.binds.push(Bind {
        host_key: b.host_key.to_vec(),
        session_id: b.session_id.to_vec(),
        forwarding: b.forwarding,
    });
    log(format!(
        "connection bound to a session ({})",
        if b.forwarding {
            "forwarding"
        } else {
            "authentication"
        }
    ));
    Ok(())
}

/// How a refusal of this request starts in the log.
fn refusal_words(req: &Request<'_>) -> &'static str {
    match req {
        Request::RequestIdentities => "identities refused",
        Request::Sign { .. } => "sign request refused",
        Request::AddIdentity { .. } => "add refused",
        Request::RemoveIdentity { .. } => "remove refused",
        Request::RemoveAll => "remove-all refused",
        Request::Lock { .. } => "lock refused",
        Request::Unlock { .. } => "unlock failed",
        Request::Extension {
            name: "session-bind@openssh.com",
            ..
        } => "session-bind refused",
        Request::Extension { .. } => "extension refused",
        Request::Unknown(_) => "request refused",
    }
}

/// What an `ssh-add -c` confirmation shows: the key, then what is being signed for: the host
/// key of the SSH session the request is bound to (session-bind@openssh.com, or the host key in
/// the userauth request) and whether it came through agent forwarding; a file signature's
/// namespace; or that nothing is known about the data.
fn confirm_prompt(key: &SkKey, what: &SignedData<'_>, bind: Option<&Bind>) -> String {
    let mut prompt = format!(
        "Allow use of key {}?\nKey fingerprint {}.",
        key.comment,
        key.fingerprint()
    );
    match what {
        SignedData::Userauth { user, host_key, .. } => {
            let host = host_key
                .map(<[u8]>::to_vec)
                .or_else(|| bind.map(|b| b.host_key.clone()));
            prompt.push_str(&format!("\nLog in as {}", quoted(user)));
            match host {
                Some(h) => prompt.push_str(&format!(
                    " to the host with key {}.",
                    ctap_core::ssh::key::blob_fingerprint(&h)
                )),
                None => prompt.push_str(" (host key unknown)."),
            }
        }
        SignedData::Sshsig { namespace } => prompt.push_str(&format!(
            "\nSign data (ssh-keygen -Y, namespace {}).",
            quoted(namespace)
        )),
        SignedData::Other => prompt.push_str("\nSign data of unknown kind."),
    }
    match bind {
        Some(b) if b.forwarding => {
            prompt.push_str("\nThe request came through agent forwarding, from a remote host.")
        }
        Some(_) => prompt.push_str("\nThe request came from this machine's ssh."),
        None => prompt.push_str("\nThe request is bound to no SSH session (a local program)."),
    }
    prompt
}

/// The log line of an added certificate: its type, key id, principals and validity, and a
/// warning when it is not valid now. The agent keeps it anyway, as OpenSSH's does (sshd is what
/// judges a certificate; `ssh-add` itself skips expired ones and sets the lifetime to the end of
/// the validity period).
fn certificate_added(key: &SkKey, cert: &SkCertificate, confirm: bool) -> String {
    let principals = if cert.principals.is_empty() {
        "any principal".to_string()
    } else {
        cert.principals
            .iter()
            .map(|p| printable(p))
            .collect::<Vec<_>>()
            .join(",")
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let validity = match cert.validity_at(now) {
        Validity::Valid => "",
        Validity::NotYetValid => "; warning: not valid yet (sshd refuses it until then)",
        Validity::Expired => "; warning: expired (sshd refuses it)",
    };
    format!(
        "added {} certificate {} for {} ({}), principals {principals}, serial {}{}{validity}",
        cert.type_name(),
        quoted(&cert.key_id),
        printable(&key.comment),
        key.fingerprint(),
        cert.serial,
        if confirm { " confirm" } else { "" }
    )
}

fn describe(what: &SignedData<'_>) -> String {
    match what {
        SignedData::Userauth { user, .. } => format!("userauth for {}", quoted(user)),
        SignedData::Sshsig { namespace } => format!("SSHSIG ({namespace})"),
        SignedData::Other => "data".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{SSH_AGENTC_LOCK, SSH_AGENTC_REMOVE_ALL_IDENTITIES, SSH_AGENTC_UNLOCK};
    use ctap_core::ssh::wire::put_string;

    fn agent() -> Agent {
        Agent::new(Config {
            device: DeviceConfig {
                uri: "auto".parse().unwrap(),
                askpass: None,
                notify: None,
                touch_timeout: Duration::from_secs(1),
                askpass_timeout: Duration::from_secs(1),
                verbose: false,
                pin_cache: None,
            },
            credentials: PathBuf::from("/nonexistent/credentials.toml"),
            uid: 0,
        })
    }

    fn with_string(kind: u8, s: &[u8]) -> Vec<u8> {
        let mut body = vec![kind];
        put_string(&mut body, s);
        body
    }

    /// Each request's refusal is a typed error, and the reply is the one its variant names: a
    /// bad session binding gets the extension failure, the others SSH_AGENT_FAILURE.
    #[test]
    fn refusals_are_answered_by_their_variant() {
        let a = agent();
        let mut conn = Connection::default();
        let failure = Response::Failure.encode();
        let reply = |a: &Agent, conn: &mut Connection, body: &[u8]| a.handle(conn, body).encode();

        assert_eq!(reply(&a, &mut conn, &[99]), failure);
        assert!(matches!(
            a.answer(&mut conn, Request::Unknown(99)),
            Err(AgentError::UnsupportedMessage(99))
        ));
        assert!(matches!(a.unlock(b"pass"), Err(AgentError::NotLocked)));
        assert!(matches!(a.lock(b""), Err(AgentError::CannotLock)));

        let mut bind = vec![protocol::SSH_AGENTC_EXTENSION];
        put_string(&mut bind, b"session-bind@openssh.com");
        bind.extend_from_slice(&[0, 0, 0, 1, 7]);
        assert_eq!(
            reply(&a, &mut conn, &bind),
            Response::ExtensionFailure.encode()
        );

        assert_eq!(
            reply(&a, &mut conn, &with_string(SSH_AGENTC_LOCK, b"pw")),
            Response::Success.encode()
        );
        assert!(matches!(a.remove_all(), Err(AgentError::Locked)));
        assert_eq!(
            reply(&a, &mut conn, &[SSH_AGENTC_REMOVE_ALL_IDENTITIES]),
            failure
        );
        assert!(matches!(
            a.unlock(b"wrong"),
            Err(AgentError::WrongPassphrase { in_a_row: 1, .. })
        ));
        assert_eq!(
            reply(&a, &mut conn, &with_string(SSH_AGENTC_UNLOCK, b"pw")),
            Response::Success.encode()
        );
    }
}
