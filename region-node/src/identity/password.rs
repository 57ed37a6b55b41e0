//! Passwords: argon2id PHC strings, made and checked on the blocking pool (argon2 is slow on
//! purpose and must not stall the async workers), and a check against a dummy hash for logins
//! of unknown emails, so that how long a login takes does not tell whether an account exists.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::rngs::OsRng;
use rand::RngCore;

use crate::config::PasswordConfig;
use crate::error::{ApiError, ApiResult};

/// Fewest characters a new password may have.
pub const MIN_PASSWORD_CHARS: usize = 10;
/// Most bytes a password may have: enough for any passphrase, and a bound on hashing work.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Hashes and checks passwords with the configured cost.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    argon2: Argon2<'static>,
    /// A hash of a random password with today's cost, made on first need.
    dummy: OnceLock<String>,
}

impl Passwords {
    pub fn new(config: &PasswordConfig) -> anyhow::Result<Passwords> {
        let params = Params::new(
            config.memory_kib,
            config.iterations,
            config.parallelism,
            None,
        )
        .map_err(|e| anyhow::anyhow!("auth.password: {e}"))?;
        Ok(Passwords {
            inner: Arc::new(Inner {
                argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
                dummy: OnceLock::new(),
            }),
        })
    }

    /// The PHC string of a new password, with a fresh random salt.
    pub async fn hash(&self, password: String) -> ApiResult<String> {
        let inner = self.inner.clone();
        blocking(move || inner.hash(&password)).await?
    }

    /// Whether `password` matches `hash`. Without a hash (no such account, or one from before
    /// accounts) the password is checked against the dummy and the answer is no.
    pub async fn verify(&self, password: String, hash: Option<String>) -> ApiResult<bool> {
        let inner = self.inner.clone();
        blocking(move || match hash {
            Some(hash) => Ok(inner.matches(&password, &hash)),
            None => {
                let dummy = match inner.dummy.get() {
                    Some(dummy) => dummy,
                    None => {
                        let made = inner.hash(&random_password())?;
                        inner.dummy.get_or_init(|| made)
                    }
                };
                inner.matches(&password, dummy);
                Ok(false)
            }
        })
        .await?
    }
}

impl Inner {
    fn hash(&self, password: &str) -> ApiResult<String> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("password salt: {e}")))?;
        self.argon2
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("hashing a password: {e}")))
    }

    /// A stored hash that does not parse matches nothing.
    fn matches(&self, password: &str, hash: &str) -> bool {
        PasswordHash::new(hash).is_ok_and(|parsed| {
            self.argon2
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    }
}

/// A password nobody knows, for the dummy hash.
fn random_password() -> String {
    let mut bytes = [0u8; 24];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing task: {e}")))
}

/// A new password's length rules: at least `MIN_PASSWORD_CHARS` characters, at most
/// `MAX_PASSWORD_BYTES` bytes.
pub fn check_new_password(password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ApiError::Validation(format!(
            "password must have at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(ApiError::Validation(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(&PasswordConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn hashes_are_argon2id_salted_and_verify() {
        let passwords = cheap();
        let a = passwords.hash("correct horse".into()).await.unwrap();
        let b = passwords.hash("correct horse".into()).await.unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "each hash has its own salt");
        assert!(passwords
            .verify("correct horse".into(), Some(a.clone()))
            .await
            .unwrap());
        assert!(!passwords
            .verify("correct horsf".into(), Some(a))
            .await
            .unwrap());
        assert!(!passwords
            .verify("anything".into(), Some("not a phc string".into()))
            .await
            .unwrap());
        // No hash: the dummy is checked, and the answer is no.
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
        assert!(!passwords.verify("anything".into(), None).await.unwrap());
    }

    #[test]
    fn bad_costs_are_refused() {
        assert!(Passwords::new(&PasswordConfig {
            memory_kib: 4,
            iterations: 1,
            parallelism: 1,
        })
        .is_err());
    }

    #[test]
    fn new_passwords_have_bounded_length() {
        assert!(check_new_password("123456789").is_err());
        assert!(check_new_password("1234567890").is_ok());
        // Characters, not bytes, count towards the minimum.
        assert!(check_new_password("ééééééééé").is_err());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES)).is_ok());
        assert!(check_new_password(&"x".repeat(MAX_PASSWORD_BYTES + 1)).is_err());
    }
}
