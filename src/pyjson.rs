//! JSON string literals exactly as Python's `json.dumps` (with `ensure_ascii`)
//! writes them: tokens are signed over these bytes, and the storage API sends
//! records this way.

/// Appends `s` as a JSON string the way Python's `json.dumps(ensure_ascii=True)` writes it.
pub fn push_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut run = 0;
    let mut i = 0;
    // Copy runs of plain printable ASCII in one go: payloads are mostly that.
    while i < bytes.len() {
        match bytes[i..].iter().position(|b| ESCAPE[usize::from(*b)]) {
            Some(n) => i += n,
            None => break,
        }
        out.push_str(&s[run..i]);
        let c = s[i..].chars().next().unwrap_or('\u{fffd}');
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
        i += c.len_utf8();
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Bytes that cannot be copied as they are: controls, `"`, `\\`, DEL and
/// everything outside ASCII.
const ESCAPE: [bool; 256] = {
    let mut table = [true; 256];
    let mut b = b' ';
    while b <= b'~' {
        table[b as usize] = b == b'"' || b == b'\\';
        b += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    fn lit(s: &str) -> String {
        let mut out = String::new();
        super::push_str(&mut out, s);
        out
    }

    #[test]
    fn escapes_like_python() {
        assert_eq!(lit("héllo \"x\"\n"), r#""h\u00e9llo \"x\"\n""#);
        assert_eq!(lit("😀"), r#""\ud83d\ude00""#);
        assert_eq!(lit("\u{1}\u{8}"), r#""\u0001\b""#);
        let back: String = serde_json::from_str(&lit("a\u{7f}é😀\\")).unwrap();
        assert_eq!(back, "a\u{7f}é😀\\");
    }
}
