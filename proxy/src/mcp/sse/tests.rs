#![allow(clippy::unwrap_used)]

use proptest::prelude::*;

use super::*;

fn events(stream: &[u8], limit: usize) -> Vec<SseEvent> {
    let mut parser = SseParser::new(limit);
    let mut out = Vec::new();
    parser.feed(stream, &mut out);
    out
}

fn data(events: &[SseEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.data.clone()).unwrap())
        .collect()
}

#[test]
fn the_event_stream_rules() {
    // MCP's shape: a priming event with an id and no data, then a message.
    let stream = b"id: 0\ndata:\n\nid: 1\nretry: 3000\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n";
    let got = events(stream, 1024);
    assert_eq!(data(&got), ["", r#"{"jsonrpc":"2.0","id":7,"result":{}}"#]);
    assert_eq!(got[1].id.as_deref(), Some("1"));
    assert_eq!(got[1].event, "message");

    let cases: &[(&[u8], &[&str])] = &[
        (b"data: a\ndata: b\n\n", &["a\nb"]),
        (b"data:a\r\n\r\ndata:  b\r\r", &["a", " b"]),
        (b": comment\ndata: x\n\n", &["x"]),
        (b"data\n\n", &[""]),
        (b"event: x\n\n", &[]),
        (b"data: unfinished", &[]),
        (b"dat: x\ndata: y\nfoo: bar\n\n", &["y"]),
        (b"data: a\n\n\n\ndata: b\n\n", &["a", "b"]),
    ];
    for (stream, want) in cases {
        assert_eq!(
            data(&events(stream, 1024)),
            *want,
            "{}",
            String::from_utf8_lossy(stream)
        );
    }
}

#[test]
fn data_is_capped_but_measured_and_hashed_in_full() {
    let big = "x".repeat(10_000);
    let got = events(format!("data: {big}\ndata: y\n\n").as_bytes(), 100);
    assert_eq!(got[0].data.len(), 100);
    assert_eq!(got[0].data_len, 10_002);
    assert!(!got[0].is_complete());
    let full: [u8; 32] = Sha256::digest(format!("{big}\ny")).into();
    assert_eq!(got[0].data_sha256, full);
}

#[test]
fn ids_persist_and_nul_ids_are_ignored() {
    let got = events(
        b"id: a\ndata: 1\n\ndata: 2\n\nid: b\0c\ndata: 3\n\nid\ndata: 4\n\n",
        64,
    );
    let ids: Vec<Option<&str>> = got.iter().map(|e| e.id.as_deref()).collect();
    assert_eq!(ids, [Some("a"), Some("a"), Some("a"), Some("")]);
}

proptest! {
    /// However the bytes are split into chunks, the events are the same.
    #[test]
    fn any_chunking_gives_the_same_events(
        lines in prop::collection::vec(
            prop_oneof![
                "data: [a-z{}\":, ]{0,20}",
                "data:[a-z]{0,5}",
                "id: [0-9]{1,3}",
                "event: [a-z]{1,6}",
                ": [a-z ]{0,10}",
                "retry: [0-9]{1,4}",
                Just(String::new()),
            ],
            0..30,
        ),
        endings in prop::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 30),
        cuts in prop::collection::vec(0usize..400, 0..12),
        limit in 1usize..40,
    ) {
        let mut stream = Vec::new();
        for (line, ending) in lines.iter().zip(endings.iter().cycle()) {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(ending.as_bytes());
        }
        let whole = events(&stream, limit);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        let mut parser = SseParser::new(limit);
        let mut chunked = Vec::new();
        let mut at = 0;
        for cut in cuts.into_iter().chain([stream.len()]) {
            parser.feed(&stream[at..cut], &mut chunked);
            at = cut;
        }
        prop_assert_eq!(chunked, whole);
    }
}

/// Splits `stream`, fed in `chunks`, into raw event blocks as a relay would.
fn blocks(chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Option<SseEvent>>, Vec<u8>) {
    let mut parser = SseParser::new(1024);
    let (mut blocks, mut dispatched, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in chunks {
        let (mut out, mut marks) = (Vec::new(), Vec::new());
        parser.feed_framed(chunk, &mut out, &mut marks);
        let mut start = 0;
        for mark in marks {
            pending.extend_from_slice(&chunk[start..mark.offset]);
            blocks.push(std::mem::take(&mut pending));
            dispatched.push(mark.event.map(|i| out[i].clone()));
            start = mark.offset;
        }
        pending.extend_from_slice(&chunk[start..]);
    }
    (blocks, dispatched, pending)
}

#[test]
fn an_empty_chunk_between_cr_and_lf_changes_nothing() {
    // CR | (empty) | LF is one line ending, not two (which would dispatch).
    let (blocks, events, _) = blocks(&[b"data: a\r", b"", b"\ndata: b\n"]);
    assert!(blocks.is_empty(), "{blocks:?} {events:?}");
}

#[test]
fn framing_marks_each_block_with_its_event() {
    let stream: &[u8] =
        b"id: 0\ndata:\n\nretry: 1000\n\nevent: message\r\ndata: {\"id\":1}\r\n\r\ndata: tail";
    let (blocks, events, rest) = blocks(&[&stream[..9], &stream[9..30], &stream[30..]]);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0], b"id: 0\ndata:\n\n");
    assert_eq!(blocks[1], b"retry: 1000\n\n");
    assert_eq!(blocks[2], b"event: message\r\ndata: {\"id\":1}\r\n\r\n");
    assert_eq!(events[0].as_ref().map(|e| e.data.len()), Some(0));
    assert!(events[1].is_none());
    assert_eq!(
        events[2].as_ref().map(|e| e.data.clone()),
        Some(b"{\"id\":1}".to_vec())
    );
    assert_eq!(rest, b"data: tail");
}

proptest! {
    /// However the stream is chunked, the blocks put back together are the
    /// stream, and they dispatch the same events as the plain parser.
    #[test]
    fn framing_loses_and_reorders_nothing(
        lines in prop::collection::vec(
            prop_oneof!["data: [a-z]{0,8}", "id: [0-9]{1,3}", ": [a-z]{0,4}", Just(String::new())],
            0..30,
        ),
        endings in prop::collection::vec(prop_oneof![Just("\n"), Just("\r\n"), Just("\r")], 30),
        cuts in prop::collection::vec(0usize..300, 0..10),
    ) {
        let mut stream = Vec::new();
        for (line, ending) in lines.iter().zip(endings.iter().cycle()) {
            stream.extend_from_slice(line.as_bytes());
            stream.extend_from_slice(ending.as_bytes());
        }
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(stream.len())).collect();
        cuts.sort_unstable();
        cuts.push(stream.len());
        let mut chunks = Vec::new();
        let mut at = 0;
        for cut in cuts {
            chunks.push(&stream[at..cut]);
            at = cut;
        }
        let (blocks, dispatched, rest) = blocks(&chunks);
        let joined: Vec<u8> = blocks.concat().into_iter().chain(rest).collect();
        prop_assert_eq!(&joined, &stream);
        let framed: Vec<SseEvent> = dispatched.into_iter().flatten().collect();
        prop_assert_eq!(framed, events(&stream, 1024));
    }
}
