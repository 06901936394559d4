//! Which enrolled names claim a uid, without reading every records file on each `nouserok` login.
//!
//! Why it exists: before `nouserok` skips an account without records, login asks whether
//! another name of the same uid is enrolled (`CredentialStore::other_enrolled_name`). Answered
//! by reading every records file's uid stamp, that cost one open and read per enrolled user on
//! every skipped login: 73 ms with 10,000 enrolled users, 21 × a login through pam_permit.
//!
//! The index is a cache of exactly what that scan learns and nothing NSS says: for each records
//! file its stamped uid (or "no readable stamp"), and the names that have state but no records.
//! NSS answers are never cached, since an account can change uid without any file changing:
//! names without a stamp and state-only names are still resolved at every use, as before.
//!
//! When it may be used: the records half carries the stamp (device, inode, mtime in
//! nanoseconds) of the records directory when it was scanned. Adding, removing or renaming a
//! file changes the directory's mtime, so an index whose stamp differs is rebuilt. Because file
//! times come from a coarse clock, a change within the same tick as the scan would leave the
//! mtime unchanged (git's "racily clean" problem): a stamp is recorded only when the directory
//! had not changed for [`SETTLED`], and until then every lookup scans. What the stamp cannot see
//! is a records file edited in place to claim another uid: records are written by `ctap-enroll`
//! (temporary file and rename), and the uid stamp is its own bookkeeping.
//!
//! The state directory cannot be stamped the same way: every enrolled login renames its state
//! file, which moves the directory's mtime without adding a name. Names are added to it only by
//! `StateGuard::commit` (pam_ctap and ctap-enroll), which appends a state file's name to
//! `.index/new-state` after creating the file (one `write` with O_APPEND, so concurrent
//! writers need no lock); a lookup adds the names past the position (the log's inode and an
//! offset) its index was built at. A rebuild takes that position before it lists the state
//! directory, and a writer appends after its rename, so every new name is in the listing or
//! past the position. What this cannot see is a state file put there by hand (a restore from
//! backup) until the records next change.
//!
//! It lives in `<state_dir>/.index/`, root's and 0600 like state; a rebuild writes `uids`
//! atomically under `.index/lock` (and starts `new-state` afresh when it has grown past
//! [`LOG_RESTART`]); a lookup that cannot take the lock scans without writing. A file that does
//! not parse, is too large or untrusted is a cache miss, never an error, and a failure to write
//! costs only the next lookup a scan.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::fs::{self, Ownership, StateLock};

/// How long a directory must have been unchanged before its stamp is trusted: well above the
/// kernel's file-time tick (a jiffy, at most 10 ms).
pub(crate) const SETTLED: Duration = Duration::from_secs(2);

const MAGIC: &str = "ctap-uid-index 1";

/// A rebuild starts `new-state` afresh once it is this long (the reader's bound is 1 MiB).
const LOG_RESTART: u64 = 256 * 1024;
const STAMPED: &str = "stamped";

/// What identifies one state of a directory's entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DirStamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
}

impl DirStamp {
    /// The directory's stamp now; `None` if it cannot be read (then nothing is cached).
    pub(crate) fn of(dir: &Path) -> Option<Self> {
        let m = std::fs::metadata(dir).ok()?;
        Some(DirStamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        })
    }

    /// Whether the directory had been unchanged for [`SETTLED`] at `now`: only then can a scan
    /// that starts after this stamp was taken be tied to it.
    fn settled(&self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        now_ns - self.mtime_ns >= SETTLED.as_nanos() as i128
    }

    fn write(stamp: Option<&Self>) -> String {
        match stamp {
            Some(s) => format!("{} {} {}", s.dev, s.ino, s.mtime_ns),
            None => "-".into(),
        }
    }

    fn parse(text: &str) -> Option<Option<Self>> {
        if text == "-" {
            return Some(None);
        }
        let mut it = text.split(' ');
        let stamp = DirStamp {
            dev: it.next()?.parse().ok()?,
            ino: it.next()?.parse().ok()?,
            mtime_ns: it.next()?.parse().ok()?,
        };
        it.next().is_none().then_some(Some(stamp))
    }
}

/// One records file, as the scan found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RecordsEntry {
    /// The file's first line stamps this uid.
    Stamped(u32),
    /// No readable stamp (a file from before uids were stored, or unreadable): the caller
    /// resolves the name, or reads the file, at every use.
    Unstamped,
}

