//! User-controlled text on its way to a terminal, a log line or a message: credential names
//! from per-user files, key comments, product names a device reports, user names.
//!
//! One place that decides what is safe to show, so `ctap-enroll`, the agent and the PAM
//! module's syslog lines cannot drift apart. Control characters (ESC, newline, DEL, C1) and
//! Unicode format characters (bidi overrides, zero-width) are shown as escapes, so no such
//! text can move the cursor, recolour root's terminal, forge a line or reorder what is read.

use std::fmt::Write as _;

/// The longest user-controlled field a log line or message carries, in bytes (before
/// escaping); longer values are cut at a character boundary and end in [`ELLIPSIS`].
pub const MAX_FIELD: usize = 256;

/// The PIN prompt's text unless root's policy names another (`pin_prompt`).
pub const DEFAULT_PIN_PROMPT: &str = "Security key PIN: ";

/// The marker of a value cut by [`bounded`].
pub const ELLIPSIS: &str = "…";

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}'                      // soft hyphen
            | '\u{061C}'                    // Arabic letter mark
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'       // zero-width, LRM/RLM
            | '\u{2028}'..='\u{202E}'       // line/paragraph separators, bidi embeddings
            | '\u{2060}'..='\u{206F}'       // word joiner, bidi isolates, invisible operators
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\\' => out.push_str("\\\\"),
        c if needs_escape(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// `value` with control and format characters escaped (`\n`, `\u{1b}`) and backslashes
/// doubled, so the escape is unambiguous. Plain text comes back unchanged.
pub fn printable(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        push_escaped(&mut out, c);
    }
    out
}

/// Whole program output (a table, a report, pretty JSON) made safe for a terminal: newlines
/// and tabs the program wrote stay, every other control or format character is escaped and
/// backslashes are left alone (so JSON stays JSON). A second line of defence behind escaping
/// each user-controlled field with [`printable`] or [`quoted`], which also escapes newlines.
pub fn terminal_safe(output: &str) -> std::borrow::Cow<'_, str> {
    if !output
        .chars()
        .any(|c| needs_escape(c) && c != '\n' && c != '\t')
    {
        return output.into();
    }
    let mut out = String::with_capacity(output.len() + 16);
    for c in output.chars() {
        if needs_escape(c) && c != '\n' && c != '\t' {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// `value` in double quotes, escaped as [`printable`] and with `"` escaped too: for a name in
/// the middle of a sentence or a `key="value"` field.
pub fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' {
            out.push_str("\\\"");
        } else {
            push_escaped(&mut out, c);
        }
    }
    out.push('"');
    out
}

/// [`quoted`], cut so the escaped text inside the quotes is at most `max` bytes (a value of
/// control characters grows up to ten times when escaped); a cut ends in [`ELLIPSIS`].
pub fn quoted_within(value: &str, max: usize) -> String {
    let mut out = String::from("\"");
    let mut one = String::new();
    for c in value.chars() {
        one.clear();
        if c == '"' {
            one.push_str("\\\"");
        } else {
            push_escaped(&mut one, c);
        }
        if out.len() - 1 + one.len() > max {
            out.push_str(ELLIPSIS);
            break;
        }
        out.push_str(&one);
    }
    out.push('"');
    out
}

/// At most `max` bytes of `value`, cut at a character boundary, with [`ELLIPSIS`] after a cut.
pub fn bounded(value: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if value.len() <= max {
        return value.into();
    }
    let mut end = max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &value[..end]).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_format_characters_are_escaped() {
        assert_eq!(printable("YubiKey 5"), "YubiKey 5");
        assert_eq!(printable("é 鍵 🔑"), "é 鍵 🔑");
        assert_eq!(printable("a\x1b[31mb\nc"), "a\\u{1b}[31mb\\nc");
        assert_eq!(
            printable("x\u{202e}y\u{7f}\u{9b}"),
            "x\\u{202e}y\\u{7f}\\u{9b}"
        );
        assert_eq!(
            printable("a\\nb"),
            "a\\\\nb",
            "a literal backslash-n is not a newline"
        );
        assert_eq!(quoted("say \"hi\"\r"), "\"say \\\"hi\\\"\\r\"");
        for s in ["\x1b]0;owned\x07", "\u{0}\u{1}\u{1f}", "\u{2066}\u{200b}"] {
            let p = printable(s);
            assert!(p.chars().all(|c| !needs_escape(c)), "{p}");
            let q = quoted(s);
            assert!(q.chars().all(|c| !needs_escape(c)), "{q}");
        }
    }

    #[test]
    fn terminal_safe_keeps_layout_and_escapes_the_rest() {
        assert_eq!(terminal_safe("a\tb\nc \\ \"d\""), "a\tb\nc \\ \"d\"");
        assert_eq!(terminal_safe("x\x1b[2Jy\r"), "x\\u{1b}[2Jy\\u{d}");
    }

    #[test]
    fn bounded_cuts_at_a_character_boundary_and_says_so() {
        assert_eq!(bounded("alice", 256), "alice");
        assert_eq!(bounded("abcdef", 3), "abc…");
        assert_eq!(bounded("ééé", 3), "é…", "never inside a character");
        assert!(bounded(&"x".repeat(4096), MAX_FIELD).len() <= MAX_FIELD + ELLIPSIS.len());
    }

    #[test]
    fn quoted_within_bounds_the_escaped_text() {
        assert_eq!(quoted_within("alice", 256), "\"alice\"");
        assert_eq!(quoted_within("a\"b", 256), quoted("a\"b"));
        assert_eq!(quoted_within("abcdef", 3), "\"abc…\"");
        let esc = quoted_within(&"\x1b".repeat(4096), MAX_FIELD);
        assert!(esc.len() <= MAX_FIELD + 2 + ELLIPSIS.len(), "{}", esc.len());
        assert!(esc.ends_with("\\u{1b}…\""), "whole escapes only: {esc}");
    }
}
