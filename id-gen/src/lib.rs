//! Snowflake IDs that carry their home region.
//!
//! Every booking, ticket and order gets a 64-bit ID laid out as
//!
//! ```text
//! bit   63   62 ............. 22   21 .. 17   16 .. 12   11 ...... 0
//!      [ 0 | ms since EPOCH (41) | region (5) | machine (5) | sequence (12) ]
//! ```
//!
//! Why this shape:
//! * **Time first**, so IDs sort roughly by creation time and B-tree indexes
//!   stay append-mostly.
//! * **Region and machine inside the ID**, so any node can tell which region
//!   owns a record without a lookup, and generators never need to coordinate:
//!   two generators with different `(region, machine)` can never collide.
//! * **Sign bit always 0**, so an ID fits a PostgreSQL `BIGINT` unchanged and
//!   compares the same way there as in Rust.
//! * Current IDs exceed 2^53, which JavaScript numbers cannot hold exactly, so in
//!   human-readable formats (JSON) they travel as **strings**.
//!
//! ```
//! use id_gen::{IdGenerator, RegionId};
//!
//! let generator = IdGenerator::new(RegionId::new(3)?, 7)?;
//! let id = generator.next_id()?;
//! assert_eq!(id.region().get(), 3);
//! assert_eq!(id.machine(), 7);
//! assert_eq!(id.to_string().parse::<id_gen::Id>()?, id);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![warn(missing_docs)]

mod clock;
mod error;
mod generator;
mod id;
#[cfg(feature = "openapi")]
mod openapi;
mod serde_impl;

use std::time::Duration;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{IdError, ParseIdError};
pub use generator::IdGenerator;
pub use id::{Id, IdParts, RegionId};

/// The custom epoch, 2024-01-01T00:00:00Z in Unix milliseconds.
///
/// Counting from a recent epoch rather than 1970 buys ~54 years of range
/// back: 41 bits of milliseconds last until about 2093.
pub const EPOCH_UNIX_MS: u64 = 1_704_067_200_000;

/// Width of the millisecond timestamp field.
pub const TIMESTAMP_BITS: u32 = 41;
/// Width of the region field (32 regions).
pub const REGION_BITS: u32 = 5;
/// Width of the machine field (32 generators per region).
pub const MACHINE_BITS: u32 = 5;
/// Width of the per-millisecond sequence field (4,096 IDs per ms).
pub const SEQUENCE_BITS: u32 = 12;

/// Largest timestamp field value: milliseconds since [`EPOCH_UNIX_MS`].
pub const MAX_TIMESTAMP_OFFSET_MS: u64 = (1 << TIMESTAMP_BITS) - 1;
/// Last Unix millisecond that an ID can represent.
pub const MAX_TIMESTAMP_UNIX_MS: u64 = EPOCH_UNIX_MS + MAX_TIMESTAMP_OFFSET_MS;
/// Largest region number that fits in [`REGION_BITS`].
pub const MAX_REGION: u8 = (1 << REGION_BITS) - 1;
/// Largest machine number that fits in [`MACHINE_BITS`].
pub const MAX_MACHINE: u8 = (1 << MACHINE_BITS) - 1;
/// Largest sequence number; one generator issues at most `MAX_SEQUENCE + 1`
/// IDs per millisecond.
pub const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;

/// How far the clock may step backwards before [`IdGenerator::new`] gives up
/// and reports [`IdError::ClockMovedBackwards`] instead of waiting.
///
/// Small NTP corrections are routine and worth a short stall; a large jump
/// means something is wrong, and blocking callers for seconds would just move
/// the outage somewhere harder to diagnose.
pub const DEFAULT_MAX_BACKWARD_WAIT: Duration = Duration::from_millis(100);

pub(crate) const MACHINE_SHIFT: u32 = SEQUENCE_BITS;
pub(crate) const REGION_SHIFT: u32 = MACHINE_SHIFT + MACHINE_BITS;
pub(crate) const TIMESTAMP_SHIFT: u32 = REGION_SHIFT + REGION_BITS;
pub(crate) const SEQUENCE_MASK: u64 = MAX_SEQUENCE as u64;

// The layout must use exactly 63 bits, leaving the sign bit clear.
const _: () = assert!(TIMESTAMP_SHIFT + TIMESTAMP_BITS == 63);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_constants() {
        assert_eq!(MAX_REGION, 31);
        assert_eq!(MAX_MACHINE, 31);
        assert_eq!(MAX_SEQUENCE, 4095);
        assert_eq!(TIMESTAMP_SHIFT, 22);
        assert_eq!(REGION_SHIFT, 17);
        assert_eq!(MACHINE_SHIFT, 12);
        // Largest possible ID is exactly i64::MAX.
        let max = IdParts {
            timestamp_ms: MAX_TIMESTAMP_UNIX_MS,
            region: RegionId::new(MAX_REGION).unwrap(),
            machine: MAX_MACHINE,
            sequence: MAX_SEQUENCE,
        };
        assert_eq!(max.encode().unwrap().as_i64(), i64::MAX);
    }
}
