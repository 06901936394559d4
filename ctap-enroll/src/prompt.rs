//! The terminal side of [`Prompter`]: touch cues and messages on standard error, PINs from the
//! controlling terminal with echo off (or, with `--pin-stdin`, one line of standard input each).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};

use ctap_core::flows::session::Prompter;
use ctap_core::transport::ctap2::pin::Pin;
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

/// Prompt on /dev/tty and read a line with echo off, restoring the terminal afterwards.
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
    let saved = termios::tcgetattr(&tty).ok();
    if let Some(saved) = &saved {
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHO);
        quiet.local_flags.insert(LocalFlags::ECHONL);
        let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, &quiet);
    }
    let mut line = Zeroizing::new(String::new());
    let read = BufReader::new(&tty).read_line(&mut line);
    if let Some(saved) = &saved {
        let _ = termios::tcsetattr(&tty, SetArg::TCSAFLUSH, saved);
    } else {
        let _ = writeln!(out);
    }
    match read {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line),
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
