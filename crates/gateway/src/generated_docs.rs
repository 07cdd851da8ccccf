//! Test support for the parts of docs/ that are generated from code (the error-code table, the
//! configuration reference): each sits between `<!-- NAME:begin … -->` and `<!-- NAME:end -->`
//! markers, and a test compares it with what the code renders now.

/// Fails when the block `name` of `docs/<file>` differs from `expected`; with `PAYGATE_BLESS`
/// set it rewrites the block instead.
pub(crate) fn assert_block_fresh(file: &str, name: &str, expected: &str) {
    let path = format!("{}/../../docs/{file}", env!("CARGO_MANIFEST_DIR"));
    let document = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let begin_marker = format!("<!-- {name}:begin");
    let end_marker = format!("<!-- {name}:end -->");
    let (Some(begin), Some(end)) = (document.find(&begin_marker), document.find(&end_marker))
    else {
        panic!("docs/{file} lacks the markers {begin_marker} … {end_marker}");
    };
    let Some(body_start) = document[begin..].find("-->\n").map(|i| begin + i + 4) else {
        panic!("docs/{file}: unterminated {begin_marker}");
    };
    let current = &document[body_start..end];
    if current == expected {
        return;
    }
    if std::env::var_os("PAYGATE_BLESS").is_some() {
        let updated = format!("{}{expected}{}", &document[..body_start], &document[end..]);
        std::fs::write(&path, updated).unwrap_or_else(|e| panic!("{path}: {e}"));
        return;
    }
    assert_eq!(
        current, expected,
        "docs/{file}'s generated `{name}` block is stale; rerun the test with PAYGATE_BLESS=1"
    );
}
