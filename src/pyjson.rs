//! JSON string literals exactly as Python's `json.dumps` (with `ensure_ascii`)
//! writes them: tokens are signed over these bytes, and the storage API sends
//! records this way.

/// Appends `s` as a JSON string the way Python's `json.dumps(ensure_ascii=True)` writes it.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
    }
    out.push('"');
}

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
