//! Section 7: id-gen's cost per ID against the format's ceiling, from criterion's estimates.

use std::fmt::Write;
use std::path::Path;

use anyhow::bail;

use super::format::thousands;
use super::results::criterion_mean_ns;
use super::Section;

/// The format's ceiling: 12 sequence bits per millisecond per generator.
const IDS_PER_MS_CEILING: f64 = 4096.0;

pub(super) fn id_gen(dir: &Path) -> anyhow::Result<Section> {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## 7. id-gen\n\n\
         `cargo bench -p id-gen` (criterion). The format allows **{} IDs per millisecond** per \
         generator (12 sequence bits): one every {:.0} ns. With the system clock a generator \
         is held to that ceiling by design (it waits for the next millisecond); the ticking \
         clock (a new millisecond on every call) shows what the code itself costs: its ns per \
         ID is its CPU per ID.\n\n\
         | benchmark | ns per ID | IDs per ms | share of the ceiling |\n|---|---|---|---|",
        IDS_PER_MS_CEILING,
        1e6 / IDS_PER_MS_CEILING
    );
    for bench in [
        "1_thread/system_clock",
        "1_thread/ticking_clock",
        "8_threads/system_clock",
        "8_threads/ticking_clock",
    ] {
        let name = format!("idgen-{}.json", bench.replace('/', "_"));
        let ns = criterion_mean_ns(dir, &name)?;
        if ns <= 0.0 {
            bail!("{name}: a mean of {ns} ns");
        }
        let per_ms = 1e6 / ns;
        let _ = writeln!(
            md,
            "| {bench} | {ns:.1} | {} | {:.0}% |",
            thousands(per_ms),
            100.0 * per_ms / IDS_PER_MS_CEILING
        );
    }
    let _ = writeln!(
        md,
        "\nThe 8-thread figures are per ID across all threads sharing one generator."
    );
    Ok(Section::untargeted(md))
}
