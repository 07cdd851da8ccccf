//! `GET /openapi.json`: the API description generated from the handlers' own annotations, so
//! it cannot drift from the routes (a test walks every documented path against the server).

use actix_web::HttpResponse;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use crate::error::{ErrorCode, ErrorDetail, ErrorResponse};
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
        routes::orders::OrderList,
        routes::orders::RefundList,
        routes::finance::SummaryReport,
        routes::finance::SummaryRowView,
        routes::finance::AnomalyList,
        routes::finance::AnomalyView,
        routes::finance::CallbackList,
        routes::finance::CallbackView,
        routes::events::EventList,
        routes::events::EventView,
        routes::events::AttemptView,
        routes::statements::RunList,
        routes::statements::RunOutcome,
        routes::statements::RunView,
        routes::statements::BillTotalsView,
        routes::statements::LocalTotalsView,
        routes::statements::DifferenceList,
        routes::statements::DifferenceView,
        routes::statements::ResolutionView,
        routes::wechat::LoginResponse,
        routes::wechat::OAuthAuthorizeUrlResponse,
        routes::wechat::OAuthOpenidResponse,
        routes::wechat::JsapiConfigResponse,
        routes::wechat::LoginRequest,
        routes::wechat::JsapiConfigRequest,
        routes::wechat::OAuthAuthorizeUrlRequest,
        routes::wechat::OAuthOpenidRequest,
        routes::statements::RunRequest,
        routes::statements::ResolutionRequest,
        ErrorResponse,
        ErrorDetail,
        ErrorCode,
    )),
    modifiers(&BearerAuth, &ErrorBodies)
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

/// Gives every error response of the `/v1` API the one error body, and every `/v1` operation a
/// `default` response with it, so a client generator learns the `ErrorCode` enum.
struct ErrorBodies;

impl Modify for ErrorBodies {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let body = || {
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorResponse")))
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            if !path.starts_with("/v1/") {
                continue;
            }
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && (status.starts_with('4') || status.starts_with('5'))
                        && response.content.is_empty()
                    {
                        response
                            .content
                            .insert("application/json".to_owned(), body());
                    }
                }
                responses.entry("default".to_owned()).or_insert_with(|| {
                    RefOr::T(
                        ResponseBuilder::new()
                            .description("Any error: `{\"error\":{\"code\",\"message\"}}`; the code decides the status (see ErrorCode)")
                            .content("application/json", body())
                            .build(),
                    )
                });
            }
        }
    }
}

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
