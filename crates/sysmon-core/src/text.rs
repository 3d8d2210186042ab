//! Text from untrusted input, made safe to print and bounded in size.
//!
//! Error messages, dead-letter headers, logs and terminal output may quote what
//! a sender wrote (a field value, a machine's host name). Quoted text goes
//! through [`escape`] (control characters, including terminal escape
//! sequences, become visible `\u{1b}`-style escapes) and, where it is echoed
//! into an error, through [`bounded`], which also keeps only its head and tail
//! around a note of how much was left out.

use std::borrow::Cow;

/// Longest quote of input kept in one error field, in bytes.
pub const MAX_QUOTE_BYTES: usize = 256;

/// Longest error text carried anywhere (dead-letter `reason` header, logs), in bytes.
pub const MAX_REASON_BYTES: usize = 1024;

/// `s` with every control character (C0, DEL, C1: what terminals act on)
/// written as a Rust-style escape (`\n`, `\u{1b}`); borrowed when there is none.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The largest index `<= i` that is a char boundary of `s`.
fn floor_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The smallest index `>= i` that is a char boundary of `s`.
fn ceil_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i += 1;
    }
    i
}

/// [`escape`]d `s`, at most about `max` bytes: a longer text keeps its head and
/// its tail (where serde puts "expected f64 at line 1 column 9") around
/// `…[N bytes elided]…`. Borrowed when nothing had to change.
pub fn bounded(s: &str, max: usize) -> Cow<'_, str> {
    let escaped = escape(s);
    if escaped.len() <= max {
        return escaped;
    }
    let keep = max.saturating_sub(32) / 2;
    let head = floor_boundary(&escaped, keep);
    let tail = ceil_boundary(&escaped, escaped.len() - keep);
    let elided = tail - head;
    Cow::Owned(format!(
        "{}…[{elided} bytes elided]…{}",
        &escaped[..head],
        &escaped[tail..]
    ))
}

/// [`bounded`] to [`MAX_QUOTE_BYTES`], as an owned string.
pub fn quote(s: &str) -> String {
    bounded(s, MAX_QUOTE_BYTES).into_owned()
}

/// Cuts `s` (already escaped) to at most `max` bytes on a char boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    &s[..floor_boundary(s, max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_clean_text_is_borrowed() {
        assert!(matches!(escape("web-01"), Cow::Borrowed(_)));
        assert_eq!(escape("a\u{1b}[2Jb\n"), "a\\u{1b}[2Jb\\n");
        assert_eq!(escape("\u{9b}31m"), "\\u{9b}31m", "C1 CSI too");
        assert_eq!(escape("héllo ✓"), "héllo ✓");
    }

    #[test]
    fn long_text_keeps_head_and_tail_within_the_bound() {
        let s = format!(
            "invalid type: string \"{}\", expected f64",
            "é".repeat(500_000)
        );
        let b = bounded(&s, 200);
        assert!(b.len() <= 200, "{} bytes", b.len());
        assert!(b.starts_with("invalid type: string"), "{b}");
        assert!(b.ends_with("expected f64"), "{b}");
        assert!(b.contains("bytes elided"), "{b}");
        assert_eq!(bounded("short", 200), "short");
        assert_eq!(truncate("é", 1), "");
        // escapes are counted after escaping: the bound holds for them too
        let esc = "\u{1b}".repeat(10_000);
        assert!(bounded(&esc, 100).len() <= 100);
    }
}
