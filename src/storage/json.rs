//! Hand-written JSON output for the hot paths: exact two-decimal timestamps
//! and ASCII-only strings (`\u00e9`), as the Python server wrote them.

use std::fmt::Write as _;

use crate::db::Bso;
use crate::timestamp;

/// Appends `s` as a JSON string literal, escaping everything outside printable ASCII.
pub fn push_str(out: &mut String, s: &str) {
    crate::pyjson::push_str(out, s);
}

/// A JSON string literal.
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
    fn floats() {
        assert_eq!(float(0.0), "0.0");
        assert_eq!(float(2.0 / 1024.0), "0.001953125");
    }
}
