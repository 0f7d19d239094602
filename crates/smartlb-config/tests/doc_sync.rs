//! `docs/configuration.md` documents exactly the keys the parser knows, and its examples
//! are valid.
//!
//! Convention: a documented key is a Markdown table row whose first cell is the key's
//! dotted path in backticks, such as ``| `upstream.health.interval` | duration | ... |``.

use std::collections::BTreeSet;
use std::path::Path;

use smartlb_config::{known_keys, parse_str};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The first cells of the key rows.
fn documented_keys(doc: &str) -> Vec<String> {
    doc.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |"))
        .map(|(key, _)| key.to_owned())
        .collect()
}

/// The ```toml blocks of the document.
fn toml_blocks(doc: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn every_known_key_is_documented_and_every_documented_key_is_known() {
    let doc = doc();
    let documented = documented_keys(&doc);
    assert!(
        documented.len() > 50,
        "found only {} key rows",
        documented.len()
    );

    let mut seen = BTreeSet::new();
    for key in &documented {
        assert!(seen.insert(key.as_str()), "`{key}` is documented twice");
    }
    let known: BTreeSet<&str> = known_keys().into_iter().collect();
    let undocumented: Vec<&&str> = known.iter().filter(|k| !seen.contains(**k)).collect();
    let unknown: Vec<&&str> = seen.iter().filter(|k| !known.contains(**k)).collect();
    assert!(
        undocumented.is_empty(),
        "keys the parser accepts but docs/configuration.md does not document: {undocumented:?}"
    );
    assert!(
        unknown.is_empty(),
        "keys docs/configuration.md documents but the parser does not accept: {unknown:?}"
    );
}

#[test]
fn the_documented_examples_are_valid() {
    let doc = doc();
    let blocks = toml_blocks(&doc);
    assert!(blocks.len() >= 2);
    let env = |name: &str| (name == "SMARTLB_ADMIN_TOKEN").then(|| "token".to_owned());

    let minimal = parse_str(&blocks[0], "configuration.md (minimal)", &env);
    assert!(minimal.is_ok(), "{}", minimal.unwrap_err());

    let complete = blocks.last().unwrap();
    let from_doc = match parse_str(complete, "configuration.md (complete)", &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let fixture = include_str!("fixtures/full.toml");
    let from_spec = parse_str(fixture, "full.toml", &env).unwrap();
    assert_eq!(
        from_doc, from_spec,
        "the complete example differs from the SPEC's full shape"
    );

    // The discovery example is a whole upstream.
    let dns = blocks
        .iter()
        .find(|b| b.contains("kind = \"dns\""))
        .expect("a dns discovery example");
    let config = parse_str(dns, "configuration.md (dns)", &env);
    assert!(config.is_ok(), "{}", config.unwrap_err());
}
