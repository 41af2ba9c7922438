//! The ledger's files are the ones it opened.
//!
//! SQLite writes through its open file descriptors. If the database file (or
//! its WAL) is deleted or replaced underneath a running writer, commits
//! still succeed — into an unlinked inode, or one no other process will
//! open — so every append would be acknowledged as durable and then lost at
//! the next start. So before each batch the writer checks that the paths
//! still name the files it opened (device and inode), and refuses to record
//! anything while they do not. If the original file comes back at its path
//! (moved away and back, say), appends go on; a different file at the path
//! is never written into by this process — which ledger is the real one is
//! the operator's call, made by restarting.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// A file's identity on its file system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Inode {
    dev: u64,
    ino: u64,
}

impl Inode {
    fn of(path: &Path) -> io::Result<Inode> {
        let meta = std::fs::metadata(path)?;
        Ok(Inode {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
}

/// The database file and its WAL, as opened.
#[derive(Debug)]
pub(super) struct Files {
    db_path: PathBuf,
    db: Inode,
    wal_path: PathBuf,
    /// Learnt at the first check that finds it (SQLite creates the WAL at
    /// the first write).
    wal: Option<Inode>,
}

impl Files {
    /// The files at `db_path` now: call right after opening it.
    pub(super) fn opened(db_path: &Path) -> io::Result<Files> {
        let mut wal_path = db_path.as_os_str().to_owned();
        wal_path.push("-wal");
        let wal_path = PathBuf::from(wal_path);
        Ok(Files {
            db: Inode::of(db_path)?,
            db_path: db_path.to_owned(),
            wal: Inode::of(&wal_path).ok(),
            wal_path,
        })
    }

    /// `Err` (plain words) when a path no longer names the file opened.
    pub(super) fn check(&mut self) -> Result<(), String> {
        same(&self.db_path, self.db, "database")?;
        match self.wal {
            Some(wal) => same(&self.wal_path, wal, "write-ahead log"),
            None => {
                self.wal = Inode::of(&self.wal_path).ok();
                Ok(())
            }
        }
    }
}

fn same(path: &Path, opened: Inode, what: &str) -> Result<(), String> {
    match Inode::of(path) {
        Ok(now) if now == opened => Ok(()),
        Ok(_) => Err(format!(
            "the ledger's {what} file {} was replaced underneath the running sidecar; \
             nothing is recorded into a file other than the one opened (restart to use the new one)",
            path.display()
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "the ledger's {what} file {} was deleted underneath the running sidecar; \
             nothing is recorded until it is back",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot check the ledger's {what} file {}: {e}",
            path.display()
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_path_naming_another_file_or_none_is_refused_and_the_original_accepted_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("ledger.db");
        std::fs::write(&db, b"one").unwrap();
        let mut files = Files::opened(&db).unwrap();
        assert!(files.check().is_ok(), "no WAL yet is fine");
        std::fs::write(dir.path().join("ledger.db-wal"), b"").unwrap();
        assert!(files.check().is_ok(), "the WAL learnt");

        let away = dir.path().join("moved.db");
        std::fs::rename(&db, &away).unwrap();
        assert!(files.check().unwrap_err().contains("was deleted"));
        std::fs::write(&db, b"another").unwrap();
        assert!(files.check().unwrap_err().contains("was replaced"));
        std::fs::rename(&away, &db).unwrap();
        assert!(files.check().is_ok(), "the original is back");

        std::fs::remove_file(dir.path().join("ledger.db-wal")).unwrap();
        assert!(files.check().unwrap_err().contains("write-ahead log file"));
    }
}
