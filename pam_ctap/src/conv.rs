//! The PAM conversation as the library's [`Prompter`]: the touch cue and messages as
//! PAM_TEXT_INFO / PAM_ERROR_MSG, the PIN as a PAM_PROMPT_ECHO_OFF prompt.
//!
//! The PIN's journey: libpam's response buffer is zeroed and freed inside `pam-bindings`
//! (`Conv::send`) after it was copied into a zeroize-on-drop `SecretBytes`; from that we build a
//! [`Pin`] (zeroize-on-drop) and the `SecretBytes` is wiped when it goes out of scope.

use ctap_core::flows::session::Prompter;
use ctap_core::transport::ctap2::pin::Pin;
use pam::constants::{PAM_ERROR_MSG, PAM_PROMPT_ECHO_OFF, PAM_TEXT_INFO};
use pam::conv::Conv;

use crate::interrupt::SigintScope;

pub struct PamPrompter<'a> {
    conv: Option<Conv<'a>>,
    /// Installed from the first cue (a wait for the key begins) until the conversation is
    /// used again or the login ends ([`crate::interrupt`]).
    sigint: Option<SigintScope>,
    /// A SIGINT arrived during a wait: every later wait is cancelled, no PIN is asked.
    interrupted: bool,
    /// PAM_SILENT: the application asked for no informational messages. Prompts still happen
    /// (without the PIN there is no login), and so does the touch cue: it asks for an action,
    /// root turned it on (`cue`), and sudo passes PAM_SILENT by default (`pam_silent`), where a
    /// silent key would leave the user waiting for nothing. pam_u2f's cue behaves the same.
    silent: bool,
}

impl<'a> PamPrompter<'a> {
    pub fn new(conv: Option<Conv<'a>>, silent: bool) -> Self {
        PamPrompter {
            conv,
            sigint: None,
            interrupted: false,
            silent,
        }
    }

    /// Leave the SIGINT scope (the application's disposition is back); whether Ctrl-C was
    /// pressed during a wait.
    pub fn finish(&mut self) -> bool {
        self.leave_scope();
        self.interrupted
    }

    fn leave_scope(&mut self) {
        if let Some(scope) = self.sigint.take() {
            self.interrupted |= scope.caught();
        }
    }

    fn say(&self, style: pam::constants::PamMessageStyle, message: &str) {
        if !self.silent {
            self.show(style, message);
        }
    }

    fn show(&self, style: pam::constants::PamMessageStyle, message: &str) {
        if let Some(conv) = &self.conv {
            // A message that cannot be shown changes nothing about the result.
            let _ = conv.send(style, message);
        }
    }

    /// A failure the user should read ("No security key found").
    pub fn error(&mut self, message: &str) {
        self.say(PAM_ERROR_MSG, message);
    }
}

impl Prompter for PamPrompter<'_> {
    fn touch_cue(&mut self, message: &str) {
        // The application's conversation runs without our handler.
        self.leave_scope();
        self.show(PAM_TEXT_INFO, message);
        // A wait for the key follows: from now on Ctrl-C cancels it.
        self.sigint = Some(SigintScope::enter());
    }

    fn request_pin(&mut self, prompt: &str) -> Option<Pin> {
        self.leave_scope();
        if self.interrupted {
            return None;
        }
        let answer = self
            .conv
            .as_ref()?
            .send(PAM_PROMPT_ECHO_OFF, prompt)
            .ok()??;
        let text = answer.as_str().ok()?;
        // Strip a trailing newline some conversation functions keep.
        let text = text.strip_suffix('\n').unwrap_or(text);
        match Pin::new(text.to_owned()) {
            Ok(pin) => Some(pin),
            Err(_) => {
                self.error("A security key PIN has 4 to 63 characters");
                None
            }
        }
    }

    fn info(&mut self, message: &str) {
        self.say(PAM_TEXT_INFO, message);
    }

    fn cancelled(&mut self) -> bool {
        if let Some(scope) = &self.sigint {
            self.interrupted |= scope.caught();
        }
        self.interrupted
    }
}
