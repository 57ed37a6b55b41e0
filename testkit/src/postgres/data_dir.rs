//! A data directory made ready to serve: initdb or a `pg_basebackup -R` copy, owned by the
//! server user, with our settings file rewritten on every start.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::{Durability, PgOptions, SUPERUSER};
use crate::process::{self, ChildSpec, UserIds};

/// Settings we own; rewritten on every start and included from postgresql.conf, so options can
/// change between restarts of a kept data directory and are copied along by `pg_basebackup`.
const SETTINGS_FILE: &str = "ticketing.conf";

/// Copies the server at `source` into `data_dir` with `pg_basebackup -R` (unless `data_dir`
/// already holds a cluster), so the copy starts as a standby streaming from `source`.
pub(super) fn base_backup(
    bindir: &Path,
    data_dir: &Path,
    source: std::net::SocketAddr,
    run_as: Option<UserIds>,
) -> anyhow::Result<()> {
    if data_dir.join("PG_VERSION").exists() {
        return init_data_dir(bindir, data_dir, run_as);
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    // The server refuses a data directory others can read.
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("chmod {}", data_dir.display()))?;
    chown_to(data_dir, run_as)?;
    let mut cmd = Command::new(bindir.join("pg_basebackup"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-h",
            &source.ip().to_string(),
            "-p",
            &source.port().to_string(),
        ])
        .args([
            "-U",
            SUPERUSER,
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        ])
        .current_dir(data_dir);
    let output = process::output_tied(ChildSpec::new(cmd).run_as(run_as))
        .context("running pg_basebackup")?;
    process::check_status(
        &format!("pg_basebackup from {source} into {}", data_dir.display()),
        output,
    )?;
    Ok(())
}

/// Runs initdb unless `data_dir` already holds a cluster, and makes sure the
/// server user owns it.
pub(super) fn init_data_dir(
    bindir: &Path,
    data_dir: &Path,
    run_as: Option<UserIds>,
) -> anyhow::Result<()> {
    if data_dir.join("PG_VERSION").exists() {
        // E.g. a kept devcluster dir, or a pg_basebackup copy made as root.
        if let Some(ids) = run_as {
            let meta = fs::metadata(data_dir)
                .with_context(|| format!("reading {}", data_dir.display()))?;
            if meta.uid() != ids.uid {
                chown_recursive(data_dir, ids)?;
            }
        }
        return Ok(());
    }
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    chown_to(data_dir, run_as)?;

    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ])
        // initdb resolves its own path relative to the cwd, which must be
        // accessible to the server user (root's cwd usually is not).
        .current_dir(data_dir);
    let spec = ChildSpec::new(cmd).run_as(run_as);
    let output = process::output_tied(spec).context("running initdb")?;
    process::check_status(&format!("initdb -D {}", data_dir.display()), output)?;

    append(
        &data_dir.join("pg_hba.conf"),
        "\n# ticketing devcluster: streaming replicas and TCP clients from localhost\n\
         host replication all 127.0.0.1/32 trust\n\
         host all all 127.0.0.1/32 trust\n",
    )?;
    append(
        &data_dir.join("postgresql.conf"),
        &format!("\n# ticketing devcluster settings (rewritten on every start)\ninclude_if_exists = '{SETTINGS_FILE}'\n"),
    )?;
    Ok(())
}

pub(super) fn write_settings(
    data_dir: &Path,
    opts: &PgOptions,
    run_as: Option<UserIds>,
) -> anyhow::Result<()> {
    let mut settings: Vec<(String, String)> = vec![
        ("listen_addresses".into(), "'127.0.0.1'".into()),
        ("max_connections".into(), opts.max_connections.to_string()),
        (
            "shared_buffers".into(),
            format!("'{}'", opts.shared_buffers),
        ),
        ("wal_level".into(), "replica".into()),
        ("max_wal_senders".into(), "10".into()),
        ("max_replication_slots".into(), "10".into()),
        ("hot_standby".into(), "on".into()),
        // Lets a replica behind a slow or cut WAN link catch up without a replication slot.
        ("wal_keep_size".into(), "'256MB'".into()),
    ];
    if opts.durability == Durability::Fast {
        for key in ["fsync", "synchronous_commit", "full_page_writes"] {
            settings.push((key.into(), "off".into()));
        }
    }
    settings.extend(opts.extra_settings.iter().cloned());

    let mut text = String::from("# Written by devcluster on every start; edits are lost.\n");
    for (key, value) in &settings {
        text.push_str(&format!("{key} = {value}\n"));
    }
    let path = data_dir.join(SETTINGS_FILE);
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    chown_to(&path, run_as)
}

fn append(path: &Path, text: &str) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

pub(super) fn chown_to(path: &Path, ids: Option<UserIds>) -> anyhow::Result<()> {
    if let Some(ids) = ids {
        std::os::unix::fs::chown(path, Some(ids.uid), Some(ids.gid))
            .with_context(|| format!("chown {} to uid {}", path.display(), ids.uid))?;
    }
    Ok(())
}

fn chown_recursive(path: &Path, ids: UserIds) -> anyhow::Result<()> {
    std::os::unix::fs::lchown(path, Some(ids.uid), Some(ids.gid))
        .with_context(|| format!("chown {} to uid {}", path.display(), ids.uid))?;
    let meta = fs::symlink_metadata(path).with_context(|| format!("reading {}", path.display()))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path).with_context(|| format!("listing {}", path.display()))? {
            let entry = entry.with_context(|| format!("listing {}", path.display()))?;
            chown_recursive(&entry.path(), ids)?;
        }
    }
    Ok(())
}
