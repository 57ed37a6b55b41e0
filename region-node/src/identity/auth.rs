//! Who the caller is and what they may do. Bearer tokens themselves are `wire::token`'s (the
//! router checks them too, before it reads a body); here, the node's permission checks.

use id_gen::Id;

use crate::error::{ApiError, ApiResult};

pub use wire::token::{AuthUser, Grant, Issued, Role, TokenKeys};

/// What a caller may do, as the node's errors.
pub trait Permissions {
    fn ensure_admin(&self) -> ApiResult<()>;

    /// The caller may act for `owner`: it is them, or an admin.
    fn ensure_can_act_for(&self, owner: Id, what: &str) -> ApiResult<()>;
}

impl Permissions for AuthUser {
    fn ensure_admin(&self) -> ApiResult<()> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role".into()))
        }
    }

    fn ensure_can_act_for(&self, owner: Id, what: &str) -> ApiResult<()> {
        if self.id == owner || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this {what} belongs to another user"
            )))
        }
    }
}
