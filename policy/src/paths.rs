//! Filesystem roots: lexical normalisation of the paths a tool call names,
//! and the check that each lies under the manifest's `permissions.fs` roots
//! (rule 7 of [`decide`](mod@crate::decide), `FS_DENY`).
//!
//! Used by the manifest validation (roots must be absolute) and by
//! [`CompiledManifest`](crate::CompiledManifest). Pure string work: this
//! module never touches the filesystem (no `canonicalize`, no `stat`), so a
//! decision takes the same time whatever the path names and reveals nothing
//! about the sidecar's own disk.
//!
//! # Normalisation
//!
//! A path argument is read every way a tool might read it, and passes only
//! when **every** reading lands under a root:
//!
//! - `file://` URLs (host empty or `localhost`, any case; `file:/p` too) are
//!   reduced to their path; another host, or a `?` or `#`, is refused.
//! - `%XX` sequences: the path is read both as written and percent-decoded
//!   once (`%2e%2e` is `..`, `%2f` is `/`). An invalid escape (`%zz`, a
//!   lone `%`), a decoded form that is not UTF-8, or one that still holds a
//!   `%` (`%252e`: double encoding) is refused.
//! - `\` is read both as a character of a name (POSIX) and as a separator
//!   (Windows). A leading drive letter (`C:\`, `c:/`) is a drive; a
//!   drive-relative `C:x` and UNC or `//`-led paths are refused.
//! - A NUL byte (written or decoded) is refused; so is a leading `~`.
//! - `.` and empty components (`a//b`) are dropped; `..` removes the last
//!   name, and one that would climb above the root of the path is refused.
//! - A relative path is resolved against the **first** root of the access
//!   kind: the sidecar assumes the tool works from there (the demo server
//!   takes paths relative to its sandbox). With no root of that kind, it is
//!   denied like any other path.
//!
//! A path is under a root when the root's components are a prefix of its
//! own, component-wise (`/workspace2/x` is not under `/workspace`), on the
//! same drive. Drive paths compare names ignoring ASCII case, as Windows
//! does; others are case-sensitive.
//!
//! # What a sidecar cannot know
//!
//! The check is lexical, on the tool's arguments. It cannot see symlinks,
//! bind mounts or hard links on the tool's side (`/workspace/link -> /etc`
//! passes), the tool's real working directory (relative paths are assumed
//! to start at the first root), Windows name aliases (8.3 short names,
//! trailing dots, alternate data streams), nor paths a tool takes in
//! arguments other than the mapped ones (`policy.fs_paths`) or builds
//! itself. The tool, or a sandbox around it, must still confine itself; the
//! roots stop the agent from *asking* for a path outside them.

use std::borrow::Cow;
use std::fmt;

/// A path after normalisation: absolute, no `.`/`..`/empty components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalPath {
    /// An upper-case drive letter, for `C:\...` paths.
    drive: Option<char>,
    names: Vec<String>,
}

/// Why a path could not be read as a path (the call is denied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    Empty,
    Nul,
    InvalidPercentEncoding,
    DoubleEncoded,
    NotUtf8,
    /// A `file://` URL with another host than `localhost`, or a query or
    /// fragment.
    FileUrl,
    /// `C:x`: relative to a drive's current directory.
    DriveRelative,
    /// `\\server\share`, `//x`: network or implementation-defined paths.
    Unc,
    /// `~user/...`: a shell would expand it.
    Tilde,
    /// A relative path with nothing to resolve it against.
    Relative,
    /// `..` above the root of the path.
    AboveRoot,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "the path is empty",
            PathError::Nul => "the path contains a NUL byte",
            PathError::InvalidPercentEncoding => "the path has an invalid %-escape",
            PathError::DoubleEncoded => "the path is %-encoded twice",
            PathError::NotUtf8 => "the %-decoded path is not UTF-8",
            PathError::FileUrl => {
                "a file URL must have no host but localhost, no query or fragment"
            }
            PathError::DriveRelative => "a drive letter must be followed by a separator",
            PathError::Unc => "network (UNC) and //-led paths are refused",
            PathError::Tilde => "a leading ~ is refused",
            PathError::Relative => "the path is not absolute",
            PathError::AboveRoot => "the path climbs above its root with ..",
        })
    }
}

impl std::error::Error for PathError {}

impl fmt::Display for NormalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(drive) = self.drive {
            write!(f, "{drive}:")?;
        }
        if self.names.is_empty() {
            return f.write_str("/");
        }
        for name in &self.names {
            write!(f, "/{name}")?;
        }
        Ok(())
    }
}

