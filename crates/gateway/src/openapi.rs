//! `GET /openapi.json`: the API description generated from the handlers' own annotations, so
//! it cannot drift from the routes (a test walks every documented path against the server).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "paygate",
        description = "One API for WeChat Pay (merchant API v2 or APIv3, chosen per app; provider `wechat` either way) and Alipay. Amounts are integer fen. Errors are `{\"error\":{\"code\",\"message\"}}`. A WeChat v3 app's pay params are RSA-signed (`signType` `RSA`)."
    ),
    paths(
        routes::orders::create_order,
        routes::orders::get_order,
        routes::orders::sync_order,
        routes::orders::close_order,
        routes::orders::create_refund,
        routes::orders::list_refunds,
        routes::finance::list_orders,
        routes::finance::export_orders,
        routes::finance::summary,
        routes::finance::anomalies,
        routes::finance::callbacks,
        routes::statements::list_runs,
        routes::statements::reconcile_now,
        routes::statements::list_differences,
        routes::statements::export_differences,
        routes::statements::bill_file,
        routes::statements::resolve,
        routes::wechat::login,
        routes::wechat::jsapi_config,
        routes::wechat::oauth_authorize_url,
        routes::wechat::oauth_openid,
        routes::notify::payment_notify,
        routes::notify::routed_notify,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
        routes::events::list_events,
        routes::events::redeliver_event,
    ),
    components(schemas(
        routes::orders::CreateOrderRequest,
        routes::orders::OrderView,
        routes::orders::RefundView,
        routes::orders::CreateRefundRequest,
        routes::wechat::LoginRequest,
        routes::wechat::JsapiConfigRequest,
        routes::wechat::OAuthAuthorizeUrlRequest,
        routes::wechat::OAuthOpenidRequest,
        routes::statements::RunRequest,
        routes::statements::ResolutionRequest,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
