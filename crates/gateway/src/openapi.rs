//! The HTTP contract as code: the OpenAPI 3.1 document of the gateway, generated from the
//! handlers' annotations (`utoipa`), so it cannot drift from them. Served at `/openapi.json`
//! with a Swagger UI at `/docs/` (its assets are compiled in: it works offline); a copy is
//! committed as `docs/openapi.json`, and a test fails when the copy differs from what the code
//! generates (`make openapi` rewrites it).

use crate::error::Problem;
use crate::routes;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "seckill gateway",
        description = "The buyer, payment and admin API of seckill, a flash-sale order system. \
Every error is an `application/problem+json` document with a stable machine `code`; each answer \
lists the codes it can carry. Every answer carries a `traceresponse` header (W3C Trace Context).",
        license(name = "Apache-2.0"),
    ),
    paths(
        routes::challenge::challenge,
        routes::queue::join,
        routes::queue::poll,
        routes::orders::buy,
        routes::orders::get_order,
        routes::payments::notify,
        routes::admin::put_sale,
        routes::admin::get_sale,
        routes::admin::refunds,
        routes::health::healthz,
        routes::health::readyz,
        routes::health::metrics,
    ),
    // Named here because the error answers refer to it by name (`routes::problems`).
    components(schemas(Problem)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "buyers", description = "Waiting in a sale's waiting room, buying and following an order (a buyer's JWT)"),
        (name = "payments", description = "The payment provider's webhook (signed with the webhook secret)"),
        (name = "admin", description = "Sales and refunds (a JWT with `role: admin`), served on the admin port (`http.admin_port`); the public port answers these paths `404 not_found` unless `http.admin_on_public` is set"),
        (name = "operations", description = "Liveness"),
        (name = "ops", description = "Readiness and Prometheus metrics, served on the admin port (`http.admin_port`) only"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let jwt = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "buyer",
            jwt("A JWT: HS256 signed with `auth.jwt_secret`, or an identity provider's (`auth.jwks_url`, `auth.jwks_file` or `auth.public_key_file`); `sub` is the buyer's id"),
        );
        components.add_security_scheme(
            "admin",
            jwt("A buyer's kind of JWT whose role claim (`auth.role_claim`, default `role`) names `auth.admin_role` (default `admin`)"),
        );
        components.add_security_scheme(
            "webhook_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Seckill-Signature",
                "`t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\">` with `payments.webhook_secret`",
            ))),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = ApiDoc::openapi();
    document.info.version = env!("CARGO_PKG_VERSION").to_owned();
    document
}

/// The document as the committed `docs/openapi.json` holds it.
pub fn pretty_json() -> String {
    let mut json = document()
        .to_pretty_json()
        .expect("the OpenAPI document serializes");
    json.push('\n');
    json
}
