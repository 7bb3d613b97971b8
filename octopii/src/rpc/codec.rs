//! How values become bytes: bincode 2, fixed-width little-endian integers.
//!
//! Decoding always runs with a size limit. bincode allocates a byte string
//! or vector as soon as it has read its claimed length, so without a limit a
//! ten-byte frame claiming a terabyte would abort the process. The limit is
//! the input's own length rounded up to the next bucket (a claim can never be
//! satisfied by more bytes than the input holds): a bogus claim costs at most
//! sixteen times the frame, and the frame itself was bounded by
//! `transport.max_frame_size` before it was read.

use bincode::config::{Configuration, Fixint, LittleEndian, NoLimit};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::OctopiiError;

fn config() -> Configuration<LittleEndian, Fixint, NoLimit> {
    bincode::config::standard().with_fixed_int_encoding()
}

/// Encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, OctopiiError> {
    Ok(bincode::serde::encode_to_vec(value, config())?)
}

/// Appends the encoding of `value` to `out`.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), OctopiiError> {
    bincode::serde::encode_into_writer(value, Append(out), config())?;
    Ok(())
}

/// Appends to a `Vec` directly: cheaper than through `std::io::Write`
/// for the many small writes of a value's fields.
struct Append<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for Append<'_> {
    #[inline(always)]
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes a `T` that must fill `bytes` exactly.
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, OctopiiError> {
    macro_rules! with_limit {
        ($($limit:expr),*) => {{
            let len = bytes.len();
            $(if len <= $limit {
                bincode::serde::decode_from_slice(bytes, config().with_limit::<{ $limit }>())
            } else)* {
                bincode::serde::decode_from_slice(bytes, config().with_limit::<{ usize::MAX }>())
            }
        }};
    }
    let (value, used) = with_limit!(1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 28, 1 << 32)?;
    if used != bytes.len() {
        return Err(OctopiiError::Serialization(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_layout() {
        let bytes = encode(&(7u32, "ab".to_string(), Some(1u8))).unwrap();
        assert_eq!(
            bytes,
            [7, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, b'a', b'b', 1, 1]
        );
        let back: (u32, String, Option<u8>) = decode(&bytes).unwrap();
        assert_eq!(back, (7, "ab".into(), Some(1)));
    }

    #[test]
    fn enums_and_results_as_documented() {
        // Variant index: u32 little-endian; then the variant's fields.
        let ok: Result<i64, String> = Ok(-2);
        assert_eq!(
            encode(&ok).unwrap(),
            [0, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
        let err: Result<i64, ()> = Err(());
        assert_eq!(encode(&err).unwrap(), [1, 0, 0, 0]);
        assert_eq!(encode(&(true, 'é')).unwrap(), [1, 0xc3, 0xa9]);
        assert_eq!(encode(&vec![1u16]).unwrap(), [1, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
    }

    #[test]
    fn a_huge_claimed_length_is_refused_without_allocating() {
        let mut bytes = u64::MAX.to_le_bytes().to_vec();
        bytes.extend_from_slice(b"xy");
        assert!(decode::<Vec<u8>>(&bytes).is_err());
        assert!(decode::<String>(&bytes).is_err());
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = decode::<u8>(&[1, 2]).unwrap_err();
        assert!(err.to_string().contains("trailing"), "{err}");
    }
}
