//! Criterion benches for policy decisions (results: `bench/README.md`,
//! "Policy decisions").
//!
//! - `decide/<case>`: `aegis_policy::decide()` on a realistic compiled
//!   manifest (50 tools, 20 domain patterns, 10 exec bins) for a tainted
//!   session; the proposal is read from its payload beforehand.
//! - `rego/<case>`: the same rules in Rego (`bench/rego/aegis.rego`),
//!   evaluated by regorus: `set_input` + `eval_rule("data.aegis.decision")`
//!   on an engine whose policy and data were loaded once.
//! - `rego_input/<case>`: building that Rego input from the payload (the
//!   destination host parsed by `destination()`, JSON → `regorus::Value`),
//!   which `rego/<case>` does not include.
//! - `load/...`: what a manifest reload costs: validation + compilation,
//!   and for comparison loading the Rego policy and data into a new engine.
//!
//! Run: `cargo bench -p aegis-bench --bench policy`.

use std::hint::black_box;

use aegis_bench::policy::{
    REGO_POLICY, REGO_RULE, Session, cases, manifest, manifest_json, rego_data, rego_input,
};
use aegis_policy::{CompiledManifest, Manifest, Proposal, decide};
use criterion::{Criterion, criterion_group, criterion_main};

/// A regorus engine with the policy and the manifest's data loaded.
fn rego_engine(manifest: &Manifest) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine
        .add_policy("aegis.rego".to_owned(), REGO_POLICY.to_owned())
        .expect("the Rego policy parses");
    engine
        .add_data(regorus::Value::from(rego_data(manifest)))
        .expect("the Rego data is an object");
    engine
}

fn load(c: &mut Criterion) {
    let mut group = c.benchmark_group("load");
    let json = manifest_json();
    group.bench_function("from_value+compile", |b| {
        b.iter(|| {
            let manifest = Manifest::from_value(black_box(&json)).expect("valid");
            black_box(CompiledManifest::new(&manifest))
        });
    });
    let manifest = manifest();
    group.bench_function("rego_engine", |b| {
        b.iter(|| black_box(rego_engine(black_box(&manifest))));
    });
    group.finish();
}

fn decisions(c: &mut Criterion) {
    let manifest = manifest();
    let compiled = CompiledManifest::new(&manifest);
    let session = Session::tainted();
    let facts = session.facts();
    let cases = cases();

    let mut group = c.benchmark_group("decide");
    for case in &cases {
        let proposal = Proposal::from_payload(&case.payload).expect("cases have a tool_name");
        group.bench_function(case.name, |b| {
            b.iter(|| black_box(decide(black_box(&proposal), black_box(&facts), &compiled)));
        });
    }
    group.finish();

    let mut engine = rego_engine(&manifest);
    let mut group = c.benchmark_group("rego");
    for case in &cases {
        let input = regorus::Value::from(rego_input(&case.payload, &session));
        group.bench_function(case.name, |b| {
            b.iter(|| {
                engine.set_input(black_box(input.clone()));
                black_box(engine.eval_rule(REGO_RULE.to_owned()).expect("evaluates"))
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("rego_input");
    for case in &cases {
        group.bench_function(case.name, |b| {
            b.iter(|| {
                regorus::Value::from(rego_input(black_box(&case.payload), black_box(&session)))
            });
        });
    }
    group.finish();
}

criterion_group!(benches, load, decisions);
criterion_main!(benches);