impl NormalPath {
    /// The components, root first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Whether `self` equals `root` or lies under it, component-wise.
    pub fn is_within(&self, root: &NormalPath) -> bool {
        if self.drive != root.drive || root.names.len() > self.names.len() {
            return false;
        }
        let pairs = root.names.iter().zip(&self.names);
        if self.drive.is_some() {
            pairs.into_iter().all(|(r, n)| r.eq_ignore_ascii_case(n))
        } else {
            pairs.into_iter().all(|(r, n)| r == n)
        }
    }
}

/// The canonical reading of a path (percent-decoded, `\` a separator),
/// relative paths resolved against `base`. Used for roots, and shown in
/// tests; [`within_roots`] checks every reading.
pub fn normalize(raw: &str, base: Option<&NormalPath>) -> Result<NormalPath, PathError> {
    let readings = readings(raw)?;
    let text = readings.last().map_or(raw, |r| r.as_ref());
    parse(text, true, base)
}

/// A root from the manifest: normalised, and absolute.
pub fn normalize_root(raw: &str) -> Result<NormalPath, PathError> {
    normalize(raw, None)
}

/// Whether every reading of `raw` lies under one of `roots` (relative
/// readings resolved against the first). `Ok(false)` with no roots.
pub fn within_roots(raw: &str, roots: &[NormalPath]) -> Result<bool, PathError> {
    let Some(first) = roots.first() else {
        return Ok(false);
    };
    for text in readings(raw)? {
        let mut separators = vec![false];
        if text.contains('\\') {
            separators.push(true);
        }
        for backslash in separators {
            let path = parse(&text, backslash, Some(first))?;
            if !roots.iter().any(|root| path.is_within(root)) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The texts a tool might take `raw` for: as written, and percent-decoded
/// when it holds a `%` (last). `file://` URLs are reduced to their path.
fn readings(raw: &str) -> Result<Vec<Cow<'_, str>>, PathError> {
    if raw.is_empty() {
        return Err(PathError::Empty);
    }
    if raw.contains('\0') {
        return Err(PathError::Nul);
    }
    let text = strip_file_url(raw)?;
    let mut out = vec![Cow::Borrowed(text)];
    if text.contains('%') {
        let decoded = percent_decode(text)?;
        if decoded.contains('\0') {
            return Err(PathError::Nul);
        }
        if decoded.contains('%') {
            return Err(PathError::DoubleEncoded);
        }
        out.push(Cow::Owned(decoded));
    }
    Ok(out)
}

fn strip_file_url(raw: &str) -> Result<&str, PathError> {
    let scheme = raw.get(..5);
    if !scheme.is_some_and(|s| s.eq_ignore_ascii_case("file:")) {
        return Ok(raw);
    }
    let rest = &raw[5..];
    if rest.contains(['?', '#']) {
        return Err(PathError::FileUrl);
    }
    let Some(after) = rest.strip_prefix("//") else {
        // `file:/p` (RFC 8089's short form); `file:p` is not a URL path.
        return if rest.starts_with('/') {
            Ok(rest)
        } else {
            Err(PathError::FileUrl)
        };
    };
    let (host, path) = after.split_at(after.find('/').unwrap_or(after.len()));
    if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) || path.is_empty() {
        return Err(PathError::FileUrl);
    }
    Ok(path)
}

fn percent_decode(text: &str) -> Result<String, PathError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::InvalidPercentEncoding);
            };
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One reading: `backslash` says whether `\` separates names.
fn parse(text: &str, backslash: bool, base: Option<&NormalPath>) -> Result<NormalPath, PathError> {
    let is_any_sep = |c: char| c == '/' || c == '\\';
    let mut rest = text;
    let mut drive = None;
    let bytes = text.as_bytes();
    let has_drive = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    // A drive path is a Windows path in every reading: `C:\x` is never a
    // relative POSIX name, and its `\` always separates.
    let backslash = backslash || has_drive;
    let is_sep = |c: char| c == '/' || (backslash && c == '\\');
    if has_drive {
        if !bytes.get(2).is_some_and(|b| is_any_sep(char::from(*b))) {
            return Err(PathError::DriveRelative);
        }
        drive = Some(char::from(bytes[0].to_ascii_uppercase()));
        rest = &text[2..];
    } else {
        let mut lead = text.chars().take(2);
        if lead.next().is_some_and(is_any_sep) && lead.next().is_some_and(is_any_sep) {
            return Err(PathError::Unc);
        }
    }
    if rest.starts_with('~') {
        return Err(PathError::Tilde);
    }
    let absolute = drive.is_some() || rest.starts_with(is_sep);
    let mut path = match (absolute, base) {
        (true, _) => NormalPath {
            drive,
            names: Vec::new(),
        },
        (false, Some(base)) => base.clone(),
        (false, None) => return Err(PathError::Relative),
    };
    for name in rest.split(is_sep) {
        match name {
            "" | "." => {}
            ".." => {
                if path.names.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            name => path.names.push(name.to_owned()),
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests;
