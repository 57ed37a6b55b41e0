//! Where the PostgreSQL server binaries are, and which user they must run as.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::process::{self, UserIds};

/// Finds the directory holding `initdb` and `postgres`.
///
/// Order: `initdb` on `PATH` (symlinks resolved, since the server locates its
/// share directory relative to the real binary), `pg_config --bindir`, then the
/// highest `/usr/lib/postgresql/<version>/bin` (Debian keeps it off `PATH`).
pub fn find_bindir() -> anyhow::Result<PathBuf> {
    let usable =
        |dir: &Path| is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"));

    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let initdb = dir.join("initdb");
            if !is_executable(&initdb) {
                continue;
            }
            if let Some(real_dir) = fs::canonicalize(&initdb)
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                if usable(&real_dir) {
                    return Ok(real_dir);
                }
            }
        }
    }

    if let Ok(out) = Command::new("pg_config")
        .arg("--bindir")
        .stderr(Stdio::null())
        .output()
    {
        if out.status.success() {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if usable(&dir) {
                return Ok(dir);
            }
        }
    }

    let mut candidates: Vec<(Vec<u64>, PathBuf)> = Vec::new();
    if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(version) = name
                .split('.')
                .map(|part| part.parse::<u64>().ok())
                .collect::<Option<Vec<u64>>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if usable(&bin) {
                candidates.push((version, bin));
            }
        }
    }
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Ok(bin);
    }

    bail!(
        "PostgreSQL server binaries not found: no `initdb` on PATH, `pg_config --bindir` \
         gave nothing usable, and no /usr/lib/postgresql/*/bin/initdb exists \
         (install e.g. the Debian `postgresql` package)"
    )
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The identity the server processes must run as.
///
/// initdb and postgres refuse to run as root, so as root we use the `postgres`
/// system user; otherwise `None` (run as ourselves).
pub fn server_user() -> anyhow::Result<Option<UserIds>> {
    if UserIds::current().uid != 0 {
        return Ok(None);
    }
    match process::lookup_user("postgres").context("looking up the `postgres` system user")? {
        Some(ids) => Ok(Some(ids)),
        None => bail!(
            "running as root, but PostgreSQL refuses to run as root and there is no `postgres` \
             system user to run it as; create one (e.g. `useradd --system postgres`) or run as a \
             regular user"
        ),
    }
}
