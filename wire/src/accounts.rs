//! What router and node must agree on about accounts: an email's normal form, the shard that
//! owns it (so one primary is the authority on its uniqueness), and the shape of a refresh
//! token, whose session id names the region that holds the session.

use id_gen::Id;

/// Longest email accepted (RFC 5321's path limit less the angle brackets).
pub const MAX_EMAIL_BYTES: usize = 254;

/// Characters of a refresh token's secret: 32 bytes, url-safe base64 without padding.
pub const REFRESH_SECRET_CHARS: usize = 43;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    #[error("email must be an address like name@example.com: ASCII, at most 254 characters")]
    BadEmail,
    #[error("invalid refresh token")]
    BadRefreshToken,
}

/// An email as stored and compared: trimmed and lowercased. Only plain ASCII addresses are
/// accepted, so that lowercasing means the same thing in Rust and in PostgreSQL.
pub fn normalize_email(raw: &str) -> Result<String, AccountError> {
    let email = raw.trim().to_ascii_lowercase();
    if email.len() > MAX_EMAIL_BYTES {
        return Err(AccountError::BadEmail);
    }
    let (local, domain) = email.split_once('@').ok_or(AccountError::BadEmail)?;
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b))
        && dotted_parts_non_empty(local);
    let domain_ok = domain.contains('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && dotted_parts_non_empty(domain)
        && domain
            .split('.')
            .all(|label| label.len() <= 63 && !label.starts_with('-') && !label.ends_with('-'));
    if local_ok && domain_ok {
        Ok(email)
    } else {
        Err(AccountError::BadEmail)
    }
}

/// No empty part between dots, nor a dot at either end.
fn dotted_parts_non_empty(text: &str) -> bool {
    text.split('.').all(|part| !part.is_empty())
}

/// The region id of the shard that owns a normalised email: a stable hash of it over the
/// deployment's region ids (sorted, so the order they are configured in does not matter).
/// Adding or removing a region moves emails between shards; accounts do not move with them.
pub fn email_shard(email: &str, region_ids: &[u8]) -> Option<u8> {
    let mut ids = region_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return None;
    }
    let slot = fnv1a(email.as_bytes()) % ids.len() as u64;
    Some(ids[slot as usize])
}

/// 64-bit FNV-1a: small, stable across versions and platforms, and spreads similar strings.
/// Not a defence against anyone: it only places accounts.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An email `local@domain`, or `local.N@domain` for the smallest `N` that makes it, owned by
/// the shard of `region`: for demo data and tests that want a user in a given region.
pub fn email_homed_in(local: &str, domain: &str, region: u8, region_ids: &[u8]) -> Option<String> {
    (0..10_000u32)
        .map(|n| match n {
            0 => format!("{local}@{domain}"),
            n => format!("{local}.{n}@{domain}"),
        })
        .find(|email| email_shard(email, region_ids) == Some(region))
}

/// A refresh token as presented: `<session id>.<secret>`.
#[derive(Debug, PartialEq, Eq)]
pub struct RefreshToken<'a> {
    /// The session; its region bits name the region whose primary holds it.
    pub session: Id,
    pub secret: &'a str,
}

impl<'a> RefreshToken<'a> {
    pub fn parse(token: &'a str) -> Result<RefreshToken<'a>, AccountError> {
        let (session, secret) = token.split_once('.').ok_or(AccountError::BadRefreshToken)?;
        let session = session
            .parse::<Id>()
            .ok()
            .filter(|id| id.as_u64() > 0)
            .ok_or(AccountError::BadRefreshToken)?;
        let secret_ok = secret.len() == REFRESH_SECRET_CHARS
            && secret
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !secret_ok {
            return Err(AccountError::BadRefreshToken);
        }
        Ok(RefreshToken { session, secret })
    }

    /// The token a client is given.
    pub fn format(session: Id, secret: &str) -> String {
        format!("{session}.{secret}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use id_gen::{IdParts, RegionId, EPOCH_UNIX_MS};

    #[test]
    fn emails_are_trimmed_lowercased_and_checked() {
        assert_eq!(
            normalize_email("  Ann.Lee+tickets@Example.COM ").unwrap(),
            "ann.lee+tickets@example.com"
        );
        assert_eq!(normalize_email("a@b.co").unwrap(), "a@b.co");
        let long_local = format!("{}@example.com", "a".repeat(65));
        let too_long = format!("{}@{}.com", "a".repeat(64), "b".repeat(190));
        for bad in [
            "",
            "   ",
            "plain",
            "@example.com",
            "ann@",
            "ann@localhost",
            "ann@@example.com",
            "ann@exa mple.com",
            "an n@example.com",
            "ann@example..com",
            "ann@.example.com",
            "ann@example.com.",
            ".ann@example.com",
            "ann.@example.com",
            "a..b@example.com",
            "ann@-example.com",
            "ann@example_x.com",
            "\"ann\"@example.com",
            "anné@example.com",
            "ann@exämple.com",
            "ann\0@example.com",
            long_local.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(normalize_email(bad), Err(AccountError::BadEmail), "{bad:?}");
        }
    }

    #[test]
    fn an_email_has_one_shard_whatever_the_configured_order() {
        let ids = [1, 2, 3];
        // Pinned: a change here moves every account to another shard.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let shard = email_shard("ann@example.com", &ids).unwrap();
        assert_eq!(email_shard("ann@example.com", &[3, 1, 2]), Some(shard));
        assert_eq!(email_shard("ann@example.com", &[2, 3, 1, 2]), Some(shard));
        assert_eq!(email_shard("ann@example.com", &[]), None);
        assert_eq!(email_shard("ann@example.com", &[7]), Some(7));
        // Many emails spread over every shard.
        let mut counts = [0usize; 4];
        for n in 0..3_000 {
            let email = format!("user{n}@example.com");
            counts[usize::from(email_shard(&email, &ids).unwrap())] += 1;
        }
        assert!(counts[1..].iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn emails_can_be_chosen_for_a_shard() {
        let ids = [1, 2, 3];
        for region in ids {
            let email = email_homed_in("demo1", "us-east.example", region, &ids).unwrap();
            assert_eq!(email_shard(&email, &ids), Some(region), "{email}");
            assert_eq!(normalize_email(&email).unwrap(), email);
        }
        assert_eq!(email_homed_in("x", "example.com", 9, &ids), None);
    }

    #[test]
    fn refresh_tokens_name_their_session() {
        let session = IdParts {
            timestamp_ms: EPOCH_UNIX_MS + 5_000,
            region: RegionId::new(2).unwrap(),
            machine: 1,
            sequence: 9,
        }
        .encode()
        .unwrap();
        let secret = "A".repeat(REFRESH_SECRET_CHARS);
        let token = RefreshToken::format(session, &secret);
        let parsed = RefreshToken::parse(&token).unwrap();
        assert_eq!(parsed.session, session);
        assert_eq!(parsed.session.region().get(), 2);
        assert_eq!(parsed.secret, secret);
        let short = format!("{session}.{}", "A".repeat(42));
        let odd = format!("{session}.{}+", "A".repeat(42));
        let zero = format!("0.{secret}");
        for bad in [
            "",
            ".",
            "abc",
            secret.as_str(),
            short.as_str(),
            odd.as_str(),
            zero.as_str(),
            "12.x.y",
        ] {
            assert_eq!(
                RefreshToken::parse(bad),
                Err(AccountError::BadRefreshToken),
                "{bad:?}"
            );
        }
    }
}
