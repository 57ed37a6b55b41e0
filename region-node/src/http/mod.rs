//! The node's HTTP surface: the routes (`routes`), one module of thin handlers per resource,
//! the extractors that turn bad input into JSON errors (`extract`), and what wraps every
//! request (`middleware`). Handlers hold no logic: each calls one function of a feature.

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::catalog::events::MAX_LIST;
use crate::error::ApiError;
use crate::state::Node;

mod auth;
mod booking;
mod events;
pub mod extract;
pub mod middleware;
mod ops;
mod tickets;
mod users;

/// Everything under `/api/v1`.
pub fn api_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/users", post(users::create))
        .route("/users/{id}", get(users::get))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .route("/events", get(events::list).post(events::create))
        .route("/events/{id}", get(events::get))
        .route("/tickets", get(tickets::availability))
        .route("/tickets/create", post(tickets::create))
        .route("/tickets/{id}", get(tickets::get))
        .route("/booking/reserve", post(booking::reserve))
        .route("/booking/confirm", post(booking::confirm))
        .route("/booking/cancel", post(booking::cancel))
        .route("/booking/user/{id}", get(booking::for_user))
        .route("/booking/{id}", get(booking::get))
}

/// `/healthz` and `/readyz`, at the root of both listeners (load balancers and routers probe
/// them on the API address).
pub fn health_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
}

/// The operations listener's own: `/metrics` and `/cluster`, never on the API listener.
pub fn ops_only_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/metrics", get(ops::metrics))
        .route("/cluster", get(ops::cluster))
}

/// `?limit=` for lists: 1 to `MAX_LIST`, default 100.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    pub limit: Option<i64>,
}

impl ListParams {
    pub fn limit(&self) -> Result<i64, ApiError> {
        list_limit(self.limit)
    }
}

/// A list's page size: 1 to `MAX_LIST`, default 100.
pub fn list_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(n) if (1..=MAX_LIST).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::Validation(format!(
            "limit must be 1 to {MAX_LIST}"
        ))),
    }
}
