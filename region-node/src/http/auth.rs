//! Handlers of `/auth/*`: login, refresh, logout.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiResult;
use crate::http::extract::{After, Json};
use crate::identity::sessions::{self, LoginRequest, RefreshRequest, SignedIn};
use crate::state::Node;

pub async fn login(
    State(node): State<Arc<Node>>,
    After(after): After,
    Json(request): Json<LoginRequest>,
) -> ApiResult<axum::Json<SignedIn>> {
    Ok(axum::Json(sessions::login(&node, request, &after).await?))
}

pub async fn refresh(
    State(node): State<Arc<Node>>,
    Json(request): Json<RefreshRequest>,
) -> ApiResult<axum::Json<SignedIn>> {
    Ok(axum::Json(sessions::refresh(&node, request).await?))
}

pub async fn logout(
    State(node): State<Arc<Node>>,
    Json(request): Json<RefreshRequest>,
) -> ApiResult<StatusCode> {
    sessions::logout(&node, request).await?;
    Ok(StatusCode::NO_CONTENT)
}
