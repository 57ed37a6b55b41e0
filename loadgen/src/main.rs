//! `loadgen run …` drives a running cluster and audits it; `loadgen create-event …` makes an
//! event for later runs (`--event ID`) and prints its id; `loadgen benchmarks` writes
//! BENCHMARKS.md from saved results.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::options::{EventOptions, Options};

#[derive(Parser)]
#[command(
    name = "loadgen",
    about = "Load, latency and audit for a running ticketing cluster"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drive the cluster with virtual users, print the table, audit the primaries.
    Run(Box<Options>),
    /// Create an event with its tickets, no load; print its id once every region shows it.
    CreateEvent(Box<EventOptions>),
    /// Write BENCHMARKS.md from the results folder `bench/report.sh` fills.
    Benchmarks {
        /// The folder of loadgen JSON reports, pgbench outputs and the id-gen estimates.
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value = "BENCHMARKS.md")]
        out: PathBuf,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(options) => {
            let report = loadgen::execute(&options).await?;
            println!("{}", report.table());
            if let Some(path) = &options.json {
                std::fs::write(path, serde_json::to_vec_pretty(&report)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = &options.svg {
                std::fs::write(path, loadgen::chart::render(&report.title, &report.rows))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            // Errors, cut-off journeys or a failed audit fail the command, for scripts.
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::CreateEvent(options) => {
            let event = loadgen::create_event(&options).await?;
            println!("{}", event.id);
            Ok(ExitCode::SUCCESS)
        }
        Command::Benchmarks { results, out } => {
            let markdown = loadgen::benchmarks::render(&results)?;
            std::fs::write(&out, markdown).with_context(|| format!("writing {}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
