//! Hand-written JSON output for the hot paths: exact two-decimal timestamps
//! and ASCII-only strings (`\u00e9`), as the Python server wrote them.

use std::fmt::Write as _;

use crate::db::Bso;
use crate::timestamp;

/// Appends `s` as a JSON string literal, escaping everything outside printable ASCII.
pub fn push_str(out: &mut String, s: &str) {
    crate::pyjson::push_str(out, s);
}

pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_str(&mut out, s);
    out
}

/// Appends a record object: `id`, `modified`, `payload`, and `sortindex` when set.
pub fn push_bso(out: &mut String, b: &Bso) {
    out.push_str("{\"id\": ");
    push_str(out, &b.id);
    out.push_str(", \"modified\": ");
    out.push_str(&timestamp::format(b.modified));
    out.push_str(", \"payload\": ");
    push_str(out, &b.payload);
    if let Some(s) = b.sortindex {
        let _ = write!(out, ", \"sortindex\": {s}");
    }
    out.push('}');
}

/// The length of `s` as [`push_str`] writes it, quotes included.
pub fn str_len(s: &str) -> u64 {
    crate::pyjson::escaped_len(s)
}

/// The length of a record as [`push_bso`] writes it, to within the digits of
/// its numbers, plus the separator between records.
pub fn bso_len(b: &Bso) -> u64 {
    // `{"id": , "modified": 1795866752.40, "payload": , "sortindex": -999999999}, `
    const FRAME: u64 = 80;
    str_len(&b.id) + str_len(&b.payload) + FRAME
}

/// The length of an id in an ids-only listing, plus the separator.
pub fn id_len(b: &Bso) -> u64 {
    str_len(&b.id) + 2
}

/// `{"name": value, ...}` from pairs whose values are already JSON text.
pub fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_str(&mut out, k);
        out.push_str(": ");
        out.push_str(&v);
    }
    out.push('}');
    out
}

/// A float the way JSON (and Python's repr) shows it: `0.0`, `0.001953125`.
pub fn float(v: f64) -> String {
    serde_json::Value::from(v).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let mut out = String::new();
        push_bso(
            &mut out,
            &Bso {
                id: "a".into(),
                modified: 1795866752400,
                payload: "p".into(),
                sortindex: Some(3),
            },
        );
        assert_eq!(
            out,
            r#"{"id": "a", "modified": 1795866752.40, "payload": "p", "sortindex": 3}"#
        );
    }

    #[test]
    fn lengths_match_what_is_written() {
        for s in [
            "",
            "plain",
            "q\"b\\n\n\t",
            "\u{1}\u{7f}",
            "é€",
            "\u{1F600}x",
        ] {
            let mut out = String::new();
            push_str(&mut out, s);
            assert_eq!(str_len(s), out.len() as u64, "{s:?} -> {out}");
        }
        let b = Bso {
            id: "a".repeat(64),
            modified: 1795866752400,
            payload: "p\u{1}".into(),
            sortindex: Some(-999_999_999),
        };
        let mut out = String::new();
        push_bso(&mut out, &b);
        assert!(bso_len(&b) >= out.len() as u64 + 2);
    }

    #[test]
    fn floats() {
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(2.0 / 1024.0), "0.001953125");
    }
}
