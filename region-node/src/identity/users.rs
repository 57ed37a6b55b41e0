//! Users as the API shows them, and the lookup of one (their own record, or any for an admin).

use chrono::{DateTime, Utc};
use id_gen::Id;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult};
use crate::identity::auth::{AuthUser, Permissions, Role};
use crate::identity::store::{self, UserRow};
use crate::ids::id_from_db;
use crate::reads::answer::ReadAnswer;
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Id,
    pub name: String,
    /// The region whose shard holds the user (the one the email hashes to).
    pub home_region: String,
    /// `null` for users from before accounts.
    pub email: Option<String>,
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

impl UserView {
    pub fn from_row(row: UserRow) -> ApiResult<UserView> {
        Ok(UserView {
            id: id_from_db(row.id)?,
            role: role_from_db(&row.role)?,
            name: row.name,
            home_region: row.home_region,
            email: row.email,
            created_at: row.created_at,
        })
    }
}

/// A role read back from the database; the column's CHECK allows no other.
fn role_from_db(role: &str) -> ApiResult<Role> {
    Role::parse(role).ok_or_else(|| ApiError::Internal(anyhow::anyhow!("bad role {role:?} in db")))
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
    let row = store::user_by_id(&source.pool, id.as_i64())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id}")))?;
    ReadAnswer::uncached(&UserView::from_row(row)?, &source)
}
