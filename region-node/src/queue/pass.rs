//! Queue passes: the signed proof (JWT, HS256, the deployment's `auth.jwt_secret`) that a user's
//! place was admitted, issued by any region's node from its replica and checked by the event's
//! home node on reserve without a lookup. Its claim set differs from an access token's (`typ`
//! is `queue_pass`, and it has neither `role` nor `nbf`), so neither can stand for the other.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The `typ` claim of every pass.
pub const PASS_TYPE: &str = "queue_pass";

/// What a pass says: the place (`evt`, `pos`) of user `sub`, usable until `exp` (the end of
/// the place's pass window), in seconds since the Unix epoch. Ids are decimal strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PassClaims {
    pub typ: String,
    pub sub: String,
    pub evt: String,
    pub pos: i64,
    pub iat: i64,
    pub exp: i64,
}

impl PassClaims {
    pub fn new(user_id: i64, event_id: i64, position: i64, iat: i64, exp: i64) -> PassClaims {
        PassClaims {
            typ: PASS_TYPE.to_owned(),
            sub: user_id.to_string(),
            evt: event_id.to_string(),
            pos: position,
            iat,
            exp,
        }
    }
}

/// Why a reserve of a queued event (or a request for a pass) was refused: all `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PassError {
    #[error("this event is queued: reserving needs a queue pass (queuePass)")]
    Required,
    #[error("the queue pass is not valid")]
    Invalid,
    #[error("the queue pass is for another event")]
    WrongEvent,
    #[error("the queue pass belongs to another user")]
    WrongUser,
    #[error("the queue pass has expired: its window to reserve is over")]
    Expired,
    #[error("the queue pass was already used for an order")]
    Used,
}

impl PassError {
    pub fn code(self) -> &'static str {
        match self {
            PassError::Required => "queue_pass_required",
            PassError::Invalid => "queue_pass_invalid",
            PassError::WrongEvent => "queue_pass_wrong_event",
            PassError::WrongUser => "queue_pass_wrong_user",
            PassError::Expired => "queue_pass_expired",
            PassError::Used => "queue_pass_used",
        }
    }
}

/// Signs and checks passes with the deployment's shared secret.
pub struct PassKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl PassKeys {
    pub fn new(secret: &[u8]) -> PassKeys {
        // HS256 only, as for access tokens: a pass cannot pick its own algorithm.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        // `exp` is checked by `verify` itself, with no leeway: the window is what the serving
        // loop counts on, and an expired pass must say so rather than look invalid.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        PassKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn sign(&self, claims: &PassClaims) -> anyhow::Result<String> {
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            claims,
            &self.encoding,
        )?)
    }

    /// The position a pass admits `user_id` to reserve `event_id` with, at `now` (seconds since
    /// the Unix epoch). The signature and the claim set first (anything else is `Invalid`, never
    /// explained), then event, user and expiry.
    pub fn verify(
        &self,
        pass: &str,
        event_id: i64,
        user_id: i64,
        now: i64,
    ) -> Result<i64, PassError> {
        let claims = jsonwebtoken::decode::<PassClaims>(pass, &self.decoding, &self.validation)
            .map_err(|_| PassError::Invalid)?
            .claims;
        if claims.typ != PASS_TYPE || claims.pos < 1 {
            return Err(PassError::Invalid);
        }
        if claims.evt != event_id.to_string() {
            return Err(PassError::WrongEvent);
        }
        if claims.sub != user_id.to_string() {
            return Err(PassError::WrongUser);
        }
        if now >= claims.exp {
            return Err(PassError::Expired);
        }
        Ok(claims.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;

    const SECRET: &[u8] = b"a-secret-for-unit-tests-only";
    const NOW: i64 = 1_800_000_000;
    const EVENT: i64 = 386_164_735_021_809_669;
    const USER: i64 = 386_164_735_021_809_670;

    fn keys() -> PassKeys {
        PassKeys::new(SECRET)
    }

    fn pass(claims: &PassClaims) -> String {
        keys().sign(claims).unwrap()
    }

    fn good() -> PassClaims {
        PassClaims::new(USER, EVENT, 7, NOW - 10, NOW + 50)
    }

    #[test]
    fn a_good_pass_gives_its_position() {
        assert_eq!(keys().verify(&pass(&good()), EVENT, USER, NOW), Ok(7));
    }

    #[test]
    fn another_events_or_users_pass_is_refused_as_such() {
        let keys = keys();
        let token = pass(&good());
        assert_eq!(
            keys.verify(&token, EVENT + 1, USER, NOW),
            Err(PassError::WrongEvent)
        );
        assert_eq!(
            keys.verify(&token, EVENT, USER + 1, NOW),
            Err(PassError::WrongUser)
        );
    }

    #[test]
    fn a_pass_expires_at_the_end_of_its_window() {
        let keys = keys();
        let token = pass(&good());
        assert_eq!(keys.verify(&token, EVENT, USER, NOW + 49), Ok(7));
        assert_eq!(
            keys.verify(&token, EVENT, USER, NOW + 50),
            Err(PassError::Expired)
        );
    }

    #[test]
    fn a_forged_pass_is_invalid() {
        let other = PassKeys::new(b"another-secret-entirely!")
            .sign(&good())
            .unwrap();
        assert_eq!(
            keys().verify(&other, EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
        // Also when its forger made it expired: the signature is checked first.
        let forged_expired = PassKeys::new(b"another-secret-entirely!")
            .sign(&PassClaims::new(USER, EVENT, 7, 0, 1))
            .unwrap();
        assert_eq!(
            keys().verify(&forged_expired, EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
    }

    #[test]
    fn a_tampered_pass_is_invalid() {
        let token = pass(&good());
        let parts: Vec<&str> = token.split('.').collect();
        let mut claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        claims["pos"] = 1.into();
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
        assert_eq!(
            keys().verify(&tampered, EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
    }

    #[test]
    fn wrong_types_algorithms_and_garbage_are_invalid() {
        let keys = keys();
        let wrong_typ = PassClaims {
            typ: "access".into(),
            ..good()
        };
        assert_eq!(
            keys.verify(&pass(&wrong_typ), EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
        let hs384 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS384),
            &good(),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            keys.verify(&hs384, EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
        // An access token, same secret: no `typ`, `evt` or `pos`.
        let access = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"sub": USER.to_string(), "role": "user",
                                "iat": NOW, "nbf": NOW, "exp": NOW + 900}),
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert_eq!(
            keys.verify(&access, EVENT, USER, NOW),
            Err(PassError::Invalid)
        );
        for garbage in ["", "not.a.jwt", "a.b", "...."] {
            assert_eq!(
                keys.verify(garbage, EVENT, USER, NOW),
                Err(PassError::Invalid),
                "{garbage:?}"
            );
        }
    }

    #[test]
    fn a_pass_is_not_an_access_token() {
        let access_keys = wire::token::TokenKeys::new(SECRET, 5);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let token = pass(&PassClaims::new(USER, EVENT, 7, now, now + 60));
        assert_eq!(
            access_keys.verify(&token).unwrap_err(),
            wire::token::TokenError::Invalid
        );
    }
}
