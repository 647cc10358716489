//! Go's `time.Time` as gob carries it: a `GobEncoder` whose bytes are `time.Time.MarshalBinary`.
//!
//! The form (Go's `time.Time.AppendBinary`): a version byte (1, or 2 when the zone offset has
//! seconds); the seconds since January 1 of year 1 UTC as a big-endian `int64`; the nanoseconds
//! as a big-endian `int32`; the zone offset in minutes as a big-endian `int16`, where -1 means
//! UTC; with version 2, one more byte of offset seconds. Typha's pings carry the server's clock
//! and the client echoes the value in its pong, so the server reads back what it wrote.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::GobError;

/// Seconds from January 1 of year 1 to the Unix epoch (Go's `unixToInternal`).
const UNIX_TO_INTERNAL: i64 = 62_135_596_800;

const VERSION_1: u8 = 1;
const VERSION_2: u8 = 2;

/// A Go `time.Time` as its binary form describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GoTime {
    /// Seconds since the Unix epoch (negative before it).
    pub unix_seconds: i64,
    /// Nanoseconds within the second, `0..1_000_000_000`.
    pub nanos: u32,
    /// The zone the time was written in.
    pub zone: GoZone,
}

/// The zone of a [`GoTime`]: Go writes UTC as its own marker, any other zone as its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoZone {
    /// `time.UTC`.
    Utc,
    /// Any other location, by its offset east of UTC in seconds.
    Offset(i32),
}

impl GoTime {
    /// `t` in UTC, as Typha's pings carry `time.Now()` (the monotonic reading is never sent).
    pub fn from_system_time(t: SystemTime) -> GoTime {
        let (unix_seconds, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (
                i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                d.subsec_nanos(),
            ),
            Err(before) => {
                let d = before.duration();
                let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                if d.subsec_nanos() == 0 {
                    (-secs, 0)
                } else {
                    (-secs - 1, 1_000_000_000 - d.subsec_nanos())
                }
            }
        };
        GoTime {
            unix_seconds,
            nanos,
            zone: GoZone::Utc,
        }
    }

