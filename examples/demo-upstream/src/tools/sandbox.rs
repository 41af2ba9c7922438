//! `read_file` and `write_file`: files inside one directory, and nowhere else.
//!
//! A path must be relative and free of `..`; after symlinks are resolved it
//! must still lie inside the sandbox. The checks run on a blocking thread,
//! next to the file operation. (A racing local process could swap a
//! directory for a symlink between check and use; this is a demo, not a jail.)

use std::fs;
use std::io::{self, Read as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::ToolOutput;

/// The largest file `read_file` answers.
const MAX_READ_BYTES: u64 = 1024 * 1024;

/// The sandbox directory, canonical (symlinks resolved) at start.
#[derive(Debug)]
pub(crate) struct Sandbox {
    root: PathBuf,
}

/// Why a file operation was refused or failed: the text the model reads.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SandboxError {
    #[error("the path is empty")]
    Empty,
    #[error("absolute paths are refused; give a path relative to the sandbox")]
    Absolute,
    #[error("`..` is refused: the path must stay inside the sandbox")]
    ParentDir,
    #[error("the path leads outside the sandbox (through a symlink)")]
    Outside,
    #[error("no such file")]
    NotFound,
    #[error("not a regular file")]
    NotAFile,
    #[error("the file is larger than {MAX_READ_BYTES} bytes")]
    TooLarge,
    #[error("the file is not UTF-8 text")]
    NotText,
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl Sandbox {
    /// Creates the directory if missing and remembers its canonical path.
    pub(crate) fn open(dir: &Path) -> io::Result<Sandbox> {
        fs::create_dir_all(dir)?;
        Ok(Sandbox {
            root: fs::canonicalize(dir)?,
        })
    }

    /// The text of the file at `path`.
    pub(crate) fn read(&self, path: &str) -> Result<String, SandboxError> {
        let full = self.root.join(relative(path)?);
        let real = fs::canonicalize(&full).map_err(not_found)?;
        self.inside(&real)?;
        let file = fs::File::open(&real).map_err(not_found)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(SandboxError::NotAFile);
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(SandboxError::TooLarge);
        }
        let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        // Bounded even if the file grows after the length check.
        file.take(MAX_READ_BYTES + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 > MAX_READ_BYTES {
            return Err(SandboxError::TooLarge);
        }
        String::from_utf8(bytes).map_err(|_| SandboxError::NotText)
    }

    /// Writes `content` to `path`, creating parent directories; the bytes
    /// written.
    pub(crate) fn write(&self, path: &str, content: &str) -> Result<usize, SandboxError> {
        let rel = relative(path)?;
        let full = self.root.join(rel);
        let parent = full.parent().unwrap_or(&self.root);
        // The deepest directory that exists must be inside before any is made.
        let existing = parent
            .ancestors()
            .find(|dir| dir.symlink_metadata().is_ok())
            .unwrap_or(&self.root);
        self.inside(&fs::canonicalize(existing)?)?;
        fs::create_dir_all(parent)?;
        self.inside(&fs::canonicalize(parent)?)?;
        if full
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_symlink())
        {
            // Writing through a symlink is fine only when it points inside.
            self.inside(&fs::canonicalize(&full).map_err(|_| SandboxError::Outside)?)?;
        }
        fs::write(&full, content)?;
        Ok(content.len())
    }

    fn inside(&self, real: &Path) -> Result<(), SandboxError> {
        if real.starts_with(&self.root) {
            Ok(())
        } else {
            Err(SandboxError::Outside)
        }
    }
}

/// The lexical checks: relative, no `..`, names something.
fn relative(path: &str) -> Result<&Path, SandboxError> {
    let path = Path::new(path);
    let mut names = 0;
    for component in path.components() {
        match component {
            Component::Prefix(_) | Component::RootDir => return Err(SandboxError::Absolute),
            Component::ParentDir => return Err(SandboxError::ParentDir),
            Component::CurDir => {}
            Component::Normal(_) => names += 1,
        }
    }
    if names == 0 {
        return Err(SandboxError::Empty);
    }
    Ok(path)
}

fn not_found(e: io::Error) -> SandboxError {
    if e.kind() == io::ErrorKind::NotFound {
        SandboxError::NotFound
    } else {
        SandboxError::Io(e)
    }
}

/// `read_file`.
pub(crate) async fn read(sandbox: &Arc<Sandbox>, path: String) -> ToolOutput<'static> {
    let sandbox = Arc::clone(sandbox);
    let done = tokio::task::spawn_blocking(move || {
        let result = sandbox.read(&path);
        (path, result)
    })
    .await;
    match done {
        Ok((_, Ok(text))) => ToolOutput::ok(text),
        Ok((path, Err(e))) => ToolOutput::error(format!("read_file {path:?}: {e}")),
        Err(_) => ToolOutput::error("read_file: the file operation failed"),
    }
}

/// `write_file`.
pub(crate) async fn write(
    sandbox: &Arc<Sandbox>,
    path: String,
    content: String,
) -> ToolOutput<'static> {
    let sandbox = Arc::clone(sandbox);
    let done = tokio::task::spawn_blocking(move || {
        let result = sandbox.write(&path, &content);
        (path, result)
    })
    .await;
    match done {
        Ok((_, Ok(n))) => ToolOutput::ok(format!("wrote {n} bytes")),
        Ok((path, Err(e))) => ToolOutput::error(format!("write_file {path:?}: {e}")),
        Err(_) => ToolOutput::error("write_file: the file operation failed"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn lexical_checks() {
        assert!(relative("a/b.txt").is_ok());
        assert!(relative("./a").is_ok());
        assert!(matches!(relative(""), Err(SandboxError::Empty)));
        assert!(matches!(relative("."), Err(SandboxError::Empty)));
        assert!(matches!(
            relative("/etc/passwd"),
            Err(SandboxError::Absolute)
        ));
        assert!(matches!(
            relative("a/../../b"),
            Err(SandboxError::ParentDir)
        ));
        assert!(matches!(relative(".."), Err(SandboxError::ParentDir)));
    }

    #[test]
    fn reads_and_writes_inside_only() {
        let dir = tempfile::tempdir().unwrap();
        let sandbox = Sandbox::open(&dir.path().join("box")).unwrap();
        assert_eq!(sandbox.write("a/b/c.txt", "hello").unwrap(), 5);
        assert_eq!(sandbox.read("a/b/c.txt").unwrap(), "hello");
        assert!(matches!(
            sandbox.read("missing"),
            Err(SandboxError::NotFound)
        ));
        assert!(matches!(sandbox.read("a"), Err(SandboxError::NotAFile)));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret"), "s").unwrap();
        let sandbox = Sandbox::open(&dir.path().join("box")).unwrap();
        std::os::unix::fs::symlink(&outside, sandbox.root.join("door")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), sandbox.root.join("s")).unwrap();
        assert!(matches!(
            sandbox.read("door/secret"),
            Err(SandboxError::Outside)
        ));
        assert!(matches!(sandbox.read("s"), Err(SandboxError::Outside)));
        assert!(matches!(
            sandbox.write("door/new", "x"),
            Err(SandboxError::Outside)
        ));
        assert!(matches!(
            sandbox.write("door/deep/new", "x"),
            Err(SandboxError::Outside)
        ));
        assert!(matches!(
            sandbox.write("s", "x"),
            Err(SandboxError::Outside)
        ));
        assert!(!outside.join("deep").exists());
        assert_eq!(fs::read_to_string(outside.join("secret")).unwrap(), "s");
    }
}
