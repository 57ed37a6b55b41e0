//! The ID itself: its bit layout, decoding into (time, region, machine, sequence), and its
//! decimal-string form in JSON.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{
    IdError, ParseIdError, EPOCH_UNIX_MS, MACHINE_SHIFT, MAX_MACHINE, MAX_REGION, MAX_SEQUENCE,
    MAX_TIMESTAMP_OFFSET_MS, REGION_SHIFT, SEQUENCE_MASK, TIMESTAMP_SHIFT,
};

/// A Snowflake ID.
///
/// Invariant: the top (sign) bit is always clear, so every `Id` converts
/// losslessly to a non-negative `i64` for PostgreSQL `BIGINT` columns. All
/// other 63-bit patterns are valid, since every field value decodes to
/// something in range.
///
/// Ordering is numeric, which is (millisecond-)chronological across
/// generators and strictly chronological within one generator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Id(u64);

impl Id {
    /// Wraps a raw value, rejecting values with the sign bit set.
    pub const fn from_u64(value: u64) -> Result<Id, IdError> {
        if value > i64::MAX as u64 {
            Err(IdError::SignBitSet { value })
        } else {
            Ok(Id(value))
        }
    }

    /// Callers guarantee the sign bit is clear.
    pub(crate) const fn from_u64_unchecked(value: u64) -> Id {
        debug_assert!(value <= i64::MAX as u64);
        Id(value)
    }

    /// The raw 64-bit value.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The value as a PostgreSQL `BIGINT`; never negative.
    pub const fn as_i64(self) -> i64 {
        // Lossless: the sign bit is clear by construction.
        self.0 as i64
    }

    /// The region that minted this ID (and, by convention, owns the record).
    pub const fn region(self) -> RegionId {
        RegionId(((self.0 >> REGION_SHIFT) & MAX_REGION as u64) as u8)
    }

    /// The machine (generator) within the region that minted this ID.
    pub const fn machine(self) -> u8 {
        ((self.0 >> MACHINE_SHIFT) & MAX_MACHINE as u64) as u8
    }

    /// Position of this ID within its millisecond on its generator.
    pub const fn sequence(self) -> u16 {
        (self.0 & SEQUENCE_MASK) as u16
    }

    /// Creation time in Unix milliseconds (not relative to the custom epoch).
    pub const fn timestamp_ms(self) -> u64 {
        EPOCH_UNIX_MS + (self.0 >> TIMESTAMP_SHIFT)
    }

    /// Splits the ID into its fields; [`IdParts::encode`] is the inverse.
    pub const fn decode(self) -> IdParts {
        IdParts {
            timestamp_ms: self.timestamp_ms(),
            region: self.region(),
            machine: self.machine(),
            sequence: self.sequence(),
        }
    }
}

impl fmt::Display for Id {
    /// Plain decimal, the same form [`FromStr`] accepts and JSON carries.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Id {
    type Err = ParseIdError;

    /// Parses ASCII decimal digits only; see [`ParseIdError`] for why it is
    /// stricter than `u64::from_str` (which accepts a leading `+`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(ParseIdError::Empty);
        }
        // Report a bad character before overflow: it is the more useful
        // diagnosis for input like "123abc…".
        if let Some((position, found)) = s.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(ParseIdError::InvalidCharacter { found, position });
        }
        let value = s.bytes().try_fold(0u64, |acc, b| {
            acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        });
        let value = value.ok_or(ParseIdError::Overflow)?;
        Id::from_u64(value).map_err(|_| ParseIdError::SignBitSet)
    }
}

impl From<Id> for u64 {
    fn from(id: Id) -> u64 {
        id.as_u64()
    }
}

impl From<Id> for i64 {
    fn from(id: Id) -> i64 {
        id.as_i64()
    }
}

impl TryFrom<u64> for Id {
    type Error = IdError;

    fn try_from(value: u64) -> Result<Self, Self::Error> {
        Id::from_u64(value)
    }
}

