//! Login sessions: opening one (at sign-up and login), login by email and password in the
//! caller's region, refresh with rotation and reuse detection, and logout. A session lives in
//! the primary of the region that opened it, and its id says which; the router sends refresh
//! and logout there.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use id_gen::Id;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use wire::accounts::{email_shard, normalize_email, RefreshToken};

use crate::error::{ApiError, ApiResult};
use crate::identity::auth::Grant;
use crate::identity::password::MAX_PASSWORD_BYTES;
use crate::identity::store::{self, UserRow};
use crate::identity::users::UserView;
use crate::ids::{ensure_home, id_from_db};
use crate::reads::consistency::ReadAfter;
use crate::state::Node;

/// The one answer to every failed login: which of email or password was wrong is not told.
const WRONG_CREDENTIALS: &str = "wrong email or password";

#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"email": "ada@example.com", "password": "correct horse battery"}))]
pub struct LoginRequest {
    #[schema(max_length = 254)]
    pub email: String,
    #[schema(max_length = 1024)]
    pub password: String,
}

/// `{refreshToken}`, for refresh and logout.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"refreshToken": "386212193965834240.q8m2Xw0bT4c1vY7nJd5eRk9sLp3uHa6zFo0iGy2tQ1w"}))]
pub struct RefreshRequest {
    /// `<session id>.<secret>`, from sign-up, login or the last refresh.
    pub refresh_token: String,
}

/// What sign-up, login and refresh answer: the user, a short access token and a refresh token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    pub user: UserView,
    /// A short-lived bearer token for `Authorization: Bearer <token>`.
    pub token: String,
    pub token_expires_at: DateTime<Utc>,
    /// `<session id>.<secret>`: trade it for new tokens at `/auth/refresh`, once.
    pub refresh_token: String,
    pub refresh_token_expires_at: DateTime<Utc>,
    /// After a sign-up: a read (or a login anywhere) presenting it sees the new account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistency_token: Option<String>,
}

/// Opens a session for `user` on `conn` (this node's primary; the caller commits) and signs
/// its access token.
pub async fn open(node: &Node, conn: &mut PgConnection, user: UserRow) -> ApiResult<SignedIn> {
    let session = node.ids.next()?;
    let secret = new_secret();
    let expires_at = store::insert_session(
        conn,
        session.as_i64(),
        user.id,
        &secret_hash(&secret),
        refresh_ttl_seconds(node),
    )
    .await?;
    signed_in(node, user, session, &secret, expires_at)
}

/// Email and password, checked against the local replica of the email's shard; the session
/// opens on this region's primary.
pub async fn login(node: &Node, request: LoginRequest, after: &ReadAfter) -> ApiResult<SignedIn> {
    let email = normalize_email(&request.email)?;
    if request.password.len() > MAX_PASSWORD_BYTES {
        // Refused whoever asks, so it tells nothing about the account.
        return Err(ApiError::Unauthorized(WRONG_CREDENTIALS.into()));
    }
    let shard = email_shard(&email, &node.config.region_ids())
        .and_then(|id| node.readers.shard_by_region(id))
        // A node configured without a reader of that shard cannot tell.
        .ok_or(ApiError::Unavailable)?;
    let source = node.read_source(shard, after).await?;
    let found = store::login_by_email(&source.pool, &email).await?;
    let (user, hash) = match found {
        Some(row) => (Some(row.user), row.password_hash),
        None => (None, None),
    };
    let matches = node.passwords.verify(request.password, hash).await?;
    let user = user
        .filter(|_| matches)
        .ok_or_else(|| ApiError::Unauthorized(WRONG_CREDENTIALS.into()))?;
    let mut conn = node.pool.acquire().await?;
    open(node, &mut conn, user).await
}

