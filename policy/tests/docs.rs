//! The manifest reference's example (`docs/manifest.md`) must stay a valid
//! manifest with the values it documents.

#![allow(clippy::unwrap_used)]

use aegis_policy::Manifest;

#[test]
fn the_reference_example_is_a_valid_manifest() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/manifest.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let start = doc.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + doc[start..].find("```").expect("the block's end");
    let manifest = Manifest::from_yaml(&doc[start..end]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(manifest.name, "research-assistant");
    assert_eq!(manifest.permissions.budgets.max_tool_calls, 100);
    assert!(manifest.sandbox.required);
}
