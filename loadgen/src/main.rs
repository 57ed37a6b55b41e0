//! `loadgen run …` drives a running cluster and audits it; `loadgen watch …` holds live streams
//! and times each change's delivery; `loadgen queue …` runs a queued on-sale; `loadgen
//! create-event …` makes an event for later runs (`--event ID`) and prints its id; `loadgen
//! benchmarks` writes BENCHMARKS.md from saved results.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use loadgen::options::{EventOptions, Options, QueueOptions, WatchOptions};

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
    /// Hold N live streams in one region while a writer books; time each change's delivery.
    Watch(Box<WatchOptions>),
    /// A queued on-sale: users join from every region, wait, take their pass, book.
    Queue(Box<QueueOptions>),
    /// Create an event with its tickets, no load; print its id once every region shows it.
    CreateEvent(Box<EventOptions>),
    /// One share of `watch`'s streams in a child process (loadgen starts these itself).
    #[command(hide = true)]
    WatchWorker,
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
        Command::Watch(options) => {
            let report = loadgen::watch::run(&options).await?;
            println!("{}", report.table());
            write_json(options.json.as_deref(), &report)?;
            Ok(verdict(report.passed()))
        }
        Command::WatchWorker => {
            loadgen::watch::worker_main().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Queue(options) => {
            let report = loadgen::queue::run(&options).await?;
            println!("{}", report.table());
            write_json(options.json.as_deref(), &report)?;
            Ok(verdict(report.passed()))
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

fn write_json(
    path: Option<&std::path::Path>,
    report: &impl serde::Serialize,
) -> anyhow::Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A failed run fails the command, for scripts.
fn verdict(passed: bool) -> ExitCode {
    if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
