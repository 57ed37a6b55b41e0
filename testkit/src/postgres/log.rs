//! The postmaster's log file (its stdout and stderr), read back for error messages.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

/// Log file inside the data directory.
pub(super) const LOG_FILE: &str = "postgres.log";

pub(super) fn read_log_from(data_dir: &Path, offset: u64) -> std::io::Result<String> {
    let mut file = File::open(data_dir.join(LOG_FILE))?;
    file.seek(SeekFrom::Start(offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last ~40 lines of the postmaster log.
fn read_log_tail(data_dir: &Path) -> std::io::Result<String> {
    const MAX: u64 = 8 * 1024;
    let mut file = File::open(data_dir.join(LOG_FILE))?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(MAX)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    Ok(lines[lines.len().saturating_sub(40)..].join("\n"))
}

pub(super) fn log_tail_or_error(data_dir: &Path) -> String {
    read_log_tail(data_dir).unwrap_or_else(|e| {
        format!(
            "<could not read {}: {e}>",
            data_dir.join(LOG_FILE).display()
        )
    })
}
