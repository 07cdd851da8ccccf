//! The finance console: a small static web app served at `/console`, compiled into the binary.
//!
//! The page holds no server-side session. Finance staff paste a finance key, the page keeps it
//! in `sessionStorage` (gone when the tab closes, never in a URL) and calls the same JSON
//! finance API as any other client with an `Authorization: Bearer` header. The server's only
//! job here is to hand out a few fixed files with a strict Content-Security-Policy, so nothing
//! in this module touches the database or the key.
//!
//! Every word the page shows comes from one catalogue per language (`assets/i18n/en.json`,
//! `assets/i18n/zh-CN.json`, served as `/console/en.json` and `/console/zh-CN.json`); the tests
//! below fail when a key is in one catalogue and not the other, or when the page names a key
//! no catalogue has.
//!
//! Why static files and not server-rendered HTML: the console then needs no endpoint of its
//! own, cannot show anything the API would not, and the API's authorisation stays the single
//! gate.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, web};

/// The policy every console response carries: only this origin's own script and styles,
/// `fetch` only to this origin, no inline script or style, no frames, no plugins, no forms
/// posted anywhere. Blob downloads (the CSV export) are navigations, which CSP does not govern.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
frame-ancestors 'none'";

/// One compiled-in file of the console.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const INDEX: Asset = Asset {
    name: "index.html",
    content_type: "text/html; charset=utf-8",
    body: include_str!("assets/index.html"),
};

/// The English catalogue: every key the page uses, with its English text.
const CATALOGUE_EN: &str = include_str!("assets/i18n/en.json");

/// The Simplified Chinese catalogue: the same keys as [`CATALOGUE_EN`].
const CATALOGUE_ZH_CN: &str = include_str!("assets/i18n/zh-CN.json");

/// The files under `/console/…`; the page loads them by these exact names.
const ASSETS: [Asset; 6] = [
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/console.js"),
    },
    Asset {
        name: "format.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/format.js"),
    },
    Asset {
        name: "i18n.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/i18n.js"),
    },
    Asset {
        name: "en.json",
        content_type: "application/json; charset=utf-8",
        body: CATALOGUE_EN,
    },
    Asset {
        name: "zh-CN.json",
        content_type: "application/json; charset=utf-8",
        body: CATALOGUE_ZH_CN,
    },
];

/// Registers `GET /console` and its assets; called once from the app factory with
/// `.configure(console::routes)`.
pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/console", web::get().to(index))
        .route("/console/", web::get().to(index))
        .route("/console/{asset}", web::get().to(asset));
}

async fn index() -> HttpResponse {
    respond(&INDEX)
}

async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|a| a.name == name.as_str()) {
        Some(found) => respond(found),
        None => {
            let mut response = HttpResponse::NotFound().json(serde_json::json!({
                "error": { "code": "not_found", "message": "no such console file" }
            }));
            harden(&mut response);
            response
        }
    }
}

fn respond(asset: &Asset) -> HttpResponse {
    let mut response = HttpResponse::Ok()
        .content_type(asset.content_type)
        // The files change only with the binary; a restart to a new version must not be
        // mixed with a cached old script, and there is little to gain from caching 30 KiB.
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(asset.body);
    harden(&mut response);
    response
}

