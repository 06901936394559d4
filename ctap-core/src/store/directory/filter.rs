//! The search filter: root's template with the user name escaped per RFC 4515 §3, so a name
//! such as `*)(uid=*` is a literal value, never filter syntax.

/// The placeholder in the filter template.
pub const PLACEHOLDER: &str = "{user}";

/// RFC 4515 §3 value escaping: `*`, `(`, `)`, `\` and NUL become `\XX` (two hex digits). Every
/// other byte outside printable ASCII is escaped too, so the filter stays plain ASCII whatever
/// the name holds.
pub fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if matches!(b, b'*' | b'(' | b')' | b'\\' | 0) || !(0x20..0x7f).contains(&b) {
            out.push_str(&format!("\\{b:02x}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// The filter for `user`: every `{user}` in `template` replaced by the escaped name.
pub fn for_user(template: &str, user: &str) -> String {
    template.replace(PLACEHOLDER, &escape_value(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_attempts_are_literal() {
        assert_eq!(escape_value("alice"), "alice");
        assert_eq!(escape_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_value("a\\b"), "a\\5cb");
        assert_eq!(escape_value("a\0b"), "a\\00b");
        assert_eq!(escape_value("(x)"), "\\28x\\29");
        assert_eq!(escape_value("é"), "\\c3\\a9");
        assert_eq!(
            for_user("(&(objectClass=posixAccount)(uid={user}))", "*)(uid=*"),
            "(&(objectClass=posixAccount)(uid=\\2a\\29\\28uid=\\2a))"
        );
    }

    #[test]
    fn escaped_output_has_no_filter_syntax() {
        for name in ["*", ")(", "\\", "\0", "a*b(c)d\\e\0f", "x)(|(uid=*"] {
            let e = escape_value(name);
            assert!(!e.contains(['*', '(', ')', '\0']), "{name:?} -> {e}");
            // Every backslash starts a two-digit hex escape.
            let bytes = e.as_bytes();
            for (i, b) in bytes.iter().enumerate() {
                if *b == b'\\' {
                    assert!(bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit());
                }
            }
        }
    }
}