/// The records half: every records file's name (the account name, not the file stem) and what
/// its stamp says.
///
/// The stamped names are kept as the file spells them, `<uid> <stem>` lines sorted by uid then
/// stem, and searched in place: a login asks about one uid, so reading the index costs a
/// binary search of a dozen short reads, not a read of every line or an allocation per
/// enrolled user.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct RecordsHalf {
    pub(crate) stamp: Option<DirStamp>,
    stamped: Stamped,
    pub(crate) unstamped: Vec<String>,
}

/// The sorted `<uid> <stem>` lines: text just built, or a section of the index file read on
/// demand.
#[derive(Debug)]
enum Stamped {
    Text(String),
    File {
        file: std::fs::File,
        start: u64,
        end: u64,
    },
}

impl Default for Stamped {
    fn default() -> Self {
        Stamped::Text(String::new())
    }
}

/// Equal when they hold the same lines (tests compare a parsed index with a built one).
impl PartialEq for Stamped {
    fn eq(&self, other: &Self) -> bool {
        let mine = self.read_all();
        mine.is_some() && mine == other.read_all()
    }
}

impl Eq for Stamped {}

/// Longest stamped line read: a uid and a file stem of an account name (at most 256 bytes,
/// each escaped to three) fit with room to spare.
const MAX_LINE: usize = 1024;

impl Stamped {
    fn len(&self) -> u64 {
        match self {
            Stamped::Text(t) => t.len() as u64,
            Stamped::File { start, end, .. } => end.saturating_sub(*start),
        }
    }

    /// Up to `buf.len()` bytes at `at` (relative to the section); `None` on a read error.
    fn read(&self, at: u64, buf: &mut [u8]) -> Option<usize> {
        let want = usize::try_from(self.len().saturating_sub(at))
            .unwrap_or(usize::MAX)
            .min(buf.len());
        match self {
            Stamped::Text(t) => {
                let from = usize::try_from(at).ok()?;
                buf[..want].copy_from_slice(t.as_bytes().get(from..from + want)?);
                Some(want)
            }
            Stamped::File { file, start, .. } => read_at_most(file, &mut buf[..want], start + at),
        }
    }

    fn read_all(&self) -> Option<Vec<u8>> {
        let len = usize::try_from(self.len()).ok()?;
        let mut buf = vec![0; len];
        (self.read(0, &mut buf)? == len).then_some(buf)
    }

    /// Where the line holding byte `pos` starts.
    fn line_start(&self, pos: u64) -> Option<u64> {
        let from = pos.saturating_sub(MAX_LINE as u64);
        let mut buf = [0u8; MAX_LINE];
        let n = self.read(from, &mut buf[..(pos - from) as usize])?;
        match buf[..n].iter().rposition(|&b| b == b'\n') {
            Some(i) => Some(from + i as u64 + 1),
            None if from == 0 => Some(0),
            None => None,
        }
    }

    /// The line starting at `at`: its uid, its account name and where the next line starts.
    fn line_at(&self, at: u64) -> Option<(u32, String, u64)> {
        let mut buf = [0u8; MAX_LINE];
        let n = self.read(at, &mut buf)?;
        let len = buf[..n].iter().position(|&b| b == b'\n')?;
        let line = std::str::from_utf8(&buf[..len]).ok()?;
        let (uid, stem) = line.split_once(' ')?;
        let name = crate::store::account::name_of_stem(stem)?;
        Some((uid.parse().ok()?, name, at + len as u64 + 1))
    }
}

/// Fill `buf` from `file` at `offset`, short only at the file's end; `None` on a read error.
fn read_at_most(file: &std::fs::File, buf: &mut [u8], offset: u64) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(_) => return None,
        }
    }
    Some(got)
}

impl RecordsHalf {
    pub(crate) fn from_scan(stamp: Option<DirStamp>, files: Vec<(String, RecordsEntry)>) -> Self {
        let mut stamped = Vec::new();
        let mut unstamped = Vec::new();
        for (name, entry) in files {
            match entry {
                RecordsEntry::Stamped(uid) => {
                    // Names come from file stems, so every one has a stem.
                    if let Ok(stem) = crate::store::account::file_stem(&name) {
                        stamped.push((uid, stem));
                    }
                }
                RecordsEntry::Unstamped => unstamped.push(name),
            }
        }
        stamped.sort();
        unstamped.sort();
        let mut lines = String::new();
        for (uid, stem) in stamped {
            let _ = writeln!(lines, "{uid} {stem}");
        }
        RecordsHalf {
            stamp,
            stamped: Stamped::Text(lines),
            unstamped,
        }
    }

