//! Bearer JWTs (HS256): signing, checking, and who the caller is. The user id always comes from
//! the token, never from a request body.

use id_gen::Id;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The user id, as a decimal string like every id in our JSON.
    sub: String,
    role: Role,
    iat: u64,
    exp: u64,
}

/// Signs and checks tokens with the deployment's shared secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl_seconds: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], ttl_seconds: u64) -> TokenKeys {
        // Only HS256 is accepted, so a token cannot pick a weaker algorithm for itself.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl_seconds,
        }
    }

    pub fn issue(&self, user: Id, role: Role) -> Result<String, ApiError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: user.to_string(),
            role,
            iat: now,
            exp: now + self.ttl_seconds,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(e.into()))
    }

    /// The caller of an `Authorization` header value: `Bearer <valid token>`.
    pub fn caller(&self, authorization: Option<&str>) -> Result<AuthUser, ApiError> {
        let authorization = authorization
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer token".into()))?;
        let token = authorization
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("Authorization must be `Bearer <token>`".into())
            })?;
        self.verify(token)
    }

    pub fn verify(&self, token: &str) -> Result<AuthUser, ApiError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| ApiError::Unauthorized(format!("invalid bearer token: {e}")))?;
        let id = data
            .claims
            .sub
            .parse::<Id>()
            .map_err(|_| ApiError::Unauthorized("invalid bearer token: bad subject".into()))?;
        Ok(AuthUser {
            id,
            role: data.claims.role,
        })
    }
}

/// The caller, from a valid bearer token.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Id,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    pub fn ensure_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("this needs the admin role".into()))
        }
    }

    /// The caller may act for `owner`: it is them, or an admin.
    pub fn ensure_can_act_for(&self, owner: Id, what: &str) -> Result<(), ApiError> {
        if self.id == owner || self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this {what} belongs to another user"
            )))
        }
    }
}
