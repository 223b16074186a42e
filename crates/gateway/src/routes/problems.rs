//! The error answers of the routes, as the OpenAPI document describes them. Every error is a
//! [`Problem`] in `application/problem+json`, said once here. Each answer is a status and the
//! codes it can carry, grouped in `IntoResponses` types declared with `problems!`: the answers
//! that mean the same on several routes below, each route's own at the top of its module; a
//! route's `responses(...)` names the groups it answers with. The groups of one route must not
//! share a status: utoipa keeps the last answer given for a status, so the earlier would vanish
//! from the document.

use crate::error::Problem;
use std::collections::BTreeMap;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::ToSchema;

/// What `IntoResponses` returns: answers by status.
pub type Answers = BTreeMap<String, RefOr<Response>>;

/// Problem answers, each a status and the codes it can carry.
pub fn answers(list: &[(u16, &str)]) -> Answers {
    let schema = Ref::from_schema_name(Problem::name());
    let content = ContentBuilder::new().schema(Some(schema)).build();
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", content.clone())
            .build()
            .into()
    };
    list.iter()
        .map(|&(status, description)| (status.to_string(), problem(description)))
        .collect()
}

/// Declares types whose `IntoResponses` are problem answers: `Name { status => description, … }`.
macro_rules! problems {
    ($($(#[$doc:meta])* $name:ident { $($status:literal => $description:expr),+ $(,)? })+) => {$(
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> $crate::routes::problems::Answers {
                $crate::routes::problems::answers(&[$(($status, $description)),+])
            }
        }
    )+};
}
pub(crate) use problems;

const UNAUTHORIZED: &str = "`unauthorized`: no valid token";

problems! {
    /// A buyer's route, called without a token that verifies.
    Unauthorized { 401 => UNAUTHORIZED }
    /// An admin route, called without a token that verifies or with one that is not an admin's.
    AdminOnly { 401 => UNAUTHORIZED, 403 => "`forbidden`: not an admin token" }
    /// A route that names a sale the database does not have.
    SaleNotFound { 404 => "`sale_not_found`" }
    /// A route that reads a body: one over its limit (the request body's description gives
    /// the limit), or one not all sent within `http.body_timeout_ms`.
    PayloadTooLarge {
        408 => "`request_timeout`: the body was not all sent in time (`http.body_timeout_ms`)",
        411 => "`length_required`: a chunked body (the public port takes a `Content-Length` only)",
        413 => "`payload_too_large`: the body is over the route's limit",
    }
    /// A route that reads Redis and the database, while one of them does not answer.
    Unavailable { 503 => "`stock_unavailable`, `database_unavailable`: retry" }
}
