//! The configuration reference (docs/config.md, `paygate config-reference`), rendered from the
//! JSON Schema `schemars` derives from the settings types and their doc comments, with the
//! defaults read from `Settings::default()`. Nothing here lists a key by hand, so a key added
//! to a settings type appears in the reference, and a unit test fails until docs/config.md is
//! regenerated.

use serde_json::{Map, Value};

use crate::config::Settings;

/// The generated part of docs/config.md: one table per TOML table, every key with its type,
/// default and description.
pub fn markdown() -> String {
    let schema = schemars::schema_for!(Settings);
    let root = schema.as_value();
    let defaults = serde_json::to_value(Settings::default()).unwrap_or(Value::Null);
    let mut renderer = Renderer {
        defs: root.get("$defs").and_then(Value::as_object),
        out: String::new(),
    };
    renderer.table(Section::plain(""), root, Some(&defaults));
    renderer.out
}

/// Walks the schema, writing Markdown.
struct Renderer<'a> {
    /// The schema's `$defs`, which `$ref`s point into.
    defs: Option<&'a Map<String, Value>>,
    out: String,
}

/// A property's schema with `Option`'s `null` alternative removed.
fn without_null(schema: &Value) -> (&Value, bool) {
    if let Some(any_of) = schema.get("anyOf").and_then(Value::as_array) {
        let rest: Vec<&Value> = any_of
            .iter()
            .filter(|s| s.get("type") != Some(&Value::from("null")))
            .collect();
        if rest.len() == 1 && rest.len() < any_of.len() {
            return (rest[0], true);
        }
    }
    let nullable = schema
        .get("type")
        .and_then(Value::as_array)
        .is_some_and(|types| types.contains(&Value::from("null")));
    (schema, nullable)
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn show_default(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "—".to_owned(),
        Some(Value::Object(map)) if map.is_empty() => "—".to_owned(),
        Some(Value::String(text)) => format!("`{text:?}`"),
        Some(other) => format!("`{other}`"),
    }
}

