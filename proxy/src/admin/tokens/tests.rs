#![allow(clippy::unwrap_used)]

use super::*;

fn counters() -> IntCounterVec {
    IntCounterVec::new(prometheus::Opts::new("t", "t"), &["result"]).unwrap()
}

fn entry(file: &Path, role: Role) -> TokenEntry {
    TokenEntry {
        file: file.to_owned(),
        role,
        tenants: None,
    }
}

#[test]
fn token_files_drop_one_newline_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let token = "0123456789abcdef";
    for text in [
        token.to_owned(),
        format!("{token}\n"),
        format!("{token}\r\n"),
    ] {
        std::fs::write(&path, text).unwrap();
        assert!(
            read_token(&path)
                .unwrap()
                .ct_eq(&TokenDigest::of(token.as_bytes()))
        );
    }
    let cases: [(&[u8], &str); 6] = [
        (b"", "empty"),
        (b"\n", "empty"),
        (b"short\n", "at least 16"),
        (b"0123456789abcdef\n\n", "visible ASCII"),
        (b"0123456789 abcdef", "visible ASCII"),
        (b"0123456789abcdef\xff", "visible ASCII"),
    ];
    for (bytes, want) in cases {
        std::fs::write(&path, bytes).unwrap();
        let err = read_token(&path).unwrap_err();
        assert!(err.contains(want), "{bytes:?}: {err}");
    }
    std::fs::write(&path, "a".repeat(MAX_TOKEN_BYTES)).unwrap();
    assert!(read_token(&path).is_ok());
    std::fs::write(&path, "a".repeat(MAX_TOKEN_BYTES + 1)).unwrap();
    assert!(read_token(&path).unwrap_err().contains("longer"));
    assert!(
        read_token(&dir.path().join("absent"))
            .unwrap_err()
            .starts_with("cannot read")
    );
}

#[test]
fn errors_and_debug_never_show_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    std::fs::write(&path, "secret-secret secret").unwrap();
    assert!(!read_token(&path).unwrap_err().contains("secret"));
    let digest = TokenDigest::of(b"secret-secret-secret");
    assert_eq!(format!("{digest:?}"), "TokenDigest(..)");
}

#[test]
fn digests_compare_by_value() {
    let a = TokenDigest::of(b"0123456789abcdef");
    assert!(a.ct_eq(&TokenDigest::of(b"0123456789abcdef")));
    assert!(!a.ct_eq(&TokenDigest::of(b"0123456789abcdeg")));
}

#[test]
fn load_names_the_entry_and_refuses_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, short) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("s"),
    );
    std::fs::write(&a, "aaaaaaaaaaaaaaaa\n").unwrap();
    std::fs::write(&b, "aaaaaaaaaaaaaaaa").unwrap();
    std::fs::write(&short, "x").unwrap();
    let err = TokenSet::load(
        &[
            entry(&a, Role::Reader),
            entry(&b, Role::Operator),
            entry(&short, Role::Reader),
        ],
        counters(),
    )
    .unwrap_err();
    assert!(err.contains("admin.auth.tokens[1].file"), "{err}");
    assert!(err.contains("admin.auth.tokens[0]"), "{err}");
    assert!(err.contains("admin.auth.tokens[2].file"), "{err}");
    assert!(err.contains("at least 16"), "{err}");
}

#[test]
fn a_reload_rotates_disables_and_reenables_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::write(&a, "aaaaaaaaaaaaaaaa").unwrap();
    std::fs::write(&b, "bbbbbbbbbbbbbbbb").unwrap();
    let reloads = counters();
    let set = TokenSet::load(
        &[entry(&a, Role::Reader), entry(&b, Role::Operator)],
        reloads.clone(),
    )
    .unwrap();
    let find = |t: &str| {
        set.find(&TokenDigest::of(t.as_bytes()))
            .map(|(i, g)| (i, g.role))
    };
    assert_eq!(find("bbbbbbbbbbbbbbbb"), Some((1, Role::Operator)));
    assert_eq!(find("cccccccccccccccc"), None);

    std::fs::write(&a, "").unwrap();
    std::fs::write(&b, "cccccccccccccccc\n").unwrap();
    assert_eq!(
        set.reload("test"),
        [TokenReload::Failed, TokenReload::Reloaded]
    );
    assert_eq!(
        find("aaaaaaaaaaaaaaaa"),
        None,
        "an emptied file disables its entry"
    );
    assert_eq!(find("bbbbbbbbbbbbbbbb"), None, "the old token is gone");
    assert_eq!(find("cccccccccccccccc"), Some((1, Role::Operator)));

    std::fs::write(&a, "aaaaaaaaaaaaaaaa").unwrap();
    assert_eq!(
        set.reload("test"),
        [TokenReload::Reloaded, TokenReload::Unchanged]
    );
    assert_eq!(find("aaaaaaaaaaaaaaaa"), Some((0, Role::Reader)));
    assert_eq!(reloads.with_label_values(&["failed"]).get(), 1);
    assert_eq!(reloads.with_label_values(&["reloaded"]).get(), 2);
    assert_eq!(reloads.with_label_values(&["unchanged"]).get(), 1);
}