impl TryFrom<i64> for Id {
    type Error = IdError;

    /// For reading `BIGINT` columns back; negatives can't come from us.
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        u64::try_from(value)
            .map(Id)
            .map_err(|_| IdError::NegativeId { value })
    }
}

/// A region number, guaranteed to fit the 5-bit region field.
///
/// Values `0..=MAX_REGION` are representable, but deployments number regions
/// from 1: region 0 is left unused so that a zeroed or defaulted value is
/// easy to spot as a configuration mistake rather than a real region.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct RegionId(u8);

impl RegionId {
    /// Validates that `region` fits in the region field.
    pub const fn new(region: u8) -> Result<RegionId, IdError> {
        if region > MAX_REGION {
            Err(IdError::InvalidRegion { region })
        } else {
            Ok(RegionId(region))
        }
    }

    /// The region number.
    pub const fn get(self) -> u8 {
        self.0
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl TryFrom<u8> for RegionId {
    type Error = IdError;

    fn try_from(region: u8) -> Result<Self, Self::Error> {
        RegionId::new(region)
    }
}

impl From<RegionId> for u8 {
    fn from(region: RegionId) -> u8 {
        region.get()
    }
}

/// The decoded fields of an [`Id`].
///
/// Fields are public for convenience (tests, tooling, building range-query
/// bounds), so they are only validated when turned back into an ID by
/// [`IdParts::encode`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct IdParts {
    /// Creation time, Unix milliseconds (not relative to the custom epoch).
    pub timestamp_ms: u64,
    /// Minting region.
    pub region: RegionId,
    /// Minting machine within the region, `0..=MAX_MACHINE`.
    pub machine: u8,
    /// Sequence within the millisecond, `0..=MAX_SEQUENCE`.
    pub sequence: u16,
}

impl IdParts {
    /// Packs the fields into an ID, checking each fits its bit range.
    pub const fn encode(&self) -> Result<Id, IdError> {
        if self.machine > MAX_MACHINE {
            return Err(IdError::InvalidMachine {
                machine: self.machine,
            });
        }
        if self.sequence > MAX_SEQUENCE {
            return Err(IdError::InvalidSequence {
                sequence: self.sequence,
            });
        }
        let offset = match unix_ms_to_offset(self.timestamp_ms) {
            Ok(offset) => offset,
            Err(e) => return Err(e),
        };
        Ok(Id(compose(
            offset,
            node_bits(self.region, self.machine),
            self.sequence as u64,
        )))
    }
}

/// Converts Unix ms to the 41-bit field value.
pub(crate) const fn unix_ms_to_offset(timestamp_ms: u64) -> Result<u64, IdError> {
    if timestamp_ms < EPOCH_UNIX_MS || timestamp_ms - EPOCH_UNIX_MS > MAX_TIMESTAMP_OFFSET_MS {
        Err(IdError::TimestampOutOfRange { timestamp_ms })
    } else {
        Ok(timestamp_ms - EPOCH_UNIX_MS)
    }
}

/// The region and machine fields, already shifted into place.
pub(crate) const fn node_bits(region: RegionId, machine: u8) -> u64 {
    ((region.0 as u64) << REGION_SHIFT) | ((machine as u64) << MACHINE_SHIFT)
}

/// Assembles a raw ID; callers guarantee each field is in range.
pub(crate) const fn compose(offset_ms: u64, node_bits: u64, sequence: u64) -> u64 {
    (offset_ms << TIMESTAMP_SHIFT) | node_bits | sequence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(timestamp_ms: u64, region: u8, machine: u8, sequence: u16) -> IdParts {
        IdParts {
            timestamp_ms,
            region: RegionId::new(region).unwrap(),
            machine,
            sequence,
        }
    }

    #[test]
    fn encode_known_layout() {
        let id = parts(EPOCH_UNIX_MS + 1, 2, 3, 4).encode().unwrap();
        assert_eq!(id.as_u64(), (1 << 22) | (2 << 17) | (3 << 12) | 4);
        assert_eq!(id.decode(), parts(EPOCH_UNIX_MS + 1, 2, 3, 4));
        assert_eq!(id.region().get(), 2);
        assert_eq!(id.machine(), 3);
        assert_eq!(id.sequence(), 4);
        assert_eq!(id.timestamp_ms(), EPOCH_UNIX_MS + 1);
    }

    #[test]
    fn encode_rejects_out_of_range_fields() {
        assert_eq!(
            parts(EPOCH_UNIX_MS, 1, 32, 0).encode(),
            Err(IdError::InvalidMachine { machine: 32 })
        );
        assert_eq!(
            parts(EPOCH_UNIX_MS, 1, 0, 4096).encode(),
            Err(IdError::InvalidSequence { sequence: 4096 })
        );
        assert_eq!(
            parts(EPOCH_UNIX_MS - 1, 1, 0, 0).encode(),
            Err(IdError::TimestampOutOfRange {
                timestamp_ms: EPOCH_UNIX_MS - 1
            })
        );
        let too_late = crate::MAX_TIMESTAMP_UNIX_MS + 1;
        assert_eq!(
            parts(too_late, 1, 0, 0).encode(),
            Err(IdError::TimestampOutOfRange {
                timestamp_ms: too_late
            })
        );
        assert_eq!(
            parts(u64::MAX, 1, 0, 0).encode(),
            Err(IdError::TimestampOutOfRange {
                timestamp_ms: u64::MAX
            })
        );
    }

    #[test]
    fn region_bounds() {
        assert_eq!(RegionId::new(0).unwrap().get(), 0);
        assert_eq!(RegionId::new(31).unwrap().get(), 31);
        assert_eq!(
            RegionId::new(32),
            Err(IdError::InvalidRegion { region: 32 })
        );
        assert_eq!(RegionId::new(7).unwrap().to_string(), "7");
    }

    #[test]
    fn sign_bit_is_rejected() {
        assert_eq!(
            Id::from_u64(1 << 63),
            Err(IdError::SignBitSet { value: 1 << 63 })
        );
        assert_eq!(Id::from_u64(i64::MAX as u64).unwrap().as_i64(), i64::MAX);
        assert_eq!(Id::try_from(-1i64), Err(IdError::NegativeId { value: -1 }));
        assert_eq!(
            Id::try_from(i64::MIN).unwrap_err(),
            IdError::NegativeId { value: i64::MIN }
        );
        assert_eq!(Id::try_from(42i64).unwrap().as_u64(), 42);
    }

    #[test]
    fn parse_errors() {
        assert_eq!("".parse::<Id>(), Err(ParseIdError::Empty));
        assert_eq!(
            "-1".parse::<Id>(),
            Err(ParseIdError::InvalidCharacter {
                found: '-',
                position: 0
            })
        );
        assert_eq!(
            "+1".parse::<Id>(),
            Err(ParseIdError::InvalidCharacter {
                found: '+',
                position: 0
            })
        );
        assert_eq!(
            "12é".parse::<Id>(),
            Err(ParseIdError::InvalidCharacter {
                found: 'é',
                position: 2
            })
        );
        assert_eq!(
            "18446744073709551616".parse::<Id>(),
            Err(ParseIdError::Overflow)
        );
        assert_eq!(
            "9223372036854775808".parse::<Id>(),
            Err(ParseIdError::SignBitSet)
        );
        assert_eq!(
            "9223372036854775807".parse::<Id>().unwrap().as_i64(),
            i64::MAX
        );
        assert_eq!("0".parse::<Id>().unwrap().as_u64(), 0);
    }

    #[test]
    fn display_is_plain_decimal() {
        let id = Id::from_u64(1234567890123456789).unwrap();
        assert_eq!(id.to_string(), "1234567890123456789");
        assert_eq!(format!("{id:>22}"), "   1234567890123456789");
    }
}
