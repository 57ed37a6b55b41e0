//! The SVG chart of a report: one line per (operation, client region → home region), p50, p95
//! and p99 on a logarithmic milliseconds axis, and the simulated round trip where there is one.
//! Hand-written SVG: a plotting library would be the biggest dependency of the crate for this.

use std::fmt::Write;

use crate::stats::Row;

const WIDTH: f64 = 960.0;
const LABEL: f64 = 300.0;
const RIGHT: f64 = 90.0;
const ROW: f64 = 22.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 40.0;

const P50: &str = "#1f77b4";
const P95: &str = "#ff7f0e";
const P99: &str = "#d62728";
const RTT: &str = "#2ca02c";

pub fn render(title: &str, rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.count > 0).collect();
    let height = TOP + BOTTOM + ROW * rows.len().max(1) as f64;
    let highest = rows
        .iter()
        .map(|r| r.p99_ms.max(r.rtt_ms.unwrap_or(0.0)))
        .fold(1.0, f64::max);
    // Decades from 0.1 ms to the first power of ten above the slowest p99.
    let low = 0.1_f64;
    let mut high = 1.0;
    while high <= highest {
        high *= 10.0;
    }
    let plot = WIDTH - LABEL - RIGHT;
    let x = |ms: f64| {
        LABEL + plot * ((ms.max(low)).log10() - low.log10()) / (high.log10() - low.log10())
    };

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{}" y="22" font-size="15" font-weight="bold">{}</text>
"#,
        10,
        escape(title)
    );
    for (i, (name, colour)) in [
        ("p50", P50),
        ("p95", P95),
        ("p99", P99),
        ("round trip", RTT),
    ]
    .iter()
    .enumerate()
    {
        let lx = LABEL + i as f64 * 110.0;
        let _ = writeln!(
            svg,
            r#"<circle cx="{lx}" cy="42" r="5" fill="{colour}"/><text x="{}" y="46">{name}</text>"#,
            lx + 10.0
        );
    }
    // Axis: a gridline per decade.
    let mut decade = low;
    while decade <= high * 1.0001 {
        let gx = x(decade);
        let _ = writeln!(
            svg,
            r##"<line x1="{gx:.1}" y1="{TOP}" x2="{gx:.1}" y2="{:.1}" stroke="#ddd"/><text x="{gx:.1}" y="{:.1}" text-anchor="middle">{} ms</text>"##,
            height - BOTTOM,
            height - BOTTOM + 16.0,
            format_ms(decade)
        );
        decade *= 10.0;
    }
    for (i, r) in rows.iter().enumerate() {
        let y = TOP + ROW * i as f64 + ROW / 2.0;
        let label = format!("{} {} → {}", r.op.name(), r.client, r.home);
        let _ = writeln!(
            svg,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#999" stroke-width="2"/>"##,
            LABEL - 8.0,
            y + 4.0,
            escape(&label),
            x(r.p50_ms),
            x(r.p99_ms),
        );
        if let Some(rtt) = r.rtt_ms.filter(|rtt| *rtt > 0.0) {
            let _ = writeln!(
                svg,
                r#"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="{RTT}" stroke-width="2"/>"#,
                x(rtt),
                y - 8.0,
                y + 8.0
            );
        }
        for (ms, colour) in [(r.p50_ms, P50), (r.p95_ms, P95), (r.p99_ms, P99)] {
            let _ = writeln!(
                svg,
                r#"<circle cx="{:.1}" cy="{y:.1}" r="4.5" fill="{colour}"><title>{} ms</title></circle>"#,
                x(ms),
                format_ms(ms)
            );
        }
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}">p99 {} ms</text>"#,
            WIDTH - RIGHT + 8.0,
            y + 4.0,
            format_ms(r.p99_ms)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_ms(ms: f64) -> String {
    if ms >= 10.0 {
        format!("{ms:.0}")
    } else if ms >= 1.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Op;

    fn row(op: Op, client: &str, home: &str, p50: f64, p99: f64, rtt: Option<f64>) -> Row {
        Row {
            client: client.into(),
            home: home.into(),
            op,
            count: 10,
            ok: 10,
            refused: 0,
            errors: 0,
            per_second: 1.0,
            p50_ms: p50,
            p95_ms: (p50 + p99) / 2.0,
            p99_ms: p99,
            max_ms: p99,
            codes: Default::default(),
            cache_hits: 0,
            cache_misses: 0,
            rtt_ms: rtt,
        }
    }

    #[test]
    fn one_line_per_row_on_a_log_axis() {
        let svg = render(
            "reserve <latency>",
            &[
                row(Op::Reserve, "eu-west", "us-east", 80.0, 95.0, Some(76.0)),
                row(Op::Availability, "eu-west", "us-east", 0.3, 2.0, Some(76.0)),
            ],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("reserve &lt;latency&gt;"));
        assert!(svg.contains("reserve eu-west → us-east"));
        assert!(svg.contains("availability eu-west → us-east"));
        // Decades 0.1 ms .. 100 ms are drawn: the slowest p99 is 95 ms.
        for tick in ["0.10 ms", "1.0 ms", "10 ms", "100 ms"] {
            assert!(svg.contains(tick), "{tick} missing");
        }
        assert!(!svg.contains("1000 ms"));
        assert_eq!(svg.matches("<circle").count(), 4 + 2 * 3);
        assert_eq!(svg.matches(&format!(r#"stroke="{RTT}""#)).count(), 2);
    }

    #[test]
    fn empty_report_is_still_a_picture() {
        let svg = render("nothing", &[]);
        assert!(svg.contains("</svg>"));
    }
}
