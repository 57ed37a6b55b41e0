//! Sign-up: a new account in the shard its email hashes to (this node's, or `421`), its
//! password hashed, and its first session, in one transaction.

use serde::{Deserialize, Serialize};
use wire::accounts::{email_shard, normalize_email};

use crate::error::{ApiError, ApiResult};
use crate::identity::password::check_new_password;
use crate::identity::sessions::{self, SignedIn};
use crate::identity::store::{self, NewAccount};
use crate::input::text;
use crate::reads::consistency::token_after_write;
use crate::state::Node;

/// A sign-up: the account lives in the shard its email hashes to.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"name": "Ada Lovelace", "email": "ada@example.com", "password": "correct horse battery"}))]
pub struct NewUser {
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F-\\x9F]*[^\\s\\x00-\\x1F\\x7F-\\x9F][^\\x00-\\x1F\\x7F-\\x9F]*$"
    )]
    pub name: String,
    /// Compared without case; plain ASCII.
    #[schema(min_length = 3, max_length = 254, pattern = "^[^@\\s]+@[^@\\s]+$")]
    pub email: String,
    /// 10 characters to 1,024 bytes.
    #[schema(min_length = 10, max_length = 1024)]
    pub password: String,
}

pub async fn create(node: &Node, new: NewUser) -> ApiResult<SignedIn> {
    let name = text("name", &new.name, 1, 200, false)?;
    let email = normalize_email(&new.email)?;
    check_new_password(&new.password)?;
    ensure_email_shard(node, &email)?;
    let password_hash = node.passwords.hash(new.password).await?;
    let id = node.ids.next()?;
    let mut tx = node.pool.begin().await?;
    let account = NewAccount {
        id: id.as_i64(),
        name,
        home_region: &node.config.region,
        email: &email,
        password_hash: &password_hash,
    };
    let user = store::insert_user(&mut tx, &account)
        .await?
        .ok_or(ApiError::EmailTaken)?;
    let mut signed_in = sessions::open(node, &mut tx, user).await?;
    tx.commit().await?;
    let mut conn = node.pool.acquire().await?;
    signed_in.consistency_token = Some(token_after_write(&mut conn, &node.config.region).await?);
    Ok(signed_in)
}

/// An email's account is made only in the shard it hashes to, so that one primary decides
/// whether it is taken; the router sends sign-ups there.
fn ensure_email_shard(node: &Node, email: &str) -> ApiResult<()> {
    let home = email_shard(email, &node.config.region_ids());
    if home == Some(node.region_id.get()) {
        return Ok(());
    }
    let home = home
        .and_then(|id| node.config.region_name(id))
        .unwrap_or("another region");
    Err(ApiError::MisdirectedAccount {
        home: home.to_owned(),
        local: node.config.region.clone(),
    })
}
