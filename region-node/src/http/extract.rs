//! Request extractors whose rejections are our JSON errors, so that bad input never reaches a
//! handler and never gets axum's plain-text answers: the body, path ids, queries, the caller
//! (and a booking write's caller, within its rate limit), consistency tokens and the
//! `Idempotency-Key`. Those that read a path segment or a header say so in the OpenAPI document
//! too (`IntoParams`), so a handler's parameters are documented by naming its extractors.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::StatusCode;
use id_gen::Id;
use serde::de::DeserializeOwned;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Required, Schema};
use utoipa::{IntoParams, PartialSchema};
use wire::error::public_parse_message;

use crate::booking::idempotency::key_from_headers;
use crate::error::ApiError;
use crate::identity::auth::{AuthUser, Permissions};
use crate::input::parse_id;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

/// A JSON body. Content-Type is not required (curl users forget it); the body must parse.
pub struct Json<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(usize::MAX);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| body_rejection(rejection, limit))?;
        parse_json(&bytes).map(Json)
    }
}

/// The configured body limit, put in request extensions so rejections can name it.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

fn body_rejection(rejection: BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge { limit }
    } else {
        // axum's and hyper's words for a broken upload are for our logs, not the client.
        tracing::debug!(%rejection, "reading a request body failed");
        ApiError::Validation("could not read the request body".into())
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidJson(public_parse_message(&e.to_string())))
}

/// An `:id` path segment holding a Snowflake ID.
pub struct PathId(pub Id);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::InvalidId(public_parse_message(&e.body_text())))?;
        parse_id("id", &raw).map(PathId)
    }
}

impl IntoParams for PathId {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![ParameterBuilder::new()
            .name("id")
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some("The record's id"))
            .schema(Some(Id::schema()))
            .build()]
    }
}

/// An optional request header's parameter (`name` capitalized as people write it: links and
/// clients match parameter names exactly).
fn header_parameter(name: &str, description: &str, schema: ObjectBuilder) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(RefOr::T(Schema::Object(schema.build()))))
        .build()
}

/// Query string into a struct, with our error on failure.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::Validation(public_parse_message(&e.body_text())))
    }
}

/// The caller, from a valid bearer token. Handlers take it before their body, so a request
/// without one gets `401` before anything in its body is looked at.
pub struct Caller(pub AuthUser);

impl FromRequestParts<Arc<Node>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let authorization = parts
            .headers
            .get(AUTHORIZATION)
            // A header that is not text is no `Bearer <token>` either.
            .map(|h| h.to_str().unwrap_or_default());
        Ok(Caller(node.tokens.caller(authorization)?))
    }
}

/// The caller of a booking write, who spends one of their writes (`limits`): identity first,
/// then the limit, both before the body is read, so a refused write costs no parsing.
pub struct Writer(pub AuthUser);

impl FromRequestParts<Arc<Node>> for Writer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let Caller(user) = Caller::from_request_parts(parts, node).await?;
        node.limits.user_write(user.id)?;
        Ok(Writer(user))
    }
}

/// A caller with the admin role.
pub struct Admin(pub AuthUser);

impl FromRequestParts<Arc<Node>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, node: &Arc<Node>) -> Result<Self, ApiError> {
        let Caller(user) = Caller::from_request_parts(parts, node).await?;
        user.ensure_admin()?;
        Ok(Admin(user))
    }
}

/// The consistency tokens a read presents (`X-Consistency-Token`).
pub struct After(pub ReadAfter);

impl<S: Send + Sync> FromRequestParts<S> for After {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        ReadAfter::from_headers(&parts.headers).map(After)
    }
}

impl IntoParams for After {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_parameter(
            "X-Consistency-Token",
            "Consistency tokens of earlier writes (`<region>:<LSN>`, comma-separated, at most \
             16): the answer is never older than those writes",
            ObjectBuilder::new()
                .schema_type(Type::String)
                // Empty entries are skipped; a shard name is visible ASCII but `:` and `,`.
                .pattern(Some(
                    "^ *([!-+\\--9;-~]+:[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8} *)?\
                     (, *([!-+\\--9;-~]+:[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8} *)?)*$",
                ))
                .examples(["us-east:0/3A1B2C8"]),
        )]
    }
}

/// The request's `Idempotency-Key`, if it sent one.
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        key_from_headers(&parts.headers).map(IdempotencyKey)
    }
}

impl IntoParams for IdempotencyKey {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![header_parameter(
            "Idempotency-Key",
            "A retry key, per user: a repeat of the request with the same key gets the first \
             answer (`Idempotent-Replayed: true`) and does nothing again",
            ObjectBuilder::new()
                .schema_type(Type::String)
                // 1 to 255 visible ASCII characters once the spaces around are trimmed.
                .pattern(Some("^[\\t ]*[!-~]([\\t -~]{0,253}[!-~])?[\\t ]*$"))
                .examples(["order-7d1f3c"]),
        )]
    }
}