    /// The instant, if `SystemTime` can hold it.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if self.unix_seconds >= 0 {
            UNIX_EPOCH
                .checked_add(Duration::from_secs(self.unix_seconds.unsigned_abs()))?
                .checked_add(nanos)
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(self.unix_seconds.unsigned_abs()))?
                .checked_add(nanos)
        }
    }

    /// Go's zero `time.Time` (January 1 of year 1, UTC), which gob leaves out of a struct.
    pub fn is_zero(&self) -> bool {
        self.unix_seconds == -UNIX_TO_INTERNAL && self.nanos == 0 && self.zone == GoZone::Utc
    }

    /// `MarshalBinary`'s bytes (15, or 16 for an offset with seconds).
    pub fn marshal_binary(&self) -> Result<Vec<u8>, GobError> {
        if self.nanos >= 1_000_000_000 {
            return Err(GobError::BadTime("nanoseconds out of range"));
        }
        let internal = self
            .unix_seconds
            .checked_add(UNIX_TO_INTERNAL)
            .ok_or(GobError::BadTime("seconds out of range"))?;
        let (version, minutes, extra_seconds) = match self.zone {
            GoZone::Utc => (VERSION_1, -1i16, 0i8),
            GoZone::Offset(offset) => {
                let minutes = offset / 60;
                if minutes == -1 {
                    // Go refuses it too: it would read back as UTC.
                    return Err(GobError::BadTime("zone offset collides with UTC's marker"));
                }
                let minutes = i16::try_from(minutes)
                    .map_err(|_| GobError::BadTime("zone offset out of range"))?;
                let seconds = (offset % 60) as i8;
                if seconds == 0 {
                    (VERSION_1, minutes, 0)
                } else {
                    (VERSION_2, minutes, seconds)
                }
            }
        };
        let mut out = Vec::with_capacity(16);
        out.push(version);
        out.extend_from_slice(&internal.to_be_bytes());
        out.extend_from_slice(&(self.nanos as i32).to_be_bytes());
        out.extend_from_slice(&minutes.to_be_bytes());
        if version == VERSION_2 {
            out.push(extra_seconds as u8);
        }
        Ok(out)
    }

    /// Reads `MarshalBinary`'s bytes, with Go's checks plus a range check on the nanoseconds.
    pub fn unmarshal_binary(data: &[u8]) -> Result<GoTime, GobError> {
        let (&version, rest) = data.split_first().ok_or(GobError::BadTime("no data"))?;
        let want = match version {
            VERSION_1 => 14,
            VERSION_2 => 15,
            _ => return Err(GobError::BadTime("unsupported version")),
        };
        if rest.len() != want {
            return Err(GobError::BadTime("invalid length"));
        }
        let mut secs = [0u8; 8];
        secs.copy_from_slice(&rest[0..8]);
        let mut nanos = [0u8; 4];
        nanos.copy_from_slice(&rest[8..12]);
        let nanos = i32::from_be_bytes(nanos);
        let nanos = u32::try_from(nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or(GobError::BadTime("nanoseconds out of range"))?;
        let unix_seconds = i64::from_be_bytes(secs)
            .checked_sub(UNIX_TO_INTERNAL)
            .ok_or(GobError::BadTime("seconds out of range"))?;
        let mut offset = i32::from(i16::from_be_bytes([rest[12], rest[13]])) * 60;
        if version == VERSION_2 {
            // Go adds the seconds byte unsigned, though it writes it signed: a negative offset
            // with seconds does not survive Go's own round trip. Read it as Go does.
            offset += i32::from(rest[14]);
        }
        // As Go: an offset of exactly -1 minute is the UTC marker.
        let zone = if offset == -60 {
            GoZone::Utc
        } else {
            GoZone::Offset(offset)
        };
        Ok(GoTime {
            unix_seconds,
            nanos,
            zone,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_round_trip_and_layout() {
        let t = GoTime {
            unix_seconds: 1_700_000_000,
            nanos: 123_456_789,
            zone: GoZone::Utc,
        };
        let b = t.marshal_binary().unwrap();
        assert_eq!(b.len(), 15);
        assert_eq!(b[0], 1);
        assert_eq!(
            i64::from_be_bytes(b[1..9].try_into().unwrap()),
            1_700_000_000 + UNIX_TO_INTERNAL
        );
        assert_eq!(&b[13..15], &[0xFF, 0xFF]);
        assert_eq!(GoTime::unmarshal_binary(&b).unwrap(), t);
    }

    #[test]
    fn offsets_with_seconds_use_version_2() {
        let t = GoTime {
            unix_seconds: -5,
            nanos: 1,
            zone: GoZone::Offset(3600 + 30),
        };
        let b = t.marshal_binary().unwrap();
        assert_eq!((b[0], b.len()), (2, 16));
        assert_eq!(GoTime::unmarshal_binary(&b).unwrap(), t);
        let half = GoTime {
            zone: GoZone::Offset(-(5 * 3600 + 1800)),
            ..t
        };
        assert_eq!(
            GoTime::unmarshal_binary(&half.marshal_binary().unwrap()).unwrap(),
            half
        );
    }

    #[test]
    fn system_time_both_sides_of_the_epoch() {
        for t in [
            UNIX_EPOCH + Duration::new(1_800_000_000, 5),
            UNIX_EPOCH - Duration::new(10, 250),
            UNIX_EPOCH,
        ] {
            let g = GoTime::from_system_time(t);
            assert!(g.nanos < 1_000_000_000);
            assert_eq!(g.to_system_time(), Some(t));
        }
    }

    #[test]
    fn refuses_what_go_refuses() {
        assert!(GoTime::unmarshal_binary(&[]).is_err());
        assert!(GoTime::unmarshal_binary(&[3; 15]).is_err());
        assert!(GoTime::unmarshal_binary(&[1; 14]).is_err());
        let mut nanos_too_big = vec![1u8; 15];
        nanos_too_big[9..13].copy_from_slice(&1_000_000_000i32.to_be_bytes());
        assert!(GoTime::unmarshal_binary(&nanos_too_big).is_err());
        let bad = GoTime {
            unix_seconds: 0,
            nanos: 0,
            zone: GoZone::Offset(-90),
        };
        assert!(bad.marshal_binary().is_err());
    }
}
