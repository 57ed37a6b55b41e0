//! How BENCHMARKS.md writes figures: milliseconds, thousands, audits and verdicts on targets.

use crate::report::Report;

pub fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// 12,345
pub fn thousands(v: f64) -> String {
    let digits = format!("{:.0}", v.round());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 && c != '-' {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn audit_line(report: &Report) -> String {
    match &report.audit {
        None => "not run".into(),
        Some(a) if a.passed() => format!("passed ({} checks)", a.checks.len()),
        Some(a) => format!(
            "**FAILED**: {}",
            a.checks
                .iter()
                .filter(|c| !c.passed())
                .map(|c| format!(
                    "{} {} (expected {}, found {})",
                    c.region, c.name, c.expected, c.found
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

pub fn audit_passed(report: &Report) -> bool {
    report.audit.as_ref().is_some_and(|a| a.passed())
}

/// A target's verdict, in bold: the sentence around it is not.
pub fn verdict(met: bool) -> &'static str {
    if met {
        "**met**"
    } else {
        "**not met**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn number_formats() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(5921.3), "5,921");
        assert_eq!(thousands(1234567.0), "1,234,567");
        assert_eq!(ms(87.1), "87.1 ms");
        assert_eq!(ms(222.0), "222 ms");
    }
}
