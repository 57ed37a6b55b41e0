//! The speed targets of issue 9 as the sections judged them, summed up at the top of the file:
//! each with what was measured, whether it was met, and the CPU per request it cost.

use std::fmt::Write;

/// A target and how this run measured up to it.
pub struct Verdict {
    /// The figure, and the section it comes from.
    pub figure: String,
    pub target: String,
    /// None when the run did not measure it.
    pub outcome: Option<Outcome>,
}

pub struct Outcome {
    pub measured: String,
    pub met: bool,
    /// CPU per request over every process, or "not measured".
    pub cpu: String,
}

pub fn summary(md: &mut String, verdicts: &[&Verdict]) {
    let _ = writeln!(
        md,
        "## Targets\n\n\
         | figure | target | measured | met | CPU per request |\n|---|---|---|---|---|"
    );
    for t in verdicts {
        let _ = match &t.outcome {
            Some(o) => writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                t.figure,
                t.target,
                o.measured,
                if o.met { "yes" } else { "**no**" },
                o.cpu
            ),
            None => writeln!(
                md,
                "| {} | {} | not measured in this run | - | - |",
                t.figure, t.target
            ),
        };
    }
    md.push('\n');
}
