//! JSON string literals exactly as Python's `json.dumps` (with `ensure_ascii`)
//! writes them: tokens are signed over these bytes, and the storage API sends
//! records this way.

/// Appends `s` as a JSON string the way Python's `json.dumps(ensure_ascii=True)` writes it.
pub fn push_str(out: &mut String, s: &str) {
    use std::fmt::Write as _;
    out.reserve(s.len() + 2);
    out.push('"');
    let mut run = 0;
    // Copy runs of plain printable ASCII in one go: payloads are mostly that.
    while let Some(i) = next_escape(s.as_bytes(), run) {
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
        run = i + c.len_utf8();
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// The length of `s` as [`push_str`] writes it, quotes included: what a
/// string costs in a response, which can be six times its UTF-8 bytes (a
/// control character becomes `\u0001`, an emoji `\ud83d\ude00`).
pub fn escaped_len(s: &str) -> u64 {
    let bytes = s.as_bytes();
    let mut chunks = bytes.chunks_exact(8);
    let mut len = 2;
    for chunk in chunks.by_ref() {
        len += if word(chunk).is_some_and(|w| needs_escape(w) == 0) {
            8
        } else {
            chunk
                .iter()
                .map(|b| u64::from(ESCAPED_LEN[usize::from(*b)]))
                .sum()
        };
    }
    let tail: u64 = chunks
        .remainder()
        .iter()
        .map(|b| u64::from(ESCAPED_LEN[usize::from(*b)]))
        .sum();
    len + tail
}

/// Where the first byte at or after `from` that cannot be copied as it is
/// sits. Eight bytes are checked at a time (a payload's base64 is long runs
/// of plain bytes); only the word holding such a byte is looked at bytewise.
fn next_escape(bytes: &[u8], from: usize) -> Option<usize> {
    let rest = bytes.get(from..)?;
    let mut clean = 0;
    for chunk in rest.chunks_exact(8) {
        if word(chunk).is_none_or(|w| needs_escape(w) != 0) {
            break;
        }
        clean += 8;
    }
    rest[clean..]
        .iter()
        .position(|b| ESCAPE[usize::from(*b)])
        .map(|n| from + clean + n)
}

fn word(chunk: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(chunk).ok().map(u64::from_le_bytes)
}

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// Non-zero if one of the eight bytes of `w` is one [`ESCAPE`] lists (the
/// high bit of that byte is set; bytes above it may be set too, by a
/// borrow, so only "zero or not" is meaningful). Zero means all eight are
/// printable ASCII other than `"` and `\`.
fn needs_escape(w: u64) -> u64 {
    // The high bit of each byte that is below `n` (n <= 0x80).
    let below = |v: u64, n: u64| v.wrapping_sub(ONES * n) & !v & HIGH;
    let equal = |v: u64, b: u8| below(v ^ (ONES * u64::from(b)), 1);
    below(w, 0x20) | (w & HIGH) | equal(w, b'"') | equal(w, b'\\') | equal(w, 0x7f)
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

/// What each byte adds to [`escaped_len`]: a UTF-8 sequence is counted on its
/// lead byte (`\uXXXX`, or a surrogate pair for four bytes) and its
/// continuation bytes add nothing.
const ESCAPED_LEN: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        table[b] = match b as u8 {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0x20..=0x7e => 1,
            0x00..=0x1f | 0x7f => 6,
            0x80..=0xbf => 0,
            0xc0..=0xef => 6,
            _ => 12,
        };
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

    /// The escaping as it was written before the word-at-a-time scan: one
    /// char at a time, the rules of Python's `ensure_ascii` spelled out.
    fn reference(s: &str) -> String {
        let mut out = String::from("\"");
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
        out
    }

    #[test]
    fn escapes_like_python() {
        assert_eq!(lit("héllo \"x\"\n"), r#""h\u00e9llo \"x\"\n""#);
        assert_eq!(lit("😀"), r#""\ud83d\ude00""#);
        assert_eq!(lit("\u{1}\u{8}"), r#""\u0001\b""#);
        let back: String = serde_json::from_str(&lit("a\u{7f}é😀\\")).unwrap();
        assert_eq!(back, "a\u{7f}é😀\\");
        // Python 3's json.dumps(s) of each string, run by hand.
        for (s, python) in [
            ("a\u{7f}é😀\\", r#""a\u007f\u00e9\ud83d\ude00\\""#),
            (
                "\u{0}\u{1f} ~\u{7f}\u{80}",
                r#""\u0000\u001f ~\u007f\u0080""#,
            ),
            ("tab\there\r\u{c}/</script>", r#""tab\there\r\f/</script>""#),
            (
                "\u{2028}\u{2029}\u{feff}\u{ffff}",
                r#""\u2028\u2029\ufeff\uffff""#,
            ),
            ("xxxxxxxxx\"", r#""xxxxxxxxx\"""#),
            ("0123456é789abcdef\\", r#""0123456\u00e9789abcdef\\""#),
        ] {
            assert_eq!(lit(s), python, "{s:?}");
        }
    }

    /// Every byte that matters at every position of an eight-byte word, and
    /// runs longer than a word before and after it.
    #[test]
    fn same_output_as_one_char_at_a_time() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}", "\u{7f}", "\u{80}",
            "é", "€", "😀", " ", "~", "!", "#", "[", "]", "}",
        ];
        let plain = "abcdefghijklmnopqrstuvwxyz0123456789+/=";
        let mut cases = vec![String::new(), plain.to_string()];
        for special in specials {
            for before in 0..20 {
                for after in [0, 1, 7, 8, 9, 17] {
                    cases.push(format!("{}{special}{}", &plain[..before], &plain[..after]));
                    cases.push(format!("{special}{}{special}", &plain[..before]));
                }
            }
        }
        // A pseudo-random mix of all of them.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..(x % 40) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                match x % 3 {
                    0 => s.push_str(specials[(x >> 8) as usize % specials.len()]),
                    _ => s.push_str(&plain[..(x >> 8) as usize % 12]),
                }
            }
            cases.push(s);
        }
        for s in &cases {
            let out = lit(s);
            assert_eq!(out, reference(s), "{s:?}");
            assert_eq!(super::escaped_len(s), out.len() as u64, "{s:?}");
        }
    }

    #[test]
    fn word_check_finds_every_byte_to_escape() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let mut bytes = *b"abcdefgh";
                bytes[at] = b;
                let w = u64::from_le_bytes(bytes);
                assert_eq!(
                    super::needs_escape(w) != 0,
                    super::ESCAPE[usize::from(b)],
                    "byte {b:#x} at {at}"
                );
            }
        }
    }
}
