//! Serde support for [`Id`].
//!
//! In human-readable formats (JSON) an ID is a decimal string, because IDs
//! exceed 2^53 and JavaScript clients would silently round a JSON number.
//! Integers are accepted on input as a convenience for hand-written requests
//! and tools. Binary formats get a plain `u64`.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Id;

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(self)
        } else {
            serializer.serialize_u64(self.as_u64())
        }
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            // `deserialize_any` so both "123" and 123 reach the visitor.
            deserializer.deserialize_any(IdVisitor)
        } else {
            deserializer.deserialize_u64(IdVisitor)
        }
    }
}

struct IdVisitor;

impl Visitor<'_> for IdVisitor {
    type Value = Id;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an ID as a string of decimal digits (or a non-negative integer)")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
        // The input itself is not echoed: it is client-controlled and may be huge.
        v.parse()
            .map_err(|e| E::custom(format_args!("invalid ID string: {e}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Id, E> {
        Id::from_u64(v).map_err(|e| E::custom(format_args!("invalid ID: {e}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Id, E> {
        Id::try_from(v).map_err(|e| E::custom(format_args!("invalid ID: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_a_string() {
        let id = Id::from_u64(9_007_199_254_740_993).unwrap(); // 2^53 + 1
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"9007199254740993\"");
        assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);
    }

    #[test]
    fn json_accepts_integers() {
        assert_eq!(serde_json::from_str::<Id>("42").unwrap().as_u64(), 42);
        assert_eq!(
            serde_json::from_str::<Id>("9223372036854775807")
                .unwrap()
                .as_i64(),
            i64::MAX
        );
    }

    #[test]
    fn json_errors_are_clear() {
        let err = |s: &str| serde_json::from_str::<Id>(s).unwrap_err().to_string();
        assert!(err("-1").contains("negative"), "{}", err("-1"));
        assert!(err("9223372036854775808").contains("top bit"));
        assert!(err("\"-1\"").contains("invalid ID string"));
        assert!(err("\"\"").contains("empty"));
        assert!(err("1.5").contains("expected an ID as a string of decimal digits"));
        assert!(err("true").contains("expected an ID"));
        assert!(err("null").contains("expected an ID"));
        assert!(err("[1]").contains("expected an ID"));
    }
}