/// A new access token and a new refresh token for a current one; the old refresh token stops
/// working. A refresh token presented after it was rotated revokes its whole session: one of
/// its two holders is not its owner.
pub async fn refresh(node: &Node, request: RefreshRequest) -> ApiResult<SignedIn> {
    let token = RefreshToken::parse(&request.refresh_token)?;
    ensure_session_home(node, token.session)?;
    let id = token.session.as_i64();
    let old = secret_hash(token.secret);
    let Some(user_id) = store::live_session_user(&node.pool, id, &old).await? else {
        return Err(refused(node, id, &old).await?);
    };
    // The role (and name) come from the user's row now, not from the old token.
    let user_id = id_from_db(user_id)?;
    let source = node
        .read_source(node.shard_of(user_id)?, &ReadAfter::default())
        .await?;
    let user = store::user_by_id(&source.pool, user_id.as_i64())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the account of this session is gone".into()))?;
    // Rotated last, so that a failure above leaves the presented token working.
    let secret = new_secret();
    let new = secret_hash(&secret);
    let ttl = refresh_ttl_seconds(node);
    let Some(expires_at) = store::rotate_session(&node.pool, id, &old, &new, ttl).await? else {
        // A concurrent refresh with the same token won: this is the second use of it.
        return Err(refused(node, id, &old).await?);
    };
    signed_in(node, user, token.session, &secret, expires_at)
}

/// Ends the session of a current refresh token (again, if it already ended).
pub async fn logout(node: &Node, request: RefreshRequest) -> ApiResult<()> {
    let token = RefreshToken::parse(&request.refresh_token)?;
    ensure_session_home(node, token.session)?;
    let hash = secret_hash(token.secret);
    if store::revoke_session(&node.pool, token.session.as_i64(), &hash).await? {
        Ok(())
    } else {
        Err(refused(node, token.session.as_i64(), &hash).await?)
    }
}

/// Why a refresh token is refused; a rotated one revokes its session on the way.
async fn refused(node: &Node, session: i64, hash: &[u8]) -> ApiResult<ApiError> {
    if store::revoke_if_reused(&node.pool, session, hash).await? {
        tracing::warn!(
            session,
            "a rotated refresh token was presented again; session revoked"
        );
        return Ok(ApiError::Unauthorized(
            "this refresh token was already used; its session is now revoked".into(),
        ));
    }
    Ok(ApiError::Unauthorized("invalid refresh token".into()))
}

/// Sessions are written only where they live (`421` elsewhere); a session id from no region
/// of ours is just an invalid token.
fn ensure_session_home(node: &Node, session: Id) -> ApiResult<()> {
    match ensure_home(&node.config, session) {
        Err(ApiError::InvalidId(_)) => Err(ApiError::Unauthorized("invalid refresh token".into())),
        other => other,
    }
}

fn signed_in(
    node: &Node,
    user: UserRow,
    session: Id,
    secret: &str,
    refresh_expires_at: DateTime<Utc>,
) -> ApiResult<SignedIn> {
    let user = UserView::from_row(user)?;
    let issued = node
        .tokens
        .issue(
            Grant {
                user: user.id,
                role: user.role,
                session: Some(session),
            },
            node.config.access_token_ttl(),
        )
        .map_err(ApiError::Internal)?;
    let token_expires_at = DateTime::from_timestamp(issued.expires_at_unix as i64, 0)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("token expiry out of range")))?;
    Ok(SignedIn {
        user,
        token: issued.token,
        token_expires_at,
        refresh_token: RefreshToken::format(session, secret),
        refresh_token_expires_at: refresh_expires_at,
        consistency_token: None,
    })
}

fn refresh_ttl_seconds(node: &Node) -> i64 {
    i64::try_from(node.config.auth.refresh_token_ttl_seconds).unwrap_or(i64::MAX)
}

/// 32 bytes from the operating system's CSPRNG, url-safe base64 without padding.
fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored of a refresh secret. SHA-256 is enough: the secret is random, not a password.
fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_fresh_and_fit_the_token_format() {
        let a = new_secret();
        assert_ne!(a, new_secret());
        assert_eq!(a.len(), wire::accounts::REFRESH_SECRET_CHARS);
        let session = Id::try_from(1u64 << 22).unwrap();
        let token = RefreshToken::format(session, &a);
        assert_eq!(RefreshToken::parse(&token).unwrap().secret, a);
    }

    #[test]
    fn secrets_are_stored_as_sha256() {
        assert_eq!(
            secret_hash("abc"),
            [
                0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d, 0xae,
                0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10, 0xff, 0x61,
                0xf2, 0x00, 0x15, 0xad
            ]
        );
    }
}
