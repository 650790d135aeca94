//! A hand-written SVG chart: throughput and p99 latency against concurrency, one line per
//! series (workload, prefixed by the run label when several labels are charted).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::stats::Report;

const W: f64 = 460.0;
const H: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 44.0;
const COLORS: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];

/// Series name → (concurrency → (throughput, p99 ms)).
type Series = BTreeMap<String, BTreeMap<usize, (f64, f64)>>;

fn collect(reports: &[Report]) -> Series {
    let labels: std::collections::BTreeSet<&str> =
        reports.iter().map(|r| r.label.as_str()).collect();
    let mut series = Series::new();
    for rep in reports {
        for r in &rep.results {
            let name = if labels.len() > 1 {
                format!("{} {}", rep.label, r.workload)
            } else {
                r.workload.clone()
            };
            series
                .entry(name)
                .or_default()
                .insert(r.concurrency, (r.throughput, r.latency_ms.p99));
        }
    }
    series
}

/// The decades a log axis spans: 10^lo ..= 10^hi, covering every positive value.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut min, mut max) = (f64::MAX, 0.0_f64);
    for v in values.filter(|v| *v > 0.0 && v.is_finite()) {
        min = min.min(v);
        max = max.max(v);
    }
    if max <= 0.0 {
        return (0, 1);
    }
    let lo = min.log10().floor() as i32;
    let hi = (max.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

fn tick_label(exp: i32) -> String {
    if exp >= 0 {
        format!("{}", 10u64.saturating_pow(exp.unsigned_abs()))
    } else {
        format!("{}", 10f64.powi(exp))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One panel at horizontal offset `x0`; `pick` chooses throughput (0) or p99 (1).
fn panel(out: &mut String, x0: f64, title: &str, series: &Series, levels: &[usize], pick: usize) {
    let val = |p: &(f64, f64)| if pick == 0 { p.0 } else { p.1 };
    // Log scale: the workloads span two to three orders of magnitude.
    let (lo, hi) = decades(series.values().flat_map(|m| m.values().map(val)));
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    let x_of = |c: usize| {
        let i = levels.iter().position(|l| *l == c).unwrap_or(0) as f64;
        let n = (levels.len().max(2) - 1) as f64;
        x0 + LEFT
            + if levels.len() < 2 {
                pw / 2.0
            } else {
                pw * i / n
            }
    };
    let y_of = |v: f64| {
        let l = if v > 0.0 { v.log10() } else { f64::from(lo) };
        let f = ((l - f64::from(lo)) / f64::from(hi - lo)).clamp(0.0, 1.0);
        TOP + ph - ph * f
    };
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="20" font-weight="bold" text-anchor="middle">{}</text>"#,
        x0 + LEFT + pw / 2.0,
        esc(title)
    );
    for exp in lo..=hi {
        let y = y_of(10f64.powi(exp));
        let _ = writeln!(
            out,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            x0 + LEFT,
            x0 + LEFT + pw,
            x0 + LEFT - 6.0,
            y + 4.0,
            tick_label(exp)
        );
    }
    for c in levels {
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{c}</text>"#,
            x_of(*c),
            TOP + ph + 18.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">concurrency (client connections)</text>"#,
        x0 + LEFT + pw / 2.0,
        H - 6.0
    );
    for (k, (_, pts)) in series.iter().enumerate() {
        let color = COLORS.get(k % COLORS.len()).copied().unwrap_or("#000");
        let path: Vec<String> = pts
            .iter()
            .map(|(c, p)| format!("{:.1},{:.1}", x_of(*c), y_of(val(p))))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for pt in &path {
            if let Some((x, y)) = pt.split_once(',') {
                let _ = writeln!(out, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
            }
        }
    }
}

/// The chart of all results in `reports`.
pub fn chart(reports: &[Report]) -> String {
    let series = collect(reports);
    let mut levels: Vec<usize> = series.values().flat_map(|m| m.keys().copied()).collect();
    levels.sort_unstable();
    levels.dedup();
    let legend_rows = series.len().div_ceil(3);
    let total_h = H + 20.0 + 18.0 * legend_rows as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{total_h:.0}" viewBox="0 0 {w:.0} {total_h:.0}" font-family="sans-serif" font-size="12">"#,
        w = 2.0 * W
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    panel(
        &mut out,
        0.0,
        "throughput (successful req/s, log scale)",
        &series,
        &levels,
        0,
    );
    panel(
        &mut out,
        W,
        "p99 latency (ms, log scale)",
        &series,
        &levels,
        1,
    );
    for (k, name) in series.keys().enumerate() {
        let color = COLORS.get(k % COLORS.len()).copied().unwrap_or("#000");
        let x = LEFT + (k % 3) as f64 * 280.0;
        let y = H + 12.0 + 18.0 * (k / 3) as f64;
        let _ = writeln!(
            out,
            r#"<rect x="{x:.1}" y="{:.1}" width="14" height="4" fill="{color}"/><text x="{:.1}" y="{y:.1}">{}</text>"#,
            y - 4.0,
            x + 20.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Latency, RunResult};

    fn run(w: &str, c: usize, tp: f64) -> RunResult {
        RunResult {
            workload: w.into(),
            concurrency: c,
            seconds: 1.0,
            ok: tp as u64,
            throughput: tp,
            latency_ms: Latency {
                p99: 2.0,
                ..Latency::default()
            },
            errors: Default::default(),
            transport_errors: 0,
            transport_messages: Vec::new(),
        }
    }

    #[test]
    fn one_line_per_workload() {
        let rep = Report {
            target: "t".into(),
            label: "ours".into(),
            started: 0,
            setup_requests: 0,
            results: vec![
                run("info", 1, 100.0),
                run("info", 4, 300.0),
                run("batch", 1, 5.0),
            ],
        };
        let svg = chart(&[rep]);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert_eq!(svg.matches("<polyline").count(), 4, "2 series × 2 panels");
        assert!(svg.contains(">info<") && svg.contains(">batch<"));
    }

    #[test]
    fn log_axis_covers_all_values() {
        assert_eq!(decades([60.0, 12_000.0].into_iter()), (1, 5));
        assert_eq!(decades([0.0].into_iter()), (0, 1));
        assert_eq!(decades([0.25, 0.3].into_iter()), (-1, 0));
        assert_eq!(tick_label(3), "1000");
        assert_eq!(tick_label(-1), "0.1");
    }
}
