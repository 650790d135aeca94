//! `Accept` negotiation with the Python server's observed results.

/// The formats a view can render.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    /// `application/newlines`: one JSON value per line.
    Newlines,
}

impl Format {
    fn mime(self) -> (&'static str, &'static str) {
        match self {
            Format::Json => ("application", "json"),
            Format::Newlines => ("application", "newlines"),
        }
    }
}

/// The q-value the header gives a format, by the most specific matching range.
fn quality(header: &str, format: Format) -> f32 {
    let (ty, sub) = format.mime();
    let mut best: Option<(u8, f32)> = None;
    for range in header.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((rt, rs)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (rt, rs) {
            (t, s) if t == ty && s == sub => 3,
            (t, "*") if t == ty => 2,
            ("*", "*") => 1,
            _ => continue,
        };
        let mut q = 1.0;
        for p in parts {
            if let Some((k, v)) = p.split_once('=') {
                if k.trim().eq_ignore_ascii_case("q") {
                    q = v.trim().parse::<f32>().unwrap_or(0.0).clamp(0.0, 1.0);
                }
            }
        }
        if best.is_none_or(|(s, _)| specificity > s) {
            best = Some((specificity, q));
        }
    }
    best.map(|(_, q)| q).unwrap_or(0.0)
}

/// Picks among `offered` (in priority order for ties: the *last* wins, as the
/// Python server preferred newlines). No header means `application/json`.
pub fn negotiate(header: Option<&[u8]>, offered: &[Format]) -> Option<Format> {
    let Some(raw) = header else {
        return offered.first().copied();
    };
    let header = String::from_utf8_lossy(raw);
    let mut chosen: Option<(Format, f32)> = None;
    for f in offered {
        let q = quality(&header, *f);
        if q > 0.0 && chosen.is_none_or(|(_, best)| q >= best) {
            chosen = Some((*f, q));
        }
    }
    chosen.map(|(f, _)| f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOTH: &[Format] = &[Format::Json, Format::Newlines];

    #[test]
    fn matches_the_python_table() {
        let n = |h: Option<&str>| negotiate(h.map(str::as_bytes), BOTH);
        assert_eq!(
            n(Some("application/json;q=0.9,*/*;q=0.2")),
            Some(Format::Json)
        );
        assert_eq!(n(Some("application/json")), Some(Format::Json));
        assert_eq!(n(None), Some(Format::Json));
        assert_eq!(n(Some("*/*")), Some(Format::Newlines));
        assert_eq!(n(Some("application/*")), Some(Format::Newlines));
        assert_eq!(n(Some("application/json, */*")), Some(Format::Newlines));
        assert_eq!(
            n(Some("application/json;q=0.5, application/newlines")),
            Some(Format::Newlines)
        );
        assert_eq!(n(Some("text/html, */*;q=0.1")), Some(Format::Newlines));
        assert_eq!(n(Some("text/plain")), None);
        assert_eq!(n(Some("")), None);
    }

    #[test]
    fn json_only_views() {
        let j = |h: &str| negotiate(Some(h.as_bytes()), &[Format::Json]);
        assert_eq!(j("application/newlines"), None);
        assert_eq!(j("*/*"), Some(Format::Json));
        assert_eq!(j("application/json;q=0"), None);
    }
}
