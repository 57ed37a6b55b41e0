//! Files that hold secrets (the JWT secret and admin token in the services' configurations and
//! `cluster.json`): readable and writable by us alone, mode 0600, from the moment they exist.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;

/// Writes `contents` to `path` with mode 0600 (also when the file was already there).
pub(super) fn write_private(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    // `mode` applies only to a file it creates.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_file_is_ours_alone_even_when_it_was_open_to_all() {
        let dir = std::env::temp_dir().join(format!("devcluster-private-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.toml");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, b"jwt_secret = \"x\"").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"jwt_secret = \"x\"");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
