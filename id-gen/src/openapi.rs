//! The OpenAPI schema of an [`Id`] (feature `openapi`): a string of decimal digits, as ids travel
//! in JSON, so that every API that carries ids describes them once, the same way.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;

use crate::Id;

impl utoipa::PartialSchema for Id {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            // At most 19 digits: the sign bit is always 0, so no id exceeds 2^63 - 1.
            .pattern(Some("^[0-9]{1,19}$"))
            .description(Some(
                "A Snowflake id in decimal (a string, since ids exceed 2^53); its region bits \
                 name the region that owns the record. A JSON integer is accepted on input too.",
            ))
            .examples(["386164735021809669"])
            .into()
    }
}

impl utoipa::ToSchema for Id {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Id")
    }
}

#[cfg(test)]
mod tests {
    use utoipa::PartialSchema;

    use crate::Id;

    #[test]
    fn the_schema_example_is_an_id() {
        let schema = serde_json::to_value(Id::schema()).unwrap();
        let example = schema["examples"][0].as_str().unwrap();
        assert!(example.parse::<Id>().is_ok(), "{example}");
        assert_eq!(schema["type"], "string");
    }
}
