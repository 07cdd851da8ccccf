//! The finance console: a small static web app served at `/console`, compiled into the binary.
//!
//! The page holds no server-side session. Finance staff paste a finance key, the page keeps it
//! in `sessionStorage` (gone when the tab closes, never in a URL) and calls the same JSON
//! finance API as any other client with an `Authorization: Bearer` header. The server's only
//! job here is to hand out four fixed files with a strict Content-Security-Policy, so nothing
//! in this module touches the database or the key.
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

/// The files under `/console/…`; the page loads them by these exact names.
const ASSETS: [Asset; 3] = [
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
        ] {
            let referenced = html.contains(&format!("/console/{name}"))
                || ASSETS.iter().any(|a| a.body.contains(&format!("./{name}")));
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

    #[test]
    fn the_script_never_puts_the_key_in_a_url_or_the_log() {
        let script = ASSETS
            .iter()
            .find(|a| a.name == "console.js")
            .map(|a| a.body)
            .unwrap_or_default();
        assert!(script.contains("sessionStorage"));
        assert!(!script.contains("localStorage"));
        assert!(!script.contains("console.log"));
        assert!(
            !script.contains("innerHTML"),
            "data must go in as text, not markup"
        );
    }
}
