//! Criterion micro-benches for the MCP proxy's stage functions (results:
//! `bench/README.md`, "MCP stage micro-benches (issue 6)").
//!
//! - `jsonrpc_parse/<case>`: `aegis_proxy::mcp::jsonrpc::parse` on a POST
//!   body: a typical `tools/call` (~300 B), one with 1 KiB of arguments, and
//!   a batch of 16 `tools/call` requests.
//! - `tools_list_filter/50_tools_10_declared`: `tools_list::filter` on a
//!   `tools/list` result of 50 tools, the manifest declaring 10 (a
//!   `HashSet` lookup). The response is cloned per iteration, outside the
//!   timing (`iter_batched`).
//! - `sse_feed_framed/<stream>`: `SseParser::feed_framed` over a whole
//!   MCP-style event stream (priming event, 3 progress notifications, a 1 KiB
//!   and a 64 KiB result event) fed in 8 KiB chunks, as the relay's tee sees
//!   it; a new parser per iteration, with the default `max_response_bytes`
//!   data limit.
//!
//! Run: `cargo bench -p aegis-bench --bench proxy`.

use std::collections::HashSet;
use std::hint::black_box;

use aegis_proxy::config::DEFAULT_MCP_MAX_RESPONSE_BYTES;
use aegis_proxy::mcp::jsonrpc;
use aegis_proxy::mcp::sse::{Mark, SseEvent, SseParser};
use aegis_proxy::mcp::tools_list;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};

/// Chunk size of the SSE tee (hyper's typical body frame).
const CHUNK: usize = 8 * 1024;

/// A `tools/call` request whose `arguments` serialise to about `args_bytes`.
fn tool_call(id: u64, args_bytes: usize) -> Value {
    let mut call = json!({
        "jsonrpc": "2.0",
        "id": id,
        "method": "tools/call",
        "params": {
            "name": "read_file",
            "arguments": {
                "path": format!("/workspace/data-{id}.csv"),
                "encoding": "utf-8",
                "offset": 0,
                "max_bytes": 65536,
                "note": "",
            },
            "_meta": {"progressToken": format!("p-{id}")},
        },
    });
    let now = serde_json::to_vec(&call["params"]["arguments"])
        .expect("JSON serialises")
        .len();
    call["params"]["arguments"]["note"] = json!("x".repeat(args_bytes.saturating_sub(now)));
    call
}

fn jsonrpc_parse(c: &mut Criterion) {
    let typical = serde_json::to_vec(&tool_call(7, 150)).expect("JSON serialises");
    let large = serde_json::to_vec(&tool_call(8, 1024)).expect("JSON serialises");
    let batch = serde_json::to_vec(&Value::Array((0..16).map(|i| tool_call(i, 150)).collect()))
        .expect("JSON serialises");
    let cases = [
        ("tools_call", typical),
        ("tools_call_1KiB_args", large),
        ("batch_16", batch),
    ];
    let mut group = c.benchmark_group("jsonrpc_parse");
    for (name, body) in &cases {
        jsonrpc::parse(body).expect("the bench bodies are valid JSON-RPC");
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_with_input(
            BenchmarkId::new(*name, format!("{}B", body.len())),
            body,
            |b, body| b.iter(|| black_box(jsonrpc::parse(black_box(body)))),
        );
    }
    group.finish();
}

fn tools_list_filter(c: &mut Criterion) {
    let tools: Vec<Value> = (0..50)
        .map(|i| {
            json!({
                "name": format!("tool_{i:02}"),
                "description": format!("Tool number {i}: does one thing, with a sentence of description."),
                "inputSchema": {
                    "type": "object",
                    "properties": {
                        "path": {"type": "string", "description": "A path in the workspace"},
                        "limit": {"type": "integer", "minimum": 0},
                    },
                    "required": ["path"],
                },
                "annotations": {"readOnlyHint": i % 2 == 0},
            })
        })
        .collect();
    let response = json!({"jsonrpc": "2.0", "id": 2, "result": {"tools": tools}});
    // Every fifth tool is declared.
    let declared: HashSet<String> = (0..50).step_by(5).map(|i| format!("tool_{i:02}")).collect();
    assert_eq!(declared.len(), 10);
    assert_eq!(
        tools_list::filter(&mut response.clone(), |name| declared.contains(name)).removed,
        40
    );

    let mut group = c.benchmark_group("tools_list_filter");
    group.bench_function("50_tools_10_declared", |b| {
        b.iter_batched(
            || response.clone(),
            |mut response| {
                let removed = tools_list::filter(&mut response, |name| declared.contains(name));
                black_box((removed, response))
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// One SSE event block carrying `message` as its data.
fn sse_event(id: usize, message: &Value) -> String {
    format!(
        "id: {id}\nevent: message\ndata: {}\n\n",
        serde_json::to_string(message).expect("JSON serialises")
    )
}

/// A `tools/call` result whose JSON is about `bytes` long.
fn result_message(id: u64, bytes: usize) -> Value {
    let mut message = json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": {"content": [{"type": "text", "text": ""}], "isError": false},
    });
    let now = serde_json::to_vec(&message).expect("JSON serialises").len();
    message["result"]["content"][0]["text"] = json!("r".repeat(bytes.saturating_sub(now)));
    message
}

/// Priming event, 3 progress notifications, a 1 KiB and a 64 KiB result.
fn mcp_stream() -> Vec<u8> {
    let mut stream = String::from("id: 0\nretry: 3000\ndata:\n\n");
    for (i, progress) in [25, 50, 75].into_iter().enumerate() {
        let note = json!({
            "jsonrpc": "2.0",
            "method": "notifications/progress",
            "params": {"progressToken": "p-1", "progress": progress, "total": 100,
                       "message": format!("step {}", i + 1)},
        });
        stream.push_str(&sse_event(i + 1, &note));
    }
    stream.push_str(&sse_event(4, &result_message(1, 1024)));
    stream.push_str(&sse_event(5, &result_message(2, 64 * 1024)));
    stream.into_bytes()
}

fn sse_feed_framed(c: &mut Criterion) {
    let stream = mcp_stream();
    let feed = |stream: &[u8], events: &mut Vec<SseEvent>, marks: &mut Vec<Mark>| {
        let mut parser = SseParser::new(DEFAULT_MCP_MAX_RESPONSE_BYTES);
        for chunk in stream.chunks(CHUNK) {
            marks.clear();
            parser.feed_framed(chunk, events, marks);
        }
    };
    {
        let (mut events, mut marks) = (Vec::new(), Vec::new());
        feed(&stream, &mut events, &mut marks);
        // The priming event's empty `data:` line dispatches an empty event.
        assert_eq!(
            events.len(),
            6,
            "priming, 3 progress notifications, 2 results"
        );
        assert!(events.iter().all(SseEvent::is_complete));
    }

    let mut group = c.benchmark_group("sse_feed_framed");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_with_input(
        BenchmarkId::new("mcp_stream_8KiB_chunks", format!("{}B", stream.len())),
        &stream,
        |b, stream| {
            let (mut events, mut marks) = (Vec::new(), Vec::new());
            b.iter(|| {
                events.clear();
                feed(black_box(stream), &mut events, &mut marks);
                black_box(events.len())
            });
        },
    );
    group.finish();
}

criterion_group!(benches, jsonrpc_parse, tools_list_filter, sse_feed_framed);
criterion_main!(benches);
