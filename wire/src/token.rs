//! Bearer access tokens (JWT, HS256 only), signed by nodes and checked by nodes and routers
//! alike, so the router can refuse an unknown caller before it reads a body. Every failure is
//! one of our own short messages: the library's text never reaches a client.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use id_gen::Id;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Shortest secret either service accepts.
pub const MIN_SECRET_BYTES: usize = 16;

/// Clock skew forgiven on `exp`, `nbf` and `iat` when no other is configured.
pub const DEFAULT_LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    /// The role as the `users.role` column holds it.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// What a token says. Ids are decimal strings, like every id in our JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    /// The login session the token came from; operator-minted tokens have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sid: Option<String>,
    iat: u64,
    nbf: u64,
    exp: u64,
}

/// Why a request has no valid caller. The messages are the whole story a client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing Authorization: Bearer token")]
    Missing,
    #[error("Authorization must be `Bearer <token>`")]
    NotBearer,
    #[error("the bearer token has expired")]
    Expired,
    #[error("the bearer token is not valid yet")]
    NotYetValid,
    #[error("invalid bearer token")]
    Invalid,
}

/// The caller, from a valid bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: Id,
    pub role: Role,
    /// The session the token was issued for (`None` for operator-minted tokens).
    pub session: Option<Id>,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// Who a new token is for.
#[derive(Debug, Clone, Copy)]
pub struct Grant {
    pub user: Id,
    pub role: Role,
    pub session: Option<Id>,
}

/// A signed token and when it stops working (seconds since the Unix epoch).
#[derive(Debug, Clone)]
pub struct Issued {
    pub token: String,
    pub expires_at_unix: u64,
}

/// Signs and checks tokens with the deployment's shared secret.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    leeway: u64,
}

impl TokenKeys {
    pub fn new(secret: &[u8], leeway_seconds: u64) -> TokenKeys {
        // Only HS256: a token cannot choose its own algorithm (`none`, or a public-key one
        // whose "public key" would be our secret).
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "nbf", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = leeway_seconds;
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            leeway: leeway_seconds,
        }
    }

    /// A token for `grant`, valid from now for `ttl`.
    pub fn issue(&self, grant: Grant, ttl: Duration) -> anyhow::Result<Issued> {
        let now = unix_now();
        let exp = now.saturating_add(ttl.as_secs());
        let claims = Claims {
            sub: grant.user.to_string(),
            role: grant.role,
            sid: grant.session.map(|s| s.to_string()),
            iat: now,
            nbf: now,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok(Issued {
            token,
            expires_at_unix: exp,
        })
    }

    /// The caller of an `Authorization` header value: `Bearer <valid token>`.
    pub fn caller(&self, authorization: Option<&str>) -> Result<AuthUser, TokenError> {
        let authorization = authorization.ok_or(TokenError::Missing)?;
        let token = authorization
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::NotBearer)?;
        self.verify(token)
    }

    pub fn verify(&self, token: &str) -> Result<AuthUser, TokenError> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                _ => TokenError::Invalid,
            })?
            .claims;
        // jsonwebtoken checks `exp` and `nbf` but not `iat`: a token that claims to be issued
        // in the future was made with a wrong clock or by someone who holds the secret.
        if claims.iat > unix_now().saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        let id = claims.sub.parse::<Id>().map_err(|_| TokenError::Invalid)?;
        let session = claims
            .sid
            .map(|s| s.parse::<Id>())
            .transpose()
            .map_err(|_| TokenError::Invalid)?;
        Ok(AuthUser {
            id,
            role: claims.role,
            session,
        })
    }
}

