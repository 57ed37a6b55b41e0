//! Handlers of `/auth/*`: login, refresh, logout.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiResult;
use crate::http::answers::{BadRequest, Unauthorized};
use crate::http::extract::{After, Json};
use crate::identity::sessions::{self, LoginRequest, RefreshRequest, SignedIn};
use crate::state::Node;

/// Log in
///
/// Email and password, checked in the caller's own region (its replica of the email's shard:
/// send a fresh sign-up's `X-Consistency-Token` to log in at once in another region); the
/// session opens there. An unknown email and a wrong password get the same `401`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    operation_id = "login",
    tag = "auth",
    params(After),
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Logged in", body = SignedIn,
            links(
                ("refresh" = (operation_id = "refresh",
                    request_body = json!({"refreshToken": "$response.body#/refreshToken"}),
                    description = "New tokens for this session")),
                ("logout" = (operation_id = "logout",
                    request_body = json!({"refreshToken": "$response.body#/refreshToken"}),
                    description = "End this session")),
            )),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
    )
)]
pub async fn login(
    State(node): State<Arc<Node>>,
    After(after): After,
    Json(request): Json<LoginRequest>,
) -> ApiResult<axum::Json<SignedIn>> {
    Ok(axum::Json(sessions::login(&node, request, &after).await?))
}

/// Refresh
///
/// A new access token and a new refresh token for the session; the presented refresh token
/// stops working. A refresh token presented again after its rotation is `401`, and its whole
/// session is revoked (it may have been stolen).
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    operation_id = "refresh",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = SignedIn),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
    )
)]
pub async fn refresh(
    State(node): State<Arc<Node>>,
    Json(request): Json<RefreshRequest>,
) -> ApiResult<axum::Json<SignedIn>> {
    Ok(axum::Json(sessions::refresh(&node, request).await?))
}

/// Log out
///
/// Revokes the session: its refresh token stops working (access tokens already issued live out
/// their few minutes).
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    operation_id = "logout",
    tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Logged out"),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
    )
)]
pub async fn logout(
    State(node): State<Arc<Node>>,
    Json(request): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    sessions::logout(&node, request).await?;
    Ok(StatusCode::NO_CONTENT)
}
