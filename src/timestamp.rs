//! Sync timestamps: integer milliseconds inside, seconds with exactly two
//! decimals on the wire (`1795866752.40`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch; server timestamps are multiples of 10.
pub type Ms = i64;

/// The wall clock in milliseconds.
pub fn now_ms() -> Ms {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Ms)
        .unwrap_or(0)
}

/// The wall clock in (fractional) seconds.
pub fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Rounds milliseconds up to the next 10 ms tick (two decimals of a second).
pub fn ceil_tick(ms: Ms) -> Ms {
    (ms + 9).div_euclid(10) * 10
}

/// `1795866752.40`: always two decimals.
pub fn format(ms: Ms) -> String {
    let ms = ceil_tick(ms.max(0));
    format!("{}.{:02}", ms / 1000, (ms % 1000) / 10)
}

/// The header form for a resource that may be absent: `0` when absent.
pub fn format_or_zero(ms: Option<Ms>) -> String {
    match ms {
        Some(ms) if ms > 0 => format(ms),
        _ => "0".to_string(),
    }
}

/// Parses a client timestamp (`newer`, `older`, `X-If-*`): a non-negative decimal
/// number of seconds, exponent allowed, rounded up to two decimals.
pub fn parse(s: &str) -> Option<Ms> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    // Only plain decimal syntax: no "inf", "nan", hex or signs other than a leading '-'.
    if !s
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
    {
        return None;
    }
    let v: f64 = s.parse().ok()?;
    if !v.is_finite() || !(0.0..=1e13).contains(&v) {
        return None;
    }
    // Work on the decimal text when possible so that 1.001 rounds up to 1.01
    // without binary floating-point surprises.
    if let Some(ms) = parse_plain_decimal(s) {
        return Some(ms);
    }
    Some(ceil_tick((v * 1000.0).ceil() as Ms))
}

/// Exact parse of `digits[.digits]`, rounded up to 10 ms.
fn parse_plain_decimal(s: &str) -> Option<Ms> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    if !int.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let first2: i64 = format!("{:0<2}", &frac[..frac.len().min(2)]).parse().ok()?;
    let rest_nonzero = frac.len() > 2 && frac[2..].bytes().any(|b| b != b'0');
    let centis = first2 + i64::from(rest_nonzero);
    secs.checked_mul(1000)?.checked_add(centis * 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_has_two_decimals() {
        assert_eq!(format(1795866752400), "1795866752.40");
        assert_eq!(format(1795866752430), "1795866752.43");
        assert_eq!(format(1000), "1.00");
        assert_eq!(format(0), "0.00");
        assert_eq!(format(1001), "1.01");
        assert_eq!(format_or_zero(None), "0");
        assert_eq!(format_or_zero(Some(0)), "0");
    }

    #[test]
    fn parsing_rounds_up() {
        assert_eq!(parse("1.001"), Some(1010));
        assert_eq!(parse("1.01"), Some(1010));
        assert_eq!(parse("1.010000"), Some(1010));
        assert_eq!(parse("1795866752.43"), Some(1795866752430));
        assert_eq!(parse("0"), Some(0));
        assert_eq!(parse(".5"), Some(500));
        assert_eq!(parse("1e3"), Some(1_000_000));
        assert_eq!(parse("5."), Some(5000));
    }

    #[test]
    fn parsing_rejects_garbage() {
        for bad in [
            "", "-1", "abc", "1.2.3", "inf", "nan", "0x10", "1e400", " ", ".",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ticks() {
        assert_eq!(ceil_tick(1001), 1010);
        assert_eq!(ceil_tick(1010), 1010);
        assert_eq!(ceil_tick(0), 0);
    }
}
