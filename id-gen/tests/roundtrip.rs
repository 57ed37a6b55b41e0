//! Encoding, text and JSON round trips.

use id_gen::{
    Id, IdParts, ParseIdError, RegionId, EPOCH_UNIX_MS, MAX_MACHINE, MAX_REGION, MAX_SEQUENCE,
    MAX_TIMESTAMP_UNIX_MS,
};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

fn valid_parts() -> impl Strategy<Value = IdParts> {
    (
        EPOCH_UNIX_MS..=MAX_TIMESTAMP_UNIX_MS,
        0..=MAX_REGION,
        0..=MAX_MACHINE,
        0..=MAX_SEQUENCE,
    )
        .prop_map(|(timestamp_ms, region, machine, sequence)| IdParts {
            timestamp_ms,
            region: RegionId::new(region).unwrap(),
            machine,
            sequence,
        })
}

fn any_id() -> impl Strategy<Value = Id> {
    (0..=i64::MAX as u64).prop_map(|v| Id::from_u64(v).unwrap())
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Booking {
    id: Id,
    seats: u32,
}

proptest! {
    #[test]
    fn decode_inverts_encode(parts in valid_parts()) {
        let id = parts.encode().unwrap();
        prop_assert_eq!(id.decode(), parts);
        prop_assert!(id.as_i64() >= 0);
        prop_assert_eq!(id.region(), parts.region);
        prop_assert_eq!(id.machine(), parts.machine);
        prop_assert_eq!(id.timestamp_ms(), parts.timestamp_ms);
    }

    #[test]
    fn encode_inverts_decode(id in any_id()) {
        prop_assert_eq!(id.decode().encode().unwrap(), id);
    }

    #[test]
    fn string_round_trip(id in any_id()) {
        let s = id.to_string();
        prop_assert_eq!(s.parse::<Id>().unwrap(), id);
        prop_assert_eq!(s, id.as_u64().to_string());
    }

    #[test]
    fn i64_round_trip(id in any_id()) {
        prop_assert_eq!(Id::try_from(id.as_i64()).unwrap(), id);
    }

    #[test]
    fn json_round_trip_as_string(id in any_id()) {
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(&json, &format!("\"{id}\""));
        prop_assert_eq!(serde_json::from_str::<Id>(&json).unwrap(), id);

        let booking = Booking { id, seats: 2 };
        let json = serde_json::to_string(&booking).unwrap();
        prop_assert_eq!(serde_json::from_str::<Booking>(&json).unwrap(), booking);
    }

    #[test]
    fn top_bit_values_are_rejected(v in (1u64 << 63)..=u64::MAX) {
        prop_assert!(Id::from_u64(v).is_err());
        prop_assert_eq!(v.to_string().parse::<Id>(), Err(ParseIdError::SignBitSet));
    }

    #[test]
    fn parse_never_panics_and_agrees_with_u64(s in "\\PC{0,24}") {
        if let Ok(id) = s.parse::<Id>() {
            prop_assert!(s.bytes().all(|b| b.is_ascii_digit()));
            prop_assert_eq!(Some(id.as_u64()), s.parse::<u64>().ok());
        }
    }
}

#[test]
fn id_above_2_pow_53_serializes_as_string() {
    let parts = IdParts {
        timestamp_ms: EPOCH_UNIX_MS + 3_000_000_000, // ~2024-02-04
        region: RegionId::new(2).unwrap(),
        machine: 3,
        sequence: 4,
    };
    let id = parts.encode().unwrap();
    assert!(id.as_u64() > 1 << 53);
    let value = serde_json::to_value(id).unwrap();
    assert_eq!(value, serde_json::Value::String(id.to_string()));
    let booking = serde_json::to_string(&Booking { id, seats: 1 }).unwrap();
    assert_eq!(booking, format!(r#"{{"id":"{id}","seats":1}}"#));
}

#[test]
fn deserializes_from_integer_and_rejects_other_types() {
    let booking: Booking = serde_json::from_str(r#"{"id":12345,"seats":1}"#).unwrap();
    assert_eq!(booking.id.as_u64(), 12345);
    for bad in [
        r#"{"id":-5,"seats":1}"#,
        r#"{"id":1.0,"seats":1}"#,
        r#"{"id":null,"seats":1}"#,
        r#"{"id":"12a","seats":1}"#,
    ] {
        let err = serde_json::from_str::<Booking>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("ID"), "unclear error for {bad}: {err}");
    }
}

#[test]
fn parts_serde_validates_region() {
    let parts = IdParts {
        timestamp_ms: EPOCH_UNIX_MS,
        region: RegionId::new(31).unwrap(),
        machine: 1,
        sequence: 2,
    };
    let json = serde_json::to_string(&parts).unwrap();
    assert_eq!(serde_json::from_str::<IdParts>(&json).unwrap(), parts);
    let bad = json.replace("\"region\":31", "\"region\":32");
    assert!(serde_json::from_str::<IdParts>(&bad).is_err());
}

#[test]
fn from_str_rejects_malformed_input() {
    let top_bit = (1u64 << 63).to_string();
    let max_u64 = u64::MAX.to_string();
    for bad in [
        "",
        "-1",
        "+1",
        "abc",
        " 1",
        "1 ",
        "1_000",
        "0x10",
        "99999999999999999999",
        top_bit.as_str(),
        max_u64.as_str(),
    ] {
        assert!(bad.parse::<Id>().is_err(), "{bad:?} should be rejected");
    }
    assert_eq!("".parse::<Id>(), Err(ParseIdError::Empty));
    assert_eq!(
        "99999999999999999999".parse::<Id>(),
        Err(ParseIdError::Overflow)
    );
    assert_eq!(top_bit.parse::<Id>(), Err(ParseIdError::SignBitSet));
    assert_eq!(max_u64.parse::<Id>(), Err(ParseIdError::SignBitSet));
    assert!(matches!(
        " 1".parse::<Id>(),
        Err(ParseIdError::InvalidCharacter {
            found: ' ',
            position: 0
        })
    ));
    // The error is a proper std error with a readable message.
    let err: Box<dyn std::error::Error> = Box::new("abc".parse::<Id>().unwrap_err());
    assert!(err.to_string().contains("decimal digits"));
}
