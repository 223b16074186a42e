//! The extractors: a handler that takes a [`Buyer`] or an [`Admin`] runs only for a caller whose
//! token the app's [`Verifier`] accepts (401 otherwise), and an [`Admin`] only when its token
//! carries the admin role (403 otherwise).

use super::verifier::{Verified, Verifier};
use crate::error::ApiError;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use domain::UserId;
use std::future::{ready, Ready};
use std::sync::Arc;

/// An authenticated buyer.
#[derive(Debug, Clone)]
pub struct Buyer(pub UserId);

/// An authenticated operator (`role: "admin"`).
#[derive(Debug, Clone)]
pub struct Admin(pub UserId);

/// The verified token of `req`, with the app's verifier.
fn verified(req: &HttpRequest) -> Result<Arc<Verified>, ApiError> {
    req.app_data::<web::Data<Verifier>>()
        .ok_or(ApiError::Internal)?
        .verify(req)
}

impl FromRequest for Buyer {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(verified(req).map(|verified| Buyer(verified.user.clone())))
    }
}

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(verified(req).and_then(|verified| match verified.admin {
            true => Ok(Admin(verified.user.clone())),
            false => Err(ApiError::Forbidden),
        }))
    }
}