    /// The names whose records are stamped with `uid`; `None` if the index is not well formed
    /// where it was read (then it is not used).
    pub(crate) fn stamped_with(&self, uid: u32) -> Option<Vec<String>> {
        let s = &self.stamped;
        // Lines starting before `lo` have a smaller uid; lines starting at or after `hi` do not.
        let (mut lo, mut hi) = (0, s.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let start = s.line_start(mid)?.max(lo);
            let (line_uid, _, end) = s.line_at(start)?;
            if line_uid < uid {
                lo = end;
            } else {
                hi = start;
            }
        }
        let mut names = Vec::new();
        let mut at = lo;
        while at < s.len() {
            let (line_uid, name, end) = s.line_at(at)?;
            if line_uid != uid {
                break;
            }
            names.push(name);
            at = end;
        }
        Some(names)
    }

    /// Every name with records; `None` if the index is not well formed.
    pub(crate) fn names(&self) -> Option<HashSet<String>> {
        let s = &self.stamped;
        let mut names: HashSet<String> = self.unstamped.iter().cloned().collect();
        let mut at = 0;
        while at < s.len() {
            let (_, name, end) = s.line_at(at)?;
            names.insert(name);
            at = end;
        }
        Some(names)
    }
}

/// The whole index, as read from or written to its file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct UidIndex {
    pub(crate) records: RecordsHalf,
    /// Names with a state file and no records file, when the index was built.
    pub(crate) state_only: Vec<String>,
    /// How much of `new-state` the build had seen: the names after it are newer.
    pub(crate) log_offset: LogPosition,
}

/// A place in `new-state`: the file (its inode, 0 when there was none yet) and an offset in it,
/// so that a log deleted and begun again is never read from the middle of a line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LogPosition {
    pub(crate) ino: u64,
    pub(crate) offset: u64,
}

