#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use proptest::prelude::*;

use super::*;

fn norm(raw: &str) -> Result<String, PathError> {
    normalize(raw, None).map(|p| p.to_string())
}

fn roots(list: &[&str]) -> Vec<NormalPath> {
    list.iter().map(|r| normalize_root(r).unwrap()).collect()
}

/// As rule 7 reads it: a path that cannot be read is not within.
fn within(raw: &str, list: &[&str]) -> bool {
    within_roots(raw, &roots(list)).unwrap_or(false)
}

#[test]
fn dots_and_duplicate_slashes_are_folded() {
    assert_eq!(norm("/workspace/./a//b/").unwrap(), "/workspace/a/b");
    assert_eq!(norm("/workspace/../etc/shadow").unwrap(), "/etc/shadow");
    assert_eq!(norm("/").unwrap(), "/");
    assert_eq!(norm("/a/..").unwrap(), "/");
    assert_eq!(norm("/.."), Err(PathError::AboveRoot));
    assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
}

#[test]
fn percent_encoding_is_decoded_once_and_checked() {
    assert_eq!(norm("/workspace/%2e%2e/etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(norm("/workspace/%2E%2E%2Fetc").unwrap(), "/etc");
    assert_eq!(norm("/a%20b").unwrap(), "/a b");
    assert_eq!(norm("/a/%zz"), Err(PathError::InvalidPercentEncoding));
    assert_eq!(norm("/a/100%"), Err(PathError::InvalidPercentEncoding));
    assert_eq!(norm("/a/%2"), Err(PathError::InvalidPercentEncoding));
    assert_eq!(norm("/a/%252e%252e"), Err(PathError::DoubleEncoded));
    assert_eq!(norm("/a/%ff"), Err(PathError::NotUtf8));
    assert_eq!(norm("/a/%00"), Err(PathError::Nul));
}

#[test]
fn file_urls_are_reduced_to_their_path() {
    assert_eq!(norm("file:///etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(norm("FILE://localhost/etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(norm("file:/etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(norm("file:///workspace/%2e%2e/x").unwrap(), "/x");
    for bad in [
        "file://evil.example/etc/passwd",
        "file://localhost",
        "file:etc/passwd",
        "file:///etc/passwd?x",
        "file:///etc/passwd#x",
    ] {
        assert_eq!(norm(bad), Err(PathError::FileUrl), "{bad}");
    }
}

#[test]
fn windows_separators_and_drives() {
    assert_eq!(
        norm("C:\\Windows\\System32").unwrap(),
        "C:/Windows/System32"
    );
    assert_eq!(norm("c:/x/../y").unwrap(), "C:/y");
    assert_eq!(norm("/workspace\\..\\etc").unwrap(), "/etc");
    assert_eq!(norm("C:x"), Err(PathError::DriveRelative));
    assert_eq!(norm("C:"), Err(PathError::DriveRelative));
    assert_eq!(norm("\\\\server\\share\\x"), Err(PathError::Unc));
    assert_eq!(norm("//etc/passwd"), Err(PathError::Unc));
    assert_eq!(norm("/\\x"), Err(PathError::Unc));
}

#[test]
fn nul_empty_tilde_and_relative_are_refused_without_a_base() {
    assert_eq!(norm(""), Err(PathError::Empty));
    assert_eq!(norm("/etc/passwd\0.txt"), Err(PathError::Nul));
    assert_eq!(norm("~/.ssh/id_rsa"), Err(PathError::Tilde));
    assert_eq!(norm("~root/x"), Err(PathError::Tilde));
    assert_eq!(norm("notes.txt"), Err(PathError::Relative));
    assert_eq!(norm("../x"), Err(PathError::Relative));
}

#[test]
fn relative_paths_resolve_against_the_base() {
    let base = normalize_root("/workspace").unwrap();
    let rel = |raw| normalize(raw, Some(&base)).map(|p| p.to_string());
    assert_eq!(rel("notes.txt").unwrap(), "/workspace/notes.txt");
    assert_eq!(rel("./a/../b").unwrap(), "/workspace/b");
    assert_eq!(rel("../etc/passwd").unwrap(), "/etc/passwd");
    assert_eq!(rel("../../etc/passwd"), Err(PathError::AboveRoot));
}

#[test]
fn under_a_root_is_component_wise() {
    let ws = ["/workspace"];
    assert!(within("/workspace", &ws));
    assert!(within("/workspace/", &ws));
    assert!(within("/workspace/a/b.txt", &ws));
    assert!(within("a/b.txt", &ws));
    assert!(within("file:///workspace/a", &ws));
    assert!(!within("/workspace2/x", &ws));
    assert!(!within("/work", &ws));
    assert!(!within("/etc/shadow", &ws));
    assert!(!within("/workspace/../etc/shadow", &ws));
    assert!(!within("../../etc/passwd", &ws));
    assert!(!within("/workspace/%2e%2e/etc/shadow", &ws));
    assert!(!within("file:///etc/passwd", &ws));
    assert!(!within("C:\\workspace", &ws));
    assert!(!within("C:/workspace", &ws));
    assert!(!within("/", &ws));
    // Nothing is under no root.
    assert!(!within("/workspace/a", &[]));
    // Any of several roots.
    assert!(within("/data/x", &["/workspace", "/data"]));
}

#[test]
fn every_reading_must_be_under_a_root() {
    let ws = ["/workspace"];
    // As a separator, `\..\` climbs out.
    assert!(!within("/workspace\\..\\etc\\passwd", &ws));
    assert!(!within("sub\\..\\..\\etc", &ws));
    // As a name character it stays inside: both readings are inside.
    assert!(within("/workspace/a\\b", &ws));
    // Decoded inside, but as written outside: denied.
    assert!(!within("/etc/%2e%2e/workspace/x", &ws));
    // As a name `\` keeps the path in /etc; as a separator it would be inside.
    assert!(!within("/etc\\..\\workspace\\x", &ws));
    assert!(within("/workspace/a%20b", &ws));
}

#[test]
fn drive_roots_compare_ignoring_case() {
    let root = ["C:\\Work"];
    assert!(within("c:/work/a", &root));
    assert!(within("C:\\WORK\\a", &root));
    assert!(!within("D:\\Work\\a", &root));
    assert!(!within("/Work/a", &root));
    // POSIX paths stay case-sensitive.
    assert!(!within("/Workspace/a", &["/workspace"]));
}

#[test]
fn roots_must_be_absolute() {
    assert_eq!(
        normalize_root("/workspace/").unwrap().to_string(),
        "/workspace"
    );
    assert_eq!(normalize_root("workspace"), Err(PathError::Relative));
    assert_eq!(normalize_root("./w"), Err(PathError::Relative));
    assert_eq!(normalize_root("/w/../.."), Err(PathError::AboveRoot));
}

proptest! {
    /// Normalising a normalised path changes nothing, and never leaves a
    /// `.`, `..` or empty component, nor a separator inside a name.
    #[test]
    fn normalisation_is_idempotent(raw in r"(file://)?(/|[a-cA-C]:\\|\\)?([a-z.%2eEfF5cC~\\/]{0,6}[/\\]){0,6}[a-z.]{0,3}") {
        let base = normalize_root("/base").unwrap();
        if let Ok(once) = normalize(&raw, Some(&base)) {
            for name in once.names() {
                prop_assert!(!name.is_empty() && name != "." && name != "..", "{raw:?} -> {once}");
                prop_assert!(!name.contains(['/', '\\', '%', '\0']), "{raw:?} -> {once}");
            }
            let twice = normalize(&once.to_string(), None).unwrap();
            prop_assert_eq!(twice, once);
        }
    }

    /// A path accepted under a root normalises to a path under that root.
    #[test]
    fn within_agrees_with_normalize(raw in r"[a-z./%2eE\\]{0,12}") {
        let ws = roots(&["/workspace"]);
        if let Ok(true) = within_roots(&raw, &ws) {
            let path = normalize(&raw, ws.first()).unwrap();
            prop_assert!(path.is_within(&ws[0]), "{raw:?} -> {path}");
        }
    }
}
