//! Everything that can go wrong building, converting or generating an ID.

use thiserror::Error;

use crate::{EPOCH_UNIX_MS, MAX_MACHINE, MAX_REGION, MAX_SEQUENCE, MAX_TIMESTAMP_UNIX_MS};

/// Everything that can go wrong building, converting or generating an ID.
///
/// Marked `#[non_exhaustive]` so new failure modes don't break callers'
/// `match`es.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IdError {
    /// Region number does not fit in the 5-bit region field.
    #[error("region {region} is out of range (valid: 0..={max})", max = MAX_REGION)]
    InvalidRegion {
        /// The rejected value.
        region: u8,
    },
    /// Machine number does not fit in the 5-bit machine field.
    #[error("machine {machine} is out of range (valid: 0..={max})", max = MAX_MACHINE)]
    InvalidMachine {
        /// The rejected value.
        machine: u8,
    },
    /// Sequence number does not fit in the 12-bit sequence field.
    #[error("sequence {sequence} is out of range (valid: 0..={max})", max = MAX_SEQUENCE)]
    InvalidSequence {
        /// The rejected value.
        sequence: u16,
    },
    /// The clock is further behind the last issued ID than the generator is
    /// allowed to wait out; issuing now could repeat an ID.
    #[error(
        "clock moved backwards by {by_ms} ms, more than this generator may wait; \
         refusing to issue an ID that could repeat an earlier one"
    )]
    ClockMovedBackwards {
        /// How far behind the last issued ID the clock currently reads.
        by_ms: u64,
    },
    /// Timestamp is before the custom epoch or past the 41-bit range.
    #[error(
        "timestamp {timestamp_ms} (Unix ms) is outside the representable range \
         {min}..={max}",
        min = EPOCH_UNIX_MS,
        max = MAX_TIMESTAMP_UNIX_MS
    )]
    TimestampOutOfRange {
        /// The rejected timestamp, Unix milliseconds.
        timestamp_ms: u64,
    },
    /// A negative number cannot be an ID (the sign bit is always 0).
    #[error("{value} is negative, but IDs are never negative")]
    NegativeId {
        /// The rejected value.
        value: i64,
    },
    /// A `u64` with the top bit set cannot be an ID: it would turn negative
    /// as a PostgreSQL `BIGINT`.
    #[error("{value} has the top bit set, but IDs fit in 63 bits (max {max})", max = i64::MAX)]
    SignBitSet {
        /// The rejected value.
        value: u64,
    },
}

/// Why a string is not a valid decimal ID.
///
/// Parsing is deliberately strict (ASCII digits only: no sign, whitespace or
/// `_`) because IDs arrive in URLs and JSON from untrusted clients, and
/// quietly trimming or accepting `+` hides client bugs. Leading zeros are
/// accepted, as they are by `u64::from_str`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// The input was empty.
    #[error("empty string is not an ID")]
    Empty,
    /// The input contained something other than the digits `0`-`9`.
    #[error("invalid character {found:?} at byte {position}: an ID is decimal digits only")]
    InvalidCharacter {
        /// The first offending character.
        found: char,
        /// Its byte offset in the input.
        position: usize,
    },
    /// The number does not fit in 64 bits.
    #[error("number is too large to be an ID (does not fit in 64 bits)")]
    Overflow,
    /// The number fits in a `u64` but has the sign bit set.
    #[error("number is too large to be an ID (max {max})", max = i64::MAX)]
    SignBitSet,
}
