//! The one field of a write's JSON body that routing needs (`eventId`, `bookingId`,
//! `homeRegion`), read without building the rest of the body.
//!
//! Parsing a reserve's body into a `serde_json::Map` cost a dozen allocations (every key, the
//! ticket list, its objects and strings) for one id. Here the body is walked once: the named
//! field's value is built as a `Value` (so what routing does with it, and says about it, is
//! unchanged), every other value only checked. The check is the one `Value` makes (numbers in
//! range, string escapes valid, the same nesting limit), and a body that is not an object gets
//! the error a `Map` gets: a body the router refused before it still refuses, with the same
//! message, and nothing it accepted is refused now.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// The value of the body's last top-level field called `name` (a repeated key's last value
/// wins, as in a `Map`); `None` when there is none. Errors are `serde_json`'s, as from parsing
/// the body into a `Map`.
pub fn top_level_field(body: &[u8], name: &str) -> Result<Option<Value>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = FieldOf { name }.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

/// The top-level object, looking for `name`.
struct FieldOf<'n> {
    name: &'n str,
}

impl<'de> DeserializeSeed<'de> for FieldOf<'_> {
    type Value = Option<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for FieldOf<'_> {
    type Value = Option<Value>;

    // What `serde_json::Map` expects, so a body that is not an object gets the same error.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(wanted) = map.next_key_seed(KeyIs(self.name))? {
            if wanted {
                found = Some(map.next_value::<Value>()?);
            } else {
                map.next_value::<Checked>()?;
            }
        }
        Ok(found)
    }
}

/// A key, compared with the wanted name (escapes decoded, as a `Map` key is) and not kept.
struct KeyIs<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        Ok(key == self.0)
    }
}

/// Any JSON value, checked as strictly as a `serde_json::Value` is made (through
/// `deserialize_any`, so numbers and strings are fully parsed) but not kept.
struct Checked;

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Checked, D::Error> {
        deserializer.deserialize_any(Checked)
    }
}

impl<'de> Visitor<'de> for Checked {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Checked, E> {
        Ok(Checked)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        while map.next_key::<Checked>()?.is_some() {
            map.next_value::<Checked>()?;
        }
        Ok(Checked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The field as the router used to find it: the body parsed into a `Map`.
    fn through_map(body: &str, name: &str) -> Result<Option<Value>, String> {
        serde_json::from_str::<serde_json::Map<String, Value>>(body)
            .map(|m| m.get(name).cloned())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn finds_what_a_map_finds_and_refuses_what_a_map_refuses() {
        for body in [
            r#"{"eventId": "123", "tickets": [{"tier": "GA", "quantity": 1}]}"#,
            r#"{"tickets": [], "eventId": 42}"#,
            r#"{"eventId": null}"#,
            r#"{"eventId": "1", "eventId": "2"}"#,
            r#"{"event\u0049d": "7"}"#,
            r#"{"other": {"eventId": "9"}}"#,
            "{}",
            " { \"eventId\" : 1.5 } ",
            "",
            "{",
            "[1]",
            "null",
            "\"eventId\"",
            r#"{"eventId": "1",}"#,
            r#"{"eventId": "1"} x"#,
            r#"{"eventId": "1", "x": 1e999}"#,
            r#"{"eventId": "1", "x": "\ud800"}"#,
            r#"{"eventId": "1", "x": [1, {"y": tru}]}"#,
            r#"{"eventId": "1", "x": "a\qb"}"#,
        ] {
            let got = top_level_field(body.as_bytes(), "eventId").map_err(|e| e.to_string());
            assert_eq!(got, through_map(body, "eventId"), "{body}");
        }
        let deep = format!("{{\"x\": {}1{}}}", "[".repeat(200), "]".repeat(200));
        let got = top_level_field(deep.as_bytes(), "eventId").map_err(|e| e.to_string());
        assert_eq!(got, through_map(&deep, "eventId"));
    }
}