impl UidIndex {
    pub(crate) fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(".index").join("uids")
    }

    /// The index in `state_dir`, if there is a trusted one that parses; anything else is a
    /// miss.
    pub(crate) fn load(state_dir: &Path) -> Option<Self> {
        use std::os::unix::fs::FileExt;
        let (file, meta) = fs::open_private(&Self::path(state_dir), Ownership::effective()).ok()?;
        // The head (header, unstamped and state-only names) is read whole, up to the line
        // that starts the stamped lines; those stay in the file. It is usually a few lines:
        // read in page-sized pieces through a stack buffer, not a zeroed heap one, since this
        // runs at every skipped login.
        let mut head = Vec::new();
        let mut chunk = [0u8; 4096];
        let marker = format!("\n{STAMPED}\n");
        let head_len = loop {
            if let Some(i) = head
                .windows(marker.len())
                .position(|w| w == marker.as_bytes())
            {
                break i + marker.len();
            }
            if head.len() as u64 >= fs::MAX_FILE.min(meta.len()) {
                return None;
            }
            let n = file.read_at(&mut chunk, head.len() as u64).ok()?;
            if n == 0 {
                return None;
            }
            head.extend_from_slice(&chunk[..n]);
        };
        head.truncate(head_len);
        let mut index = Self::parse(String::from_utf8(head).ok()?)?;
        index.records.stamped = Stamped::File {
            file,
            start: head_len as u64,
            end: meta.len(),
        };
        Some(index)
    }

    /// The lock a rebuild holds while it restarts the log and writes the index; `None` if
    /// another process holds it (then nothing is written).
    pub(crate) fn lock(state_dir: &Path) -> Option<StateLock> {
        StateLock::acquire(&state_dir.join(".index").join("lock"), Duration::ZERO).ok()
    }

    /// Write the index; the caller holds [`Self::lock`]. Failures are ignored (module docs).
    pub(crate) fn store(&self, state_dir: &Path, _lock: &StateLock) {
        let _ = fs::write_atomic_locked(&Self::path(state_dir), self.render().as_bytes(), 0o600);
    }

    /// Make `<state_dir>/.index` exist before the state directory is stamped: creating it
    /// changes that directory's mtime.
    pub(crate) fn prepare(state_dir: &Path) -> bool {
        use std::os::unix::fs::DirBuilderExt;
        let dir = state_dir.join(".index");
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir(),
        }
    }

    /// Keep a stamp only if its directory had settled by `scan_started` (module docs).
    pub(crate) fn settled_stamp(
        stamp: Option<DirStamp>,
        scan_started: SystemTime,
    ) -> Option<DirStamp> {
        stamp.filter(|s| s.settled(scan_started))
    }

    /// The file: a header, the unstamped and state-only names, then `stamped` and the sorted
    /// stamped lines to the end.
    fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{MAGIC}");
        let _ = writeln!(
            out,
            "records {}",
            DirStamp::write(self.records.stamp.as_ref())
        );
        let _ = writeln!(
            out,
            "log {} {}",
            self.log_offset.ino, self.log_offset.offset
        );
        let stem = |n: &str| crate::store::account::file_stem(n).ok();
        for name in &self.records.unstamped {
            if let Some(s) = stem(name) {
                let _ = writeln!(out, "u {s}");
            }
        }
        for name in &self.state_only {
            if let Some(s) = stem(name) {
                let _ = writeln!(out, "s {s}");
            }
        }
        let _ = writeln!(out, "{STAMPED}");
        if let Some(lines) = self.records.stamped.read_all() {
            out.push_str(&String::from_utf8_lossy(&lines));
        }
        out
    }

    fn parse(mut text: String) -> Option<Self> {
        let mut at = 0;
        let mut line = || -> Option<&str> {
            let rest = text.get(at..)?;
            let len = rest.find('\n')?;
            at += len + 1;
            Some(&rest[..len])
        };
        if line()? != MAGIC {
            return None;
        }
        let records = DirStamp::parse(line()?.strip_prefix("records ")?)?;
        let (ino, offset) = line()?.strip_prefix("log ")?.split_once(' ')?;
        let log_offset = LogPosition {
            ino: ino.parse().ok()?,
            offset: offset.parse().ok()?,
        };
        let (mut unstamped, mut state_only) = (Vec::new(), Vec::new());
        let name = |stem: &str| crate::store::account::name_of_stem(stem);
        loop {
            let l = line()?;
            if l == STAMPED {
                break;
            }
            match l.split_once(' ')? {
                ("u", stem) => unstamped.push(name(stem)?),
                ("s", stem) => state_only.push(name(stem)?),
                _ => return None,
            }
        }
        // The stamped lines stay as they are, searched when asked (`stamped_with`).
        text.drain(..at);
        Some(UidIndex {
            records: RecordsHalf {
                stamp: records,
                stamped: Stamped::Text(text),
                unstamped,
            },
            state_only,
            log_offset,
        })
    }
}

/// `.index/new-state`: the names of state files created since an index was built (module
/// docs), one file stem per line.
pub(crate) struct NewStateLog;

