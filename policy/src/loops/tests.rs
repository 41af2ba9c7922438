#![allow(clippy::unwrap_used)]

use super::*;

/// `(name, input, expected seqs)`.
type Case<'a, T> = (&'a str, Vec<T>, Option<Vec<u64>>);

/// Calls `(tool, digest byte)` with seqs 1, 2, 3, ...
fn calls<'a>(spec: &[(&'a str, u8)]) -> Vec<CallKey<'a>> {
    spec.iter()
        .enumerate()
        .map(|(i, &(tool_name, d))| CallKey {
            seq: i as u64 + 1,
            tool_name,
            args_digest: [d; 16],
        })
        .collect()
}

/// Tool names with distinct digests each (so rule 1 never fires).
fn names<'a>(tools: &[&'a str]) -> Vec<CallKey<'a>> {
    let spec: Vec<(&str, u8)> = tools
        .iter()
        .enumerate()
        .map(|(i, &t)| (t, i as u8))
        .collect();
    calls(&spec)
}

fn settings(calls: usize, window: usize, min: usize, max: usize) -> LoopSettings {
    LoopSettings {
        identical_calls: calls,
        identical_window: window,
        min_sequence: min,
        max_sequence: max,
    }
}

/// Checks `detect` and that `detect_with(all but last, last)` agrees.
fn check(rules: &LoopRules, calls: &[CallKey<'_>]) -> Option<Loop> {
    let found = rules.detect(calls);
    if let Some((last, history)) = calls.split_last() {
        assert_eq!(
            rules.detect_with(history, *last),
            found,
            "detect_with disagrees"
        );
    } else {
        assert_eq!(found, None);
    }
    found
}

fn seqs(found: &Option<Loop>) -> Option<Vec<u64>> {
    found.as_ref().map(|l| l.seqs.clone())
}

#[test]
fn default_window_and_thresholds() {
    let rules = LoopRules::default();
    assert_eq!(rules.window(), 20);
    assert_eq!(LoopRules::new(&settings(3, 5, 3, 7)).window(), 14);
    assert_eq!(LoopRules::from(&settings(3, 30, 2, 4)).window(), 30);
}

#[test]
fn identical_calls_table() {
    let rules = LoopRules::default();
    let filler: Vec<(&str, u8)> = (0..18u8).map(|i| ("other", i + 10)).collect();
    let mut outside = vec![("read_file", 1), ("read_file", 1)];
    outside.extend(filler.iter().copied());
    outside.push(("read_file", 1)); // 21 calls: the first is outside the last 20

    let mut edge = vec![("read_file", 1), ("read_file", 1)];
    edge.extend(filler[..17].iter().copied());
    edge.push(("read_file", 1)); // 20 calls: all three inside

    let cases: Vec<Case<(&str, u8)>> = vec![
        ("empty", vec![], None),
        ("one call", vec![("read_file", 1)], None),
        (
            "second identical",
            vec![("read_file", 1), ("read_file", 1)],
            None,
        ),
        (
            "third identical",
            vec![("read_file", 1), ("read_file", 1), ("read_file", 1)],
            Some(vec![1, 2, 3]),
        ),
        (
            "third identical, interleaved",
            vec![
                ("read_file", 1),
                ("x", 2),
                ("read_file", 1),
                ("y", 3),
                ("read_file", 1),
            ],
            Some(vec![1, 3, 5]),
        ),
        (
            "same tool, different args",
            vec![("read_file", 1), ("read_file", 2), ("read_file", 3)],
            None,
        ),
        (
            "same args, different tool",
            vec![("read_file", 1), ("write_file", 1), ("read_file", 1)],
            None,
        ),
        (
            "newest is not the repeated one",
            vec![
                ("read_file", 1),
                ("read_file", 1),
                ("read_file", 1),
                ("x", 9),
            ],
            None,
        ),
        ("one outside the window", outside, None),
        ("all at the window's edge", edge, Some(vec![1, 2, 20])),
    ];
    for (name, spec, want) in cases {
        let c = calls(&spec);
        assert_eq!(seqs(&check(&rules, &c)), want, "{name}");
    }
}

#[test]
fn identical_description() {
    let rules = LoopRules::default();
    let found = check(&rules, &calls(&[("read_file", 1); 4])).unwrap();
    assert_eq!(
        found.description,
        "read_file called 4 times with identical arguments within the last 20 calls"
    );
    assert_eq!(found.seqs, vec![1, 2, 3, 4]);
}

#[test]
fn sequence_table() {
    let rules = LoopRules::default();
    let abcdefgh = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let eight_twice: Vec<&str> = abcdefgh.iter().chain(abcdefgh.iter()).copied().collect();
    let seven: Vec<&str> = abcdefgh[..7]
        .iter()
        .chain(abcdefgh[..7].iter())
        .copied()
        .collect();
    let cases: Vec<Case<&str>> = vec![
        (
            "abcabc",
            vec!["a", "b", "c", "a", "b", "c"],
            Some((1..=6).collect()),
        ),
        (
            "prefix then abcabc",
            vec!["x", "y", "a", "b", "c", "a", "b", "c"],
            Some((3..=8).collect()),
        ),
        ("abab (L=2 < min)", vec!["a", "b", "a", "b"], None),
        (
            "ababab (L=2 thrice)",
            vec!["a", "b", "a", "b", "a", "b"],
            None,
        ),
        ("abcab (incomplete)", vec!["a", "b", "c", "a", "b"], None),
        ("abcabd", vec!["a", "b", "c", "a", "b", "d"], None),
        (
            "abcdabcd (L=4)",
            vec!["a", "b", "c", "d", "a", "b", "c", "d"],
            Some((1..=8).collect()),
        ),
        ("L=7", seven, Some((1..=14).collect())),
        ("L=8 (> max)", eight_twice, None),
        ("aaaaaa, distinct args", vec!["a"; 6], None),
        (
            "aabaab",
            vec!["a", "a", "b", "a", "a", "b"],
            Some((1..=6).collect()),
        ),
        (
            "abcabcabc reports the shortest",
            vec!["a", "b", "c", "a", "b", "c", "a", "b", "c"],
            Some((4..=9).collect()),
        ),
    ];
    for (name, tools, want) in cases {
        let c = names(&tools);
        assert_eq!(seqs(&check(&rules, &c)), want, "{name}");
    }
}

#[test]
fn sequence_description() {
    let rules = LoopRules::default();
    let found = check(
        &rules,
        &names(&["read", "write", "exec", "read", "write", "exec"]),
    )
    .unwrap();
    assert_eq!(
        found.description,
        "the sequence read, write, exec (3 calls) was repeated twice in a row"
    );
}

#[test]
fn identical_rule_wins_over_sequence() {
    let rules = LoopRules::default();
    // `a b c a b c` is also a repeated sequence, but the newest `c` is the
    // third identical one: rule 1 is checked first.
    let c = calls(&[
        ("c", 1),
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("a", 1),
        ("b", 1),
        ("c", 1),
    ]);
    let found = check(&rules, &c).unwrap();
    assert_eq!(found.seqs, vec![1, 4, 7]);
    assert!(found.description.contains("identical arguments"));
}

#[test]
fn custom_settings() {
    // Second identical call within 3 is a loop.
    let strict = LoopRules::new(&settings(2, 3, 2, 2));
    assert_eq!(strict.window(), 4);
    let c = calls(&[("a", 1), ("a", 1)]);
    assert_eq!(seqs(&check(&strict, &c)), Some(vec![1, 2]));
    let c = calls(&[("a", 1), ("x", 2), ("y", 3), ("a", 1)]);
    assert_eq!(seqs(&check(&strict, &c)), None, "outside a window of 3");
    // abab is a loop with min_sequence 2.
    let c = names(&["a", "b", "a", "b"]);
    assert_eq!(seqs(&check(&strict, &c)), Some(vec![1, 2, 3, 4]));
    // ...but abcabc is not with max_sequence 2.
    let c = names(&["a", "b", "c", "a", "b", "c"]);
    assert_eq!(seqs(&check(&strict, &c)), None);

    // Lenient: five identical calls within 10; sequences of 4..=8.
    let lenient = LoopRules::new(&settings(5, 10, 4, 8));
    assert_eq!(lenient.window(), 16);
    let c = calls(&[("a", 1); 4]);
    assert_eq!(seqs(&check(&lenient, &c)), None);
    let c = calls(&[("a", 1); 5]);
    assert_eq!(seqs(&check(&lenient, &c)), Some(vec![1, 2, 3, 4, 5]));
    let c = names(&["a", "b", "c", "a", "b", "c"]);
    assert_eq!(seqs(&check(&lenient, &c)), None, "L=3 < min 4");
    let tools: Vec<&str> = ["a", "b", "c", "d", "e", "f", "g", "h"].repeat(2);
    assert_eq!(
        seqs(&check(&lenient, &names(&tools))),
        Some((1..=16).collect())
    );
}

#[test]
fn invalid_settings_are_clamped() {
    let rules = LoopRules::new(&settings(0, 0, 0, 0));
    assert_eq!(rules, LoopRules::new(&settings(2, 2, 2, 2)));
    // A single call is never a loop.
    assert_eq!(check(&rules, &calls(&[("a", 1)])), None);
}

#[test]
fn detect_with_uses_the_next_call() {
    let rules = LoopRules::default();
    let history = calls(&[("a", 1), ("a", 1)]);
    let next = CallKey {
        seq: 3,
        tool_name: "a",
        args_digest: [1; 16],
    };
    assert_eq!(
        seqs(&rules.detect_with(&history, next)),
        Some(vec![1, 2, 3])
    );
    let other = CallKey {
        args_digest: [2; 16],
        ..next
    };
    assert_eq!(rules.detect_with(&history, other), None);
    assert_eq!(rules.detect_with(&[], next), None);
}
