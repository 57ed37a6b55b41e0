//! Handlers of `/users`: sign-up and lookup.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;

use crate::booking::idempotency::WriteAnswer;
use crate::error::ApiResult;
use crate::http::answers::{BadRequest, Conflict, Forbidden, Misdirected, NotFound, Unauthorized};
use crate::http::extract::{After, Caller, Json, PathId};
use crate::identity::sessions::SignedIn;
use crate::identity::signup::{self, NewUser};
use crate::identity::users::{self, UserView};
use crate::reads::answer::ReadAnswer;
use crate::state::Node;

/// Sign up
///
/// A new account with its email and password, and its first tokens (the consistency token also
/// in the `X-Consistency-Token` header). The account lives in the shard its email hashes to:
/// routers send the sign-up there from any region, and a node refuses another shard's email
/// with `421`. An email already taken, in any letter case, is `409 email_taken`.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "createUser",
    tag = "users",
    request_body = NewUser,
    responses(
        (status = 201, description = "Signed up", body = SignedIn,
            links(
                ("user" = (operation_id = "getUser", parameters(("id" = "$response.body#/user/id")),
                    description = "The new user's record")),
                ("bookings" = (operation_id = "listUserBookings",
                    parameters(("id" = "$response.body#/user/id")),
                    description = "The new user's bookings")),
                ("refresh" = (operation_id = "refresh",
                    request_body = json!({"refreshToken": "$response.body#/refreshToken"}),
                    description = "New tokens for this session")),
            )),
        (status = 400, response = BadRequest),
        (status = 409, response = Conflict),
        (status = 421, response = Misdirected),
    )
)]
pub async fn create(
    State(node): State<Arc<Node>>,
    Json(new): Json<NewUser>,
) -> ApiResult<WriteAnswer> {
    WriteAnswer::new(
        StatusCode::CREATED,
        signup::create(&node, new).await?,
        false,
    )
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