/// Adds the headers that keep the console from being framed, sniffed or leaking its URL.
fn harden(response: &mut HttpResponse) {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::App;
    use actix_web::test as actix_test;
    use std::collections::BTreeMap;

    async fn get(path: &str) -> actix_web::dev::ServiceResponse {
        let app = actix_test::init_service(App::new().configure(routes)).await;
        actix_test::call_service(&app, actix_test::TestRequest::get().uri(path).to_request()).await
    }

    fn header_of(response: &actix_web::dev::ServiceResponse, name: header::HeaderName) -> String {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[actix_web::test]
    async fn the_console_page_is_served_with_a_policy_that_forbids_inline_script() {
        let response = get("/console").await;
        assert_eq!(response.status(), 200);
        let csp = header_of(&response, header::CONTENT_SECURITY_POLICY);
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("connect-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(header_of(&response, header::CONTENT_TYPE).starts_with("text/html"));
        assert_eq!(
            header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
            "nosniff"
        );
        let body = actix_test::read_body(response).await;
        let html = String::from_utf8_lossy(&body);
        assert!(html.contains("<script type=\"module\" src=\"/console/console.js\">"));
    }

    #[actix_web::test]
    async fn every_file_the_page_references_is_served_with_its_type() {
        let html = INDEX.body;
        for (name, kind) in [
            ("console.css", "text/css"),
            ("console.js", "text/javascript"),
            ("format.js", "text/javascript"),
            ("i18n.js", "text/javascript"),
            ("en.json", "application/json"),
            ("zh-CN.json", "application/json"),
        ] {
            // The catalogues are fetched by language code: `/console/${chosen}.json`.
            let referenced = html.contains(&format!("/console/{name}"))
                || ASSETS.iter().any(|a| a.body.contains(&format!("./{name}")))
                || (name.ends_with(".json")
                    && body_of("i18n.js").contains("/console/${chosen}.json"));
            assert!(referenced, "{name} is served but nothing loads it");
            let response = get(&format!("/console/{name}")).await;
            assert_eq!(response.status(), 200, "{name}");
            assert!(header_of(&response, header::CONTENT_TYPE).starts_with(kind));
            assert!(!header_of(&response, header::CONTENT_SECURITY_POLICY).is_empty());
        }
    }

    #[actix_web::test]
    async fn unknown_console_files_are_not_found_and_paths_do_not_escape() {
        assert_eq!(get("/console/secrets.toml").await.status(), 404);
        assert_eq!(get("/console/..%2fCargo.toml").await.status(), 404);
    }

    fn body_of(name: &str) -> &'static str {
        ASSETS
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.body)
            .unwrap_or_default()
    }

    #[test]
    fn the_script_never_puts_the_key_in_a_url_or_the_log() {
        let script = body_of("console.js");
        assert!(script.contains("sessionStorage"));
        assert!(!script.contains("localStorage"));
        assert!(!script.contains("console.log"));
        assert!(
            !script.contains("innerHTML"),
            "data must go in as text, not markup"
        );
    }

    #[test]
    fn local_storage_holds_only_the_chosen_language() {
        let script = body_of("i18n.js");
        assert!(!script.contains("sessionStorage") && !script.contains("innerHTML"));
        let uses: Vec<&str> = script
            .lines()
            .filter(|line| line.contains("localStorage."))
            .collect();
        assert_eq!(uses.len(), 2, "one read and one write: {uses:?}");
        assert!(
            uses.iter().all(|line| line.contains("(LANGUAGE_SLOT")),
            "{uses:?}"
        );
    }

    /// A catalogue as key → text; panics (failing the test) when it is not a flat JSON object
    /// of strings.
    fn catalogue(name: &str, json: &str) -> BTreeMap<String, String> {
        serde_json::from_str(json)
            .unwrap_or_else(|e| panic!("{name} is not a flat object of strings: {e}"))
    }

    fn catalogues() -> [(&'static str, BTreeMap<String, String>); 2] {
        [
            ("en.json", catalogue("en.json", CATALOGUE_EN)),
            ("zh-CN.json", catalogue("zh-CN.json", CATALOGUE_ZH_CN)),
        ]
    }

    /// The `{name}` placeholders of a text, sorted.
    fn placeholders(text: &str) -> Vec<&str> {
        let mut found: Vec<&str> = text
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .filter(|name| {
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            })
            .collect();
        found.sort_unstable();
        found
    }

    /// The keys of `a` that `b` lacks.
    fn lacking<'a>(a: &'a BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<&'a str> {
        a.keys()
            .filter(|k| !b.contains_key(*k))
            .map(String::as_str)
            .collect()
    }

    #[test]
    fn both_languages_have_the_same_keys_and_placeholders() {
        let [(en_name, en), (zh_name, zh)] = catalogues();
        let only_en = lacking(&en, &zh);
        let only_zh = lacking(&zh, &en);
        assert!(
            only_en.is_empty() && only_zh.is_empty(),
            "keys only in {en_name}: {only_en:?}; keys only in {zh_name}: {only_zh:?}"
        );
        for (key, english) in &en {
            let chinese = &zh[key];
            assert!(
                !english.trim().is_empty() && !chinese.trim().is_empty(),
                "{key} is empty"
            );
            assert_eq!(
                placeholders(english),
                placeholders(chinese),
                "{key}: the two texts fill different placeholders"
            );
        }
    }

    #[test]
    fn the_key_check_fails_on_a_key_missing_in_one_language() {
        // The check above compares key sets; prove it sees a one-sided key.
        let en = catalogue("en", r#"{"a": "A", "b": "B"}"#);
        let zh = catalogue("zh", r#"{"a": "甲"}"#);
        assert_eq!(lacking(&en, &zh), ["b"]);
        assert!(lacking(&zh, &en).is_empty());
        assert_eq!(placeholders("本页 {count} 笔, {x y} {}"), ["count"]);
    }

    /// The values of `attribute="…"` everywhere in `text`.
    fn attribute_values<'a>(text: &'a str, attribute: &str) -> Vec<&'a str> {
        let marker = format!("{attribute}=\"");
        text.match_indices(&marker)
            .filter_map(|(at, _)| text[at + marker.len()..].split_once('"'))
            .map(|(value, _)| value)
            .collect()
    }

    /// The keys the page names literally: data-i18n attributes, `t('…')` calls, and
    /// `group.code` of the selects of API codes.
    fn keys_named_by_the_page() -> Vec<String> {
        let html = INDEX.body;
        let mut keys: Vec<String> = [
            "data-i18n",
            "data-i18n-placeholder",
            "data-i18n-title",
            "data-i18n-aria-label",
        ]
        .iter()
        .flat_map(|a| attribute_values(html, a))
        .map(str::to_owned)
        .collect();
        for tag in html.split("<select ").skip(1) {
            let tag = tag.split('>').next().unwrap_or_default();
            if let (Some(group), Some(codes)) = (
                attribute_values(tag, "data-i18n-codes").first(),
                attribute_values(tag, "data-values").first(),
            ) {
                keys.extend(
                    codes
                        .split_whitespace()
                        .map(|code| format!("{group}.{code}")),
                );
            }
        }
        for script in [body_of("console.js"), body_of("i18n.js")] {
            for call in ["t('", "has('"] {
                keys.extend(
                    script
                        .match_indices(call)
                        // A call of t itself, not of set( or another name ending in t.
                        .filter(|(at, _)| {
                            !script[..*at]
                                .ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == '.')
                        })
                        .filter_map(|(at, _)| script[at + call.len()..].split_once('\''))
                        .map(|(key, _)| key.to_owned()),
                );
            }
        }
        keys
    }

    #[test]
    fn every_key_the_page_names_is_in_the_catalogues() {
        let keys = keys_named_by_the_page();
        assert!(keys.len() > 150, "the scan found only {} keys", keys.len());
        for (name, catalogue) in catalogues() {
            let missing: Vec<&String> = keys
                .iter()
                .filter(|k| !catalogue.contains_key(*k))
                .collect();
            assert!(missing.is_empty(), "{name} lacks {missing:?}");
        }
    }

    #[test]
    fn the_page_itself_holds_no_words() {
        // Everything between tags must be empty, punctuation or one of the few words that are
        // the same in every language: the product name and each language's own name.
        let html = INDEX.body;
        let body = html
            .split_once("<body")
            .map(|(_, body)| body)
            .unwrap_or_default();
        let words: Vec<&str> = body
            .split('<')
            .filter(|part| !part.starts_with("!--"))
            .filter_map(|part| part.split_once('>').map(|(_, text)| text.trim()))
            .filter(|text| text.chars().any(char::is_alphabetic))
            .filter(|text| !["paygate", "中文", "English"].contains(text))
            .collect();
        assert!(words.is_empty(), "text not from a catalogue: {words:?}");
    }
}
