//! Users: sign-up in the caller's region (the id carries it) and lookup.

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::identity::auth::{AuthUser, Role};
use crate::ids::id_from_db;
use crate::input::text;
use crate::reads::answer::ReadAnswer;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

/// A sign-up: the user lives in the region they signed up in.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace"}))]
pub struct NewUser {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
}

#[derive(Debug, sqlx::FromRow)]
struct UserRow {
    id: i64,
    name: String,
    home_region: String,
    created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Id,
    pub name: String,
    pub home_region: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedUpUser {
    pub user: UserView,
    /// A bearer token for `Authorization: Bearer <token>`.
    pub token: String,
}

impl UserView {
    fn from_row(row: UserRow) -> ApiResult<UserView> {
        Ok(UserView {
            id: id_from_db(row.id)?,
            name: row.name,
            home_region: row.home_region,
            created_at: row.created_at,
        })
    }
}

pub async fn create(node: &Node, new: NewUser) -> ApiResult<SignedUpUser> {
    let name = text("name", &new.name, 1, 200, false)?;
    let id = node.ids.next()?;
    let row: UserRow = sqlx::query_as(
        "INSERT INTO users (id, name, home_region) VALUES ($1, $2, $3)
         RETURNING id, name, home_region, created_at",
    )
    .bind(id.as_i64())
    .bind(name)
    .bind(&node.config.region)
    .fetch_one(&node.pool)
    .await?;
    let token = node.tokens.issue(id, Role::User)?;
    Ok(SignedUpUser {
        user: UserView::from_row(row)?,
        token,
    })
}

/// A user's own record (or any, for an admin).
pub async fn get(
    node: &Node,
    caller: AuthUser,
    id: Id,
    after: &ReadAfter,
) -> ApiResult<ReadAnswer> {
    caller.ensure_can_act_for(id, "user record")?;
    let source = node.read_source(node.shard_of(id)?, after).await?;
    let row: UserRow =
        sqlx::query_as("SELECT id, name, home_region, created_at FROM users WHERE id = $1")
            .bind(id.as_i64())
            .fetch_optional(&source.pool)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {id}")))?;
    ReadAnswer::uncached(&UserView::from_row(row)?, &source)
}
