//! Loads the vendored cross-library vectors (copied unchanged from `shared/vectors/wechat/`).

use std::path::PathBuf;

use serde_json::Value;

/// The folder holding the vendored vector files and their README.json.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors/wechat")
}

/// Reads one vector file; a missing or unparsable file fails the test.
pub fn load(file: &str) -> Value {
    let path = dir().join(file);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("vector file {} is missing: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// The array `key` of a vector file; an absent or empty list fails the test.
pub fn list(doc: &Value, key: &str) -> Vec<Value> {
    let items = doc[key]
        .as_array()
        .unwrap_or_else(|| panic!("vector list {key:?} is missing"))
        .clone();
    assert!(!items.is_empty(), "vector list {key:?} has zero cases");
    items
}

/// A string field of a case.
pub fn text<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key]
        .as_str()
        .unwrap_or_else(|| panic!("{}: field {key:?} is not a string", case["id"]))
}

/// The case's id.
pub fn id(case: &Value) -> &str {
    text(case, "id")
}

/// A JSON object of strings as a parameter map; a non-string value fails the test.
pub fn string_map(value: &Value) -> paygate_wechat::sign::Params {
    value
        .as_object()
        .unwrap_or_else(|| panic!("{value} is not an object"))
        .iter()
        .map(|(k, v)| {
            let v = v.as_str().unwrap_or_else(|| panic!("{k} is not a string"));
            (k.clone(), v.to_owned())
        })
        .collect()
}

#[test]
fn every_vector_file_named_in_the_readme_is_present_and_has_cases() {
    let readme = load("README.json");
    let files = list(&readme, "cases");
    assert_eq!(files.len(), 6, "README.json lists six vector files");
    for entry in files {
        let file = text(&entry, "file");
        let doc = load(file);
        assert!(!list(&doc, "cases").is_empty(), "{file} has zero cases");
    }
}