/// The deployment's secret is long enough to sign with.
pub fn check_secret(field: &str, secret: &str) -> Result<(), crate::ConfigError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(crate::ConfigError::Invalid(format!(
            "{field} must be at least {MIN_SECRET_BYTES} bytes"
        )));
    }
    Ok(())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};

    const SECRET: &[u8] = b"a-secret-for-unit-tests-only";

    fn id(n: u16) -> Id {
        IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 1_000,
            region: RegionId::new(1).unwrap(),
            machine: 2,
            sequence: n,
        }
        .encode()
        .unwrap()
    }

    fn keys() -> TokenKeys {
        TokenKeys::new(SECRET, DEFAULT_LEEWAY_SECONDS)
    }

    /// A token with these claims, signed as `alg` with `secret`.
    fn forged(secret: &[u8], alg: Algorithm, claims: &serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    fn claims(iat: i64, nbf: i64, exp: i64) -> serde_json::Value {
        let now = unix_now() as i64;
        serde_json::json!({"sub": id(1).to_string(), "role": "user",
                           "iat": now + iat, "nbf": now + nbf, "exp": now + exp})
    }

    #[test]
    fn issued_tokens_verify_with_their_session_and_role() {
        let keys = keys();
        let grant = Grant {
            user: id(1),
            role: Role::Admin,
            session: Some(id(2)),
        };
        let issued = keys.issue(grant, Duration::from_secs(900)).unwrap();
        let caller = keys.verify(&issued.token).unwrap();
        assert_eq!(caller.id, id(1));
        assert_eq!(caller.role, Role::Admin);
        assert_eq!(caller.session, Some(id(2)));
        assert!(issued.expires_at_unix >= unix_now() + 899);
        let header = format!("Bearer {}", issued.token);
        assert_eq!(keys.caller(Some(header.as_str())).unwrap(), caller);
        let operator = keys
            .issue(
                Grant {
                    session: None,
                    ..grant
                },
                Duration::from_secs(60),
            )
            .unwrap();
        assert_eq!(keys.verify(&operator.token).unwrap().session, None);
    }

    #[test]
    fn every_bad_token_gets_our_own_message() {
        let keys = keys();
        let good = claims(0, 0, 900);
        assert!(keys
            .verify(&forged(SECRET, Algorithm::HS256, &good))
            .is_ok());
        let cases = [
            (
                forged(b"another-secret-entirely!", Algorithm::HS256, &good),
                TokenError::Invalid,
            ),
            (forged(SECRET, Algorithm::HS384, &good), TokenError::Invalid),
            (
                forged(SECRET, Algorithm::HS256, &claims(-1000, -1000, -100)),
                TokenError::Expired,
            ),
            (
                forged(SECRET, Algorithm::HS256, &claims(0, 120, 900)),
                TokenError::NotYetValid,
            ),
            (
                forged(SECRET, Algorithm::HS256, &claims(120, 0, 900)),
                TokenError::NotYetValid,
            ),
            ("not.a.jwt".to_owned(), TokenError::Invalid),
            (String::new(), TokenError::Invalid),
        ];
        for (token, expected) in cases {
            assert_eq!(keys.verify(&token).unwrap_err(), expected, "{token}");
        }
        // Within the leeway, a little clock skew is forgiven.
        let skewed = forged(SECRET, Algorithm::HS256, &claims(3, 3, 900));
        assert!(keys.verify(&skewed).is_ok());
    }

    #[test]
    fn alg_none_and_missing_claims_are_invalid_not_explained() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        let keys = keys();
        let now = unix_now();
        let unsigned = format!(
            "{}.{}.",
            b64(br#"{"alg":"none","typ":"JWT"}"#),
            b64(format!(
                r#"{{"sub":"{}","role":"admin","iat":{now},"nbf":{now},"exp":{}}}"#,
                id(1),
                now + 900
            )
            .as_bytes())
        );
        let error = keys.verify(&unsigned).unwrap_err();
        assert_eq!(error, TokenError::Invalid);
        assert_eq!(error.to_string(), "invalid bearer token");
        let now = now as i64;
        for missing in ["iat", "nbf", "exp", "sub", "role"] {
            let mut claims = claims(0, 0, 900);
            claims.as_object_mut().unwrap().remove(missing);
            let token = forged(SECRET, Algorithm::HS256, &claims);
            assert_eq!(
                keys.verify(&token).unwrap_err(),
                TokenError::Invalid,
                "{missing}"
            );
        }
        for (field, value) in [
            ("sub", serde_json::json!("not-an-id")),
            ("sid", serde_json::json!("x")),
            ("role", serde_json::json!("root")),
            ("exp", serde_json::json!((now + 900).to_string())),
        ] {
            let mut claims = claims(0, 0, 900);
            claims[field] = value;
            let token = forged(SECRET, Algorithm::HS256, &claims);
            assert_eq!(
                keys.verify(&token).unwrap_err(),
                TokenError::Invalid,
                "{field}"
            );
        }
    }

    #[test]
    fn authorization_headers_other_than_bearer_are_refused() {
        let keys = keys();
        assert_eq!(keys.caller(None).unwrap_err(), TokenError::Missing);
        for header in ["", "Basic abc", "Bearer ", "Bearer    ", "bearer x"] {
            assert_eq!(
                keys.caller(Some(header)).unwrap_err(),
                TokenError::NotBearer,
                "{header:?}"
            );
        }
    }

    #[test]
    fn secrets_must_be_long_enough() {
        assert!(check_secret("auth.jwt_secret", "short").is_err());
        assert!(check_secret("auth.jwt_secret", "sixteen-bytes-ok").is_ok());
    }
}
