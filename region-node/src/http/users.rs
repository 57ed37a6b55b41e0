//! Handlers of `/users`: sign-up and lookup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::error::ApiResult;
use crate::http::extract::{After, Caller, Json, PathId};
use crate::http::openapi::{BadRequest, Forbidden, NotFound, Unauthorized};
use crate::identity::users::{self, NewUser, SignedUpUser, UserView};
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Sign up
///
/// The user lives in the region of the router that took the sign-up; the answer holds a bearer
/// token for them.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "createUser",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Signed up", body = SignedUpUser,
            links(
                ("user" = (operation_id = "getUser", parameters(("id" = "$response.body#/user/id")),
                    description = "The new user's record")),
                ("bookings" = (operation_id = "listUserBookings",
                    parameters(("id" = "$response.body#/user/id")),
                    description = "The new user's bookings")),
            )),
        (status = 400, response = BadRequest),
    )
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    Json(new): Json<NewUser>,
) -> ApiResult<(StatusCode, axum::Json<SignedUpUser>)> {
    Ok((
        StatusCode::CREATED,
        axum::Json(users::create(&node, new).await?),
    ))
}

/// A user's record
///
/// The caller's own, or anyone's for an admin.
#[utoipa::path(
    get,
    path = "/api/v1/users/{id}",
    operation_id = "getUser",
    tag = "users",
    params(PathId, After),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(node): State<Arc<Node>>,
    Caller(caller): Caller,
    After(after): After,
    PathId(id): PathId,
) -> ApiResult<ReadAnswer> {
    users::get(&node, caller, id, &after).await
}
