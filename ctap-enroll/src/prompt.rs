//! The terminal side of [`Prompter`]: touch cues and messages on standard error, PINs from the
//! controlling terminal with echo off (or, with `--pin-stdin`, one line of standard input each).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Write};

use ctap_core::flows::session::Prompter;
use ctap_core::transport::ctap2::pin::Pin;
use nix::sys::signal::Signal;
use nix::sys::termios::{self, LocalFlags, SetArg};
use zeroize::Zeroizing;

pub struct TerminalPrompter {
    pin_stdin: bool,
}

impl TerminalPrompter {
    pub fn new(pin_stdin: bool) -> Self {
        TerminalPrompter { pin_stdin }
    }

    /// Read one secret line; `None` if there is nothing to read from, or it was empty.
    pub fn read_secret(&mut self, prompt: &str) -> Option<Zeroizing<String>> {
        let line = if self.pin_stdin {
            let mut line = Zeroizing::new(String::new());
            match std::io::stdin().lock().read_line(&mut line) {
                Ok(0) | Err(_) => None,
                Ok(_) => Some(line),
            }
        } else {
            read_from_tty(prompt)
        }?;
        let mut line = line;
        let len = line.trim_end_matches(['\n', '\r']).len();
        line.truncate(len);
        (!line.is_empty()).then_some(line)
    }
}

fn stderr(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{message}");
}

/// The terminal's settings as they were before the prompt, put back when this drops: after the
/// line, an error, a panic, or Ctrl-C (which [`read_from_tty`] reads as a byte, puts the terminal
/// back, then raises SIGINT on itself), so echo is never left off.
struct RestoreOnDrop<'a> {
    tty: &'a File,
    saved: termios::Termios,
}

impl Drop for RestoreOnDrop<'_> {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(self.tty, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// What one byte typed at the PIN prompt does.
#[derive(Debug, PartialEq, Eq)]
enum Typed {
    Char(u8),
    Erase,
    Kill,
    Enter,
    /// Ctrl-D on an empty line.
    EndOfFile,
    /// Ctrl-C or Ctrl-\: the signal is raised once the terminal is restored.
    Signal(Signal),
    Ignore,
}

fn typed(b: u8, line_empty: bool, special: &termios::Termios) -> Typed {
    use nix::sys::termios::SpecialCharacterIndices as I;
    let cc = |i: I| special.control_chars[i as usize];
    match b {
        b'\n' | b'\r' => Typed::Enter,
        _ if b == cc(I::VINTR) => Typed::Signal(Signal::SIGINT),
        _ if b == cc(I::VQUIT) => Typed::Signal(Signal::SIGQUIT),
        _ if b == cc(I::VERASE) || b == 0x7f || b == 0x08 => Typed::Erase,
        _ if b == cc(I::VKILL) => Typed::Kill,
        _ if b == cc(I::VEOF) && line_empty => Typed::EndOfFile,
        _ if b < 0x20 => Typed::Ignore,
        _ => Typed::Char(b),
    }
}

/// Prompt on /dev/tty and read a line with echo off. The terminal is in non-canonical mode
/// without signals for the read (the line editing is ours: erase, kill, end of file), so Ctrl-C
/// arrives as a byte: the terminal is restored first, then SIGINT is raised as the terminal
/// would have (the process ends as on any Ctrl-C; a process ignoring SIGINT gets `None`).
fn read_from_tty(prompt: &str) -> Option<Zeroizing<String>> {
    let tty = match OpenOptions::new().read(true).write(true).open("/dev/tty") {
        Ok(t) => t,
        Err(_) => {
            stderr("ctap-enroll: no terminal to read the PIN from: run in a terminal, or use --pin-stdin");
            return None;
        }
    };
    let mut out: &File = &tty;
    let _ = write!(out, "{prompt}");
    let _ = out.flush();
    let Ok(saved) = termios::tcgetattr(&tty) else {
        // Not a terminal we can quiet: refuse rather than show the PIN.
        stderr("ctap-enroll: cannot turn off echo on the terminal: use --pin-stdin");
        return None;
    };
    let mut quiet = saved.clone();
    quiet
        .local_flags
        .remove(LocalFlags::ECHO | LocalFlags::ICANON | LocalFlags::ISIG);
    quiet.control_chars[termios::SpecialCharacterIndices::VMIN as usize] = 1;
    quiet.control_chars[termios::SpecialCharacterIndices::VTIME as usize] = 0;
    let guard = RestoreOnDrop {
        tty: &tty,
        saved: saved.clone(),
    };
    if termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet).is_err() {
        stderr("ctap-enroll: cannot turn off echo on the terminal: use --pin-stdin");
        return None;
    }
    let mut line = Zeroizing::new(Vec::<u8>::with_capacity(64));
    let mut byte = Zeroizing::new([0u8; 1]);
    let mut input: &File = &tty;
    let outcome = loop {
        match input.read(&mut byte[..]) {
            Ok(0) => break Err(None),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break Err(None),
        }
        match typed(byte[0], line.is_empty(), &saved) {
            Typed::Char(b) if line.len() < 4096 => line.push(b),
            Typed::Char(_) | Typed::Ignore => {}
            Typed::Erase => {
                // Erase one UTF-8 character.
                while let Some(b) = line.pop() {
                    if b & 0xc0 != 0x80 {
                        break;
                    }
                }
            }
            Typed::Kill => line.clear(),
            Typed::Enter => break Ok(()),
            Typed::EndOfFile => break Err(None),
            Typed::Signal(sig) => break Err(Some(sig)),
        }
    };
    drop(guard);
    let _ = writeln!(out);
    match outcome {
        Ok(()) => match String::from_utf8(std::mem::take(&mut *line)) {
            Ok(text) => Some(Zeroizing::new(text)),
            Err(e) => {
                drop(Zeroizing::new(e.into_bytes()));
                None
            }
        },
        Err(Some(sig)) => {
            // Echo is back on: now do what the terminal would have done with the key.
            let _ = nix::sys::signal::raise(sig);
            None
        }
        Err(None) => None,
    }
}

impl Prompter for TerminalPrompter {
    fn touch_cue(&mut self, message: &str) {
        stderr(message);
    }

    fn request_pin(&mut self, prompt: &str) -> Option<Pin> {
        let line = self.read_secret(prompt)?;
        match Pin::new(line.to_string()) {
            Ok(p) => Some(p),
            Err(e) => {
                stderr(&format!("ctap-enroll: {e}"));
                None
            }
        }
    }

    fn info(&mut self, message: &str) {
        stderr(message);
    }
}
