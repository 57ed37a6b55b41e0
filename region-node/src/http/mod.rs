//! The node's HTTP surface: the route table (`route_table!`, making the routers of both
//! listeners and `ROUTES`), one module of thin handlers per resource, the extractors that turn bad input
//! into JSON errors (`extract`), what wraps every request (`middleware`), and the OpenAPI
//! document (`openapi`). Handlers hold no logic: each calls one function of a feature.

use std::sync::Arc;

use axum::Router;

use crate::catalog::events::MAX_LIST;
use crate::error::ApiError;
use crate::state::Node;

mod answers;
mod auth;
mod booking;
mod events;
pub mod extract;
pub mod middleware;
pub mod openapi;
mod ops;
mod queue;
mod queue_place;
mod streams;
mod tickets;
mod users;

/// The route table, written once: it makes the routers below and `ROUTES`, the list of every
/// (method, path) of the API listener, which routers forward and which the OpenAPI document's
/// test holds against the document (so a route without docs fails it). The operations
/// listener's routes are not the API's, and not in the document.
macro_rules! route_table {
    (
        api listener: {$($group:ident at $prefix:literal {
            $($method:ident $path:literal => $handler:path,)*
        })*}
        operations listener: {$($ops_group:ident {
            $($ops_method:ident $ops_path:literal => $ops_handler:path,)*
        })*}
    ) => {
        $(
            pub fn $group() -> Router<Arc<Node>> {
                Router::new()$(.route(concat!($prefix, $path), axum::routing::$method($handler)))*
            }
        )*
        $(
            pub fn $ops_group() -> Router<Arc<Node>> {
                Router::new()$(.route($ops_path, axum::routing::$ops_method($ops_handler)))*
            }
        )*

        /// (method, full path) of every route of the API listener, as registered.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), concat!($prefix, $path)),)*)*];
    };
}

route_table! {
    api listener: {
        // Everything under `/api/v1`.
        api_routes at "/api/v1" {
            post "/users" => users::create,
            get "/users/{id}" => users::get,
            post "/auth/login" => auth::login,
            post "/auth/refresh" => auth::refresh,
            post "/auth/logout" => auth::logout,
            get "/events" => events::list,
            post "/events" => events::create,
            get "/events/{id}" => events::get,
            get "/events/{id}/queue/me" => queue_place::me,
            post "/events/{id}/queue/pass" => queue_place::pass,
            put "/events/{id}/queue" => queue::put,
            get "/events/{id}/queue" => queue::get,
            post "/events/{id}/queue" => queue::join,
            get "/events/{id}/stream" => streams::stream,
            get "/tickets" => tickets::availability,
            post "/tickets/create" => tickets::create,
            get "/tickets/{id}" => tickets::get,
            post "/booking/reserve" => booking::reserve,
            post "/booking/confirm" => booking::confirm,
            post "/booking/cancel" => booking::cancel,
            get "/booking/user/{id}" => booking::for_user,
            get "/booking/{id}" => booking::get,
            get "/openapi.json" => openapi::document,
        }
        // `/healthz` and `/readyz`, at the root of both listeners (load balancers and routers
        // probe them on the API address).
        health_routes at "" {
            get "/healthz" => ops::healthz,
            get "/readyz" => ops::readyz,
        }
    }
    operations listener: {
        // The operations listener's own: never on the API listener.
        ops_only_routes {
            get "/metrics" => ops::metrics,
            get "/cluster" => ops::cluster,
        }
    }
}

/// `?limit=` for lists: 1 to `MAX_LIST`, default 100.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// At most this many, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
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
