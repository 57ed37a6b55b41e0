//! Reading the results folder `bench/report.sh` fills: loadgen's JSON reports (optional ones
//! are none when a run did not happen), text files, pgbench's output and criterion's estimates.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::report::Report;

pub fn report(dir: &Path, name: &str) -> anyhow::Result<Report> {
    optional_report(dir, name)?.with_context(|| format!("{} is missing", dir.join(name).display()))
}

/// A report that a results folder may lack (a run added after those results were made): none
/// when the file is not there; an error when it is there and unreadable.
pub fn optional_report(dir: &Path, name: &str) -> anyhow::Result<Option<Report>> {
    optional(dir, name)
}

/// Any of loadgen's JSON reports (`watch`, `queue`) that a results folder may lack.
pub fn optional<T: serde::de::DeserializeOwned>(
    dir: &Path,
    name: &str,
) -> anyhow::Result<Option<T>> {
    let path = dir.join(name);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .with_context(|| format!("{} is not a loadgen report", path.display()))
}

pub fn text(dir: &Path, name: &str) -> anyhow::Result<String> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// pgbench's throughput: the `tps = N (without initial connection time)` line.
pub fn pgbench_tps(output: &str) -> anyhow::Result<f64> {
    output
        .lines()
        .find_map(|line| {
            let rest = line.trim().strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .context("no `tps = ` line in the pgbench output")
}

/// The mean of criterion's `estimates.json`, in nanoseconds.
pub fn criterion_mean_ns(dir: &Path, name: &str) -> anyhow::Result<f64> {
    #[derive(Deserialize)]
    struct Estimates {
        mean: Estimate,
    }
    #[derive(Deserialize)]
    struct Estimate {
        point_estimate: f64,
    }
    let estimates: Estimates = serde_json::from_str(&text(dir, name)?)
        .with_context(|| format!("{name} is not criterion's estimates.json"))?;
    Ok(estimates.mean.point_estimate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgbench_output() {
        let out = "transaction type: claim-1.sql\nnumber of clients: 64\n\
                   latency average = 10.118 ms\n\
                   initial connection time = 48.510 ms\n\
                   tps = 6325.441234 (without initial connection time)\n";
        assert!((pgbench_tps(out).unwrap() - 6325.441234).abs() < 1e-6);
        assert!(pgbench_tps("pgbench: error: connection refused").is_err());
    }

    #[test]
    fn a_missing_report_is_none_and_a_broken_one_an_error() {
        let dir = std::env::temp_dir().join(format!("loadgen-results-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("broken.json"), "{").unwrap();
        assert!(optional_report(&dir, "absent.json").unwrap().is_none());
        assert!(optional_report(&dir, "broken.json").is_err());
        assert!(report(&dir, "absent.json").is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