impl NewStateLog {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(".index").join("new-state")
    }

    /// Record that `name`'s state file now exists. Called after the file's rename, by its
    /// writer; best effort (module docs).
    pub(crate) fn append(state_dir: &Path, name: &str) {
        use std::io::Write;
        let Ok(stem) = crate::store::account::file_stem(name) else {
            return;
        };
        if !UidIndex::prepare(state_dir) {
            return;
        }
        let file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(Self::path(state_dir));
        if let Ok(mut f) = file {
            // One write: appends of whole lines this short do not interleave.
            let _ = f.write_all(format!("{stem}\n").as_bytes());
        }
    }

    /// The names appended after `at`; `None` if the log is not the one `at` is in, or is
    /// untrusted, unreadable or malformed there (then the index is not used). No log: none.
    pub(crate) fn read_from(state_dir: &Path, at: LogPosition) -> Option<Vec<String>> {
        let (file, meta) = match fs::open_private(&Self::path(state_dir), Ownership::effective()) {
            Ok(opened) => opened,
            Err(fs::FileError::NotFound(_)) => return (at.offset == 0).then(Vec::new),
            Err(_) => return None,
        };
        if at.ino != 0 && meta.ino() != at.ino {
            return None;
        }
        if meta.len() > fs::MAX_FILE {
            return None;
        }
        // Only what was appended after `at`: the log is read at every skipped login.
        let mut tail = vec![0; usize::try_from(meta.len().checked_sub(at.offset)?).ok()?];
        let got = read_at_most(&file, &mut tail, at.offset)?;
        tail.truncate(got);
        let text = std::str::from_utf8(&tail).ok()?;
        // A line being written right now is not a name yet, nor a reason to distrust the rest;
        // the log's next reader sees it whole.
        let complete = text.rfind('\n').map_or("", |i| &text[..=i]);
        complete
            .lines()
            .map(crate::store::account::name_of_stem)
            .collect()
    }

    /// Where a rebuild starts from, read before it lists the state directory; the log is
    /// emptied first when it has grown past [`LOG_RESTART`] (the caller holds the index lock,
    /// and writers append after their rename, so every name is listed or appended later).
    pub(crate) fn position_for_rebuild(state_dir: &Path, _lock: &StateLock) -> LogPosition {
        let path = Self::path(state_dir);
        let at = Self::end(state_dir);
        if at.offset > LOG_RESTART
            && std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
                .open(&path)
                .and_then(|f| f.set_len(0))
                .is_ok()
        {
            return LogPosition {
                ino: at.ino,
                offset: 0,
            };
        }
        at
    }

    /// The log's current end (a rebuild without the lock).
    pub(crate) fn end(state_dir: &Path) -> LogPosition {
        std::fs::symlink_metadata(Self::path(state_dir)).map_or(LogPosition::default(), |m| {
            LogPosition {
                ino: m.ino(),
                offset: m.len(),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(n: i128) -> DirStamp {
        DirStamp {
            dev: 1,
            ino: 2,
            mtime_ns: n,
        }
    }

    fn with(index: &UidIndex, uid: u32) -> Vec<String> {
        index.records.stamped_with(uid).unwrap()
    }

    #[test]
    fn the_index_reads_back_what_it_wrote() {
        let mut files = vec![
            ("zed".into(), RecordsEntry::Stamped(7)),
            ("a b".into(), RecordsEntry::Stamped(7)),
            ("old".into(), RecordsEntry::Unstamped),
            ("x".into(), RecordsEntry::Stamped(3)),
        ];
        files.extend((0..1000).map(|i| (format!("u{i}"), RecordsEntry::Stamped(10_000 + i))));
        let index = UidIndex {
            records: RecordsHalf::from_scan(Some(stamp(5)), files),
            state_only: vec!["gone".into()],
            log_offset: LogPosition { ino: 7, offset: 42 },
        };
        let text = index.render();
        assert!(text.contains("\nstamped\n3 x\n7 a%20b\n7 zed\n"), "{text}");
        let back = UidIndex::parse(text).unwrap();
        assert_eq!(back, index);
        assert_eq!(with(&back, 7), ["a b", "zed"]);
        assert_eq!(with(&back, 3), ["x"]);
        assert_eq!(with(&back, 10_500), ["u500"]);
        assert_eq!(with(&back, 10_999), ["u999"]);
        for absent in [0, 4, 8, 9_999, 11_000, u32::MAX] {
            assert!(with(&back, absent).is_empty(), "{absent}");
        }
        assert_eq!(back.records.names().unwrap().len(), 1004);
        assert_eq!(back.state_only, ["gone"]);
        assert_eq!(back.log_offset, LogPosition { ino: 7, offset: 42 });
    }

    #[test]
    fn anything_but_a_well_formed_index_is_a_miss() {
        for text in [
            "",
            "ctap-uid-index 2\nrecords -\nlog 0 0\nstamped\n",
            "ctap-uid-index 1\nrecords 1 2\nlog 0 0\nstamped\n",
            "ctap-uid-index 1\nrecords -\nlog 0 0\n",
            "ctap-uid-index 1\nrecords -\nlog 0\nstamped\n",
            "ctap-uid-index 1\nrecords -\nstate -\nstamped\n",
            "ctap-uid-index 1\nrecords -\nlog 0 0\nq alice\nstamped\n",
            "ctap-uid-index 1\nrecords -\nlog 0 0\nu .hidden\nstamped\n",
        ] {
            assert_eq!(UidIndex::parse(text.into()), None, "{text:?}");
        }
        // A stamped line that does not parse makes the search fail, never answer "none".
        for stamped in ["x alice\n", "5 alice", "5 .alice\n"] {
            let index = UidIndex::parse(format!(
                "ctap-uid-index 1\nrecords -\nlog 0 0\nstamped\n{stamped}"
            ))
            .unwrap();
            assert_eq!(index.records.stamped_with(5), None, "{stamped:?}");
            assert_eq!(index.records.names(), None, "{stamped:?}");
        }
    }

    #[test]
    fn the_new_state_log_is_read_from_its_position_and_a_torn_line_waits() {
        let d = fs::test_dir("uid-log");
        let at = |ino, offset| LogPosition { ino, offset };
        assert_eq!(
            NewStateLog::read_from(&d, at(0, 0)),
            Some(vec![]),
            "no log yet"
        );
        assert_eq!(
            NewStateLog::read_from(&d, at(0, 5)),
            None,
            "past a missing log"
        );
        NewStateLog::append(&d, "alice");
        NewStateLog::append(&d, "bob smith");
        let end = NewStateLog::end(&d);
        assert_eq!(end.offset, 18);
        let ino = end.ino;
        assert_eq!(
            NewStateLog::read_from(&d, at(0, 0)).unwrap(),
            ["alice", "bob smith"],
            "an index built before there was a log reads it all"
        );
        assert_eq!(
            NewStateLog::read_from(&d, at(ino, 6)).unwrap(),
            ["bob smith"]
        );
        assert_eq!(
            NewStateLog::read_from(&d, at(ino, 18)).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(NewStateLog::read_from(&d, at(ino, 19)), None);
        assert_eq!(
            NewStateLog::read_from(&d, at(ino + 1, 6)),
            None,
            "another log"
        );
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(NewStateLog::path(&d))
                .unwrap();
            f.write_all(b"car").unwrap();
        }
        assert_eq!(
            NewStateLog::read_from(&d, at(ino, 6)).unwrap(),
            ["bob smith"]
        );
        std::fs::write(NewStateLog::path(&d), ".bad\n").unwrap();
        assert_eq!(NewStateLog::read_from(&d, at(ino, 0)), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    /// The index as a login reads it: from its file, the stamped lines searched with short
    /// reads; a file cut short is a miss where it is read.
    #[test]
    fn the_index_file_is_searched_in_place() {
        use std::os::unix::fs::PermissionsExt;
        let d = fs::test_dir("uid-file");
        std::fs::create_dir(d.join(".index")).unwrap();
        // Every uid twice (two names), 5,000 lines: many times the 1 KiB read window. The
        // unstamped and state-only names make a head of many 4 KiB reads.
        let mut files: Vec<_> = (0..5000u32)
            .map(|i| (format!("user-{i}"), RecordsEntry::Stamped(1000 + i / 2)))
            .collect();
        files.extend((0..1500).map(|i| (format!("old-{i}"), RecordsEntry::Unstamped)));
        let built = UidIndex {
            records: RecordsHalf::from_scan(Some(stamp(9)), files),
            state_only: (0..500).map(|i| format!("state-{i:03}")).collect(),
            log_offset: LogPosition::default(),
        };
        let path = UidIndex::path(&d);
        std::fs::write(&path, built.render()).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let loaded = UidIndex::load(&d).unwrap();
        assert!(matches!(loaded.records.stamped, Stamped::File { .. }));
        for uid in [1000, 1001, 1777, 3499] {
            let i = (uid - 1000) * 2;
            assert_eq!(
                with(&loaded, uid),
                [format!("user-{i}"), format!("user-{}", i + 1)],
                "{uid}"
            );
        }
        for absent in [0, 999, 3500, u32::MAX] {
            assert!(with(&loaded, absent).is_empty(), "{absent}");
        }
        assert_eq!(loaded.records.names().unwrap().len(), 6500);
        assert_eq!(loaded.records.unstamped.len(), 1500);
        assert_eq!(loaded.state_only.len(), 500);
        assert_eq!(loaded, built);
        // Cut in the middle of the last line: the search that reaches it fails, never "none".
        let text = built.render();
        std::fs::write(&path, &text[..text.len() - 3]).unwrap();
        let cut = UidIndex::load(&d).unwrap();
        assert_eq!(cut.records.stamped_with(3499), None);
        assert_eq!(cut.records.names(), None);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_stamp_is_kept_only_once_its_directory_has_settled() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        let at_100 = stamp(100 * 1_000_000_000);
        assert_eq!(UidIndex::settled_stamp(Some(at_100), t(100)), None);
        assert_eq!(UidIndex::settled_stamp(Some(at_100), t(101)), None);
        assert_eq!(UidIndex::settled_stamp(Some(at_100), t(102)), Some(at_100));
    }
}