impl<'a> Renderer<'a> {
    /// The definition a `$ref` names, or the schema itself.
    fn resolve<'v>(&self, schema: &'v Value) -> &'v Value
    where
        'a: 'v,
    {
        let Some(reference) = schema.get("$ref").and_then(Value::as_str) else {
            return schema;
        };
        let name = reference.trim_start_matches("#/$defs/");
        self.defs.and_then(|defs| defs.get(name)).unwrap_or(schema)
    }

    fn is_table(&self, schema: &Value) -> bool {
        self.resolve(schema).get("properties").is_some()
    }

    fn type_name(&self, schema: &Value) -> String {
        let schema = self.resolve(schema);
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            return values
                .iter()
                .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        if let Some(variants) = schema.get("oneOf").and_then(Value::as_array) {
            return variants
                .iter()
                .filter_map(|v| v.get("const").and_then(Value::as_str))
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(" \\| ");
        }
        let kind = match schema.get("type") {
            Some(Value::String(kind)) => kind.clone(),
            Some(Value::Array(kinds)) => kinds
                .iter()
                .filter_map(Value::as_str)
                .find(|k| *k != "null")
                .unwrap_or_default()
                .to_owned(),
            _ => String::new(),
        };
        match (kind.as_str(), schema.get("format").and_then(Value::as_str)) {
            ("array", _) => match schema.get("items") {
                Some(items) => format!("list of {}", self.type_name(items)),
                None => "list".to_owned(),
            },
            ("string", Some("ip")) => "IP address".to_owned(),
            ("integer", _) => "integer".to_owned(),
            (kind, _) if !kind.is_empty() => kind.to_owned(),
            _ => "value".to_owned(),
        }
    }

    /// One TOML table at `path` (`""` for the top level; `[[path]]` when `array`): its keys as
    /// rows, then its sub-tables as sections of their own.
    fn table(&mut self, section: Section<'_>, schema: &Value, defaults: Option<&Value>) {
        let schema = self.resolve(schema);
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        let required: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.out.push_str(&format!("### {}\n\n", section.heading()));
        if let Some(note) = section.note {
            self.out.push_str(&format!("{note}\n\n"));
        } else if !section.path.is_empty()
            && let Some(description) = schema.get("description").and_then(Value::as_str)
        {
            self.out.push_str(&format!(
                "{}\n\n",
                description.split_whitespace().collect::<Vec<_>>().join(" ")
            ));
        }
        let mut nested = Vec::new();
        self.out
            .push_str("| key | type | default | description |\n|---|---|---|---|\n");
        for (key, property) in properties {
            let (inner, nullable) = without_null(property);
            let default = defaults.and_then(|d| d.get(key));
            if self.is_table(inner)
                || inner
                    .get("additionalProperties")
                    .is_some_and(Value::is_object)
            {
                nested.push((key.clone(), inner.clone(), default.cloned()));
                continue;
            }
            let description = one_line(
                property
                    .get("description")
                    .or_else(|| inner.get("description"))
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
            );
            let needed = if required.contains(&key.as_str()) && defaults.is_none() && !nullable {
                " **(required)**"
            } else {
                ""
            };
            let default = default
                .or_else(|| property.get("default"))
                .or_else(|| inner.get("default"));
            self.out.push_str(&format!(
                "| `{key}`{needed} | {} | {} | {description} |\n",
                self.type_name(inner),
                show_default(default),
            ));
        }
        self.out.push('\n');
        for (key, schema, default) in nested {
            let path = if section.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", section.path)
            };
            match schema.get("additionalProperties") {
                Some(values) => self.entries(&path, values),
                None => self.table(Section::plain(&path), &schema, default.as_ref()),
            }
        }
    }

    /// A table of named entries: `[wechat.NAME]` (one section per API version),
    /// `[alipay.NAME]`, `[[webhooks.endpoints.APP]]`.
    fn entries(&mut self, path: &str, values: &Value) {
        let values = self.resolve(values);
        if let Some(items) = values.get("items")
            && values.get("type") == Some(&Value::from("array"))
        {
            let path = format!("{path}.APP");
            let section = Section {
                path: &path,
                array: true,
                label: "",
                note: None,
            };
            self.table(section, items, None);
            return;
        }
        let path = format!("{path}.NAME");
        match values.get("anyOf").and_then(Value::as_array) {
            Some(versions) => {
                let labels = [
                    (
                        " (API v2)",
                        "WeChat Pay merchant API v2 (`api` absent or `\"v2\"`).",
                    ),
                    (
                        " (APIv3)",
                        "WeChat Pay APIv3: the same table with `api = \"v3\"`.",
                    ),
                ];
                for (version, (label, note)) in versions.iter().zip(labels) {
                    let section = Section {
                        path: &path,
                        array: false,
                        label,
                        note: Some(note),
                    };
                    self.table(section, version, None);
                }
            }
            None => self.table(Section::plain(&path), values, None),
        }
    }
}

/// Where a table sits and how its heading reads.
struct Section<'p> {
    /// Dotted TOML path, `""` for the top level.
    path: &'p str,
    /// An array of tables (`[[…]]`).
    array: bool,
    /// Said after the heading's path.
    label: &'p str,
    /// Said under the heading instead of the type's own description.
    note: Option<&'p str>,
}

impl<'p> Section<'p> {
    fn plain(path: &'p str) -> Self {
        Section {
            path,
            array: false,
            label: "",
            note: None,
        }
    }

    fn heading(&self) -> String {
        match (self.path.is_empty(), self.array) {
            (true, _) => "Top level".to_owned(),
            (false, true) => format!("`[[{}]]`{}", self.path, self.label),
            (false, false) => format!("`[{}]`{}", self.path, self.label),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/config.md carries the reference rendered from the settings types: a key added,
    /// removed or re-described fails here until the page is regenerated.
    #[test]
    fn config_md_is_the_reference_the_settings_types_render() {
        crate::generated_docs::assert_block_fresh("config.md", "config-reference", &markdown());
    }

    #[test]
    fn the_reference_has_every_table_and_the_keys_the_examples_use() {
        let reference = markdown();
        for needle in [
            "### `[wechat.NAME]` (API v2)",
            "### `[wechat.NAME]` (APIv3)",
            "### `[alipay.NAME]`",
            "### `[[webhooks.endpoints.APP]]`",
            "### `[statements]`",
            "| `server_ip` |",
            "| `sign_type` |",
            "| `channels` |",
            "| `p12_file` |",
            "| `p12_password` |",
            "| `notify_body_bytes` |",
            "| `expiry_grace_seconds` | integer | `60` |",
            "| `appid` **(required)** |",
        ] {
            assert!(
                reference.contains(needle),
                "{needle} missing from\n{reference}"
            );
        }
    }
}
