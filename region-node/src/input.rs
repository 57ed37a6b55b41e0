//! Checks of user input that every request body or path shares: ids and text fields. Each
//! failure names the field, so the `400` says what to fix.

use id_gen::Id;

use crate::error::ApiError;

/// Parses an ID from a path or query string, naming the field in the error.
pub fn parse_id(field: &str, raw: &str) -> Result<Id, ApiError> {
    raw.parse::<Id>()
        .ok()
        .filter(|id| id.as_u64() > 0)
        .ok_or_else(|| {
            ApiError::InvalidId(format!(
                "{field} must be a positive 64-bit id in decimal, got {:?}",
                truncate(raw, 40)
            ))
        })
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// A trimmed text field of `min..=max` characters. NUL is refused (PostgreSQL cannot store it),
/// and so is every other control character in one-line fields such as names.
pub fn text<'a>(
    field: &str,
    value: &'a str,
    min: usize,
    max: usize,
    multi_line: bool,
) -> Result<&'a str, ApiError> {
    let value = value.trim();
    let length = value.chars().count();
    if length < min || length > max {
        return Err(ApiError::Validation(if min == 0 {
            format!("{field} must be at most {max} characters")
        } else {
            format!("{field} must be {min} to {max} characters")
        }));
    }
    let allowed = |c: char| !c.is_control() || (multi_line && matches!(c, '\n' | '\r' | '\t'));
    if !value.chars().all(allowed) {
        return Err(ApiError::Validation(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(value)
}
