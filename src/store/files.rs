//! The database file on disk: its folder (0700), its permissions (0600) and opening it.
//!
//! The file holds sealed payloads, but also metadata (app names, business keys, times):
//! nobody but the bridge's user should read it. A folder the bridge creates is 0700; an
//! existing folder that others can enter is left as it is (it may be shared, such as a
//! working directory) with a warning. The file itself is always tightened to 0600.

use std::path::Path;

use redb::Database;

use super::{CACHE_BYTES, StoreError};

/// Opens (or creates) the database at `path` with owner-only permissions.
pub(super) fn open_database(path: &Path) -> Result<Database, StoreError> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        prepare_folder(parent)?;
    }
    let file = open_file(path)?;
    // The write path appends and the read path scans recent entries: a modest cache keeps
    // resident memory bounded (redb's default is 1 GiB).
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create_file(file)
        .map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Locked {
                path: path.display().to_string(),
            },
            redb::DatabaseError::Storage(s) => {
                let text = format!("cannot open {}: {s}", path.display());
                super::storage_err(&s, text)
            }
            other => StoreError::Db(format!("cannot open {}: {other}", path.display())),
        })
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("cannot {what} {}: {e}", path.display()))
}

#[cfg(unix)]
fn prepare_folder(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    folder = %dir.display(),
                    mode = format_args!("{mode:o}"),
                    "the store's folder can be entered by other users; give the bridge a folder of its own: chmod 700 it"
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| io_err("create", dir, e)),
        Err(e) => Err(io_err("inspect", dir, e)),
    }
}

#[cfg(not(unix))]
fn prepare_folder(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| io_err("create", dir, e))
}

fn open_file(path: &Path) -> Result<std::fs::File, StoreError> {
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path).map_err(|e| io_err("open", path, e))?;
        let meta = file.metadata().map_err(|e| io_err("inspect", path, e))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err("chmod 600", path, e))?;
            tracing::warn!(
                path = %path.display(),
                was = format_args!("{mode:o}"),
                "the store file was readable by other users; tightened it to 0600"
            );
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    opts.open(path).map_err(|e| io_err("open", path, e))
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_folder_is_0700_file_is_0600_and_loose_files_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/bridge.redb");
        drop(open_database(&path).unwrap());
        assert_eq!(mode(&dir.path().join("data")), 0o700);
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_database(&path).unwrap());
        assert_eq!(mode(&path), 0o600);
    }
}
