//! Loads the vendored cross-SDK vectors (copied unchanged from `shared/vectors/wechat-v3/`).

use std::path::PathBuf;

use serde_json::Value;

/// The folder holding the vendored vector files, README and keys.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors/wechat-v3")
}

/// Reads a file of the vector folder as text; a missing file fails the test.
pub fn read(relative: &str) -> String {
    let path = dir().join(relative);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {} is missing: {e}", path.display()))
}

/// Reads one vector file; a missing or unparsable file fails the test.
pub fn load(file: &str) -> Value {
    let text = read(file);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file} is not JSON: {e}"))
}

/// The `cases` of a vector file; an absent or empty list fails the test.
pub fn cases(file: &str) -> Vec<Value> {
    let doc = load(file);
    let items = doc["cases"]
        .as_array()
        .unwrap_or_else(|| panic!("{file}: no cases"))
        .clone();
    assert!(!items.is_empty(), "{file} has zero cases");
    items
}

/// A string field of a case.
pub fn text<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: field {key:?} is not a string", case["name"]))
}

/// The case's name.
pub fn name(case: &Value) -> &str {
    text(case, "name")
}

#[test]
fn every_vector_file_of_the_readme_is_present_with_its_case_count() {
    // The counts of the README's table: a file that lost cases must fail the run.
    for (file, count) in [
        ("request_sign.json", 19),
        ("verify.json", 19),
        ("notify.json", 12),
        ("pay_sign.json", 7),
        ("certificates.json", 1),
        ("sensitive.json", 4),
        ("bill.json", 1),
    ] {
        assert_eq!(cases(file).len(), count, "{file}");
    }
}
