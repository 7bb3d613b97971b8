//! How values become bytes: bincode 2, fixed-width little-endian integers.
//!
//! Decoding always runs with a size limit. bincode allocates a byte string
//! or vector as soon as it has read its claimed length, so without a limit a
//! ten-byte frame claiming a terabyte would abort the process. The limit is
//! the input's own length rounded up to the next bucket (a claim can never be
//! satisfied by more bytes than the input holds): a bogus claim costs at most
//! sixteen times the frame, and the frame itself was bounded by
//! `transport.max_frame_size` before it was read.
//!
//! Decoding is also bounded in nesting and in sequence elements (see
//! [`MAX_DEPTH`] and [`SPARE_ELEMENTS`]), so a small frame can neither
//! overflow the stack nor loop over zero-sized elements it never pays for.

use std::marker::PhantomData;

use bincode::config::{Configuration, Fixint, LittleEndian, NoLimit};
use serde::Serialize;
use serde::de::DeserializeOwned;

mod decode_guard;
mod error;

use decode_guard::{GuardedSeed, Hit, Limits};
pub use decode_guard::{MAX_DEPTH, SPARE_ELEMENTS};
pub use error::CodecError;

fn config() -> Configuration<LittleEndian, Fixint, NoLimit> {
    bincode::config::standard().with_fixed_int_encoding()
}

/// Encodes `value`.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(CodecError::Encode)
}

/// Appends the encoding of `value` to `out`.
#[inline]
pub fn encode_into<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), CodecError> {
    bincode::serde::encode_into_writer(value, Append(out), config()).map_err(CodecError::Encode)
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

/// Decodes a `T` that must fill `bytes` exactly, within the limits of
/// size, nesting and elements described above.
#[inline]
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let len = bytes.len();
    let limits = Limits::for_input(len);
    macro_rules! with_limit {
        ($($limit:expr),*) => {{
            let seed = || GuardedSeed::<T> { limits: &limits, _value: PhantomData };
            $(if len <= $limit {
                (bincode::serde::seed_decode_from_slice(seed(), bytes, config().with_limit::<{ $limit }>()), $limit)
            } else)* {
                (bincode::serde::seed_decode_from_slice(seed(), bytes, config().with_limit::<{ usize::MAX }>()), usize::MAX)
            }
        }};
    }
    let (decoded, limit) = with_limit!(1 << 12, 1 << 16, 1 << 20, 1 << 24, 1 << 28, 1 << 32);
    let (value, used) = decoded.map_err(|e| match (limits.hit(), e) {
        (Some(Hit::Depth), _) => CodecError::too_deep(),
        (Some(Hit::Elements(allowed)), _) => CodecError::TooManyElements { len, allowed },
        (None, bincode::error::DecodeError::LimitExceeded) => CodecError::SizeLimit { len, limit },
        (None, e) => CodecError::Decode(e),
    })?;
    if used != len {
        return Err(CodecError::TrailingBytes { len, used });
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
        // A string is read whole: its claim passes the size limit.
        let err = decode::<String>(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::SizeLimit {
                    len: 10,
                    limit: 4096
                }
            ),
            "{err:?}"
        );
        // A vector is read element by element, its capacity capped by the
        // element count: the input runs out first.
        let err = decode::<Vec<u8>>(&bytes).unwrap_err();
        assert!(
            matches!(
                err,
                CodecError::Decode(bincode::error::DecodeError::UnexpectedEnd { .. })
            ),
            "{err:?}"
        );
    }

    #[test]
    fn a_truncated_value_is_a_decode_error_whose_source_is_bincodes() {
        let bytes = encode(&(7u32, "abc".to_string())).unwrap();
        let err = decode::<(u32, String)>(&bytes[..bytes.len() - 1]).unwrap_err();
        let CodecError::Decode(inner) = &err else {
            panic!("a cut-short value is a decode error: {err:?}");
        };
        assert!(
            matches!(inner, bincode::error::DecodeError::UnexpectedEnd { .. }),
            "{inner:?}"
        );
        let source = std::error::Error::source(&err).expect("the bincode error is the source");
        assert!(source.is::<bincode::error::DecodeError>());
        // The façade keeps it whole.
        let top = crate::OctopiiError::from(err);
        assert!(matches!(
            top,
            crate::OctopiiError::Codec(CodecError::Decode(_))
        ));
    }

    #[test]
    fn an_encode_failure_carries_bincodes_error() {
        /// A value whose `Serialize` always fails.
        struct Refuses;
        impl serde::Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no"))
            }
        }
        let err = encode(&Refuses).unwrap_err();
        assert!(matches!(err, CodecError::Encode(_)), "{err:?}");
        let mut out = vec![9];
        assert!(matches!(
            encode_into(&Refuses, &mut out),
            Err(CodecError::Encode(_))
        ));
    }

    /// A type that contains itself, as a JSON-like value does.
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    enum Tree {
        Leaf,
        Node(Vec<Tree>),
    }

    /// The encoding of a `Tree` nested `depth` levels deep, built by hand:
    /// encoding it would recurse as deeply.
    fn nested_tree(depth: usize) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(depth * 12 + 4);
        for _ in 0..depth {
            bytes.extend_from_slice(&1u32.to_le_bytes()); // Node
            bytes.extend_from_slice(&1u64.to_le_bytes()); // one child
        }
        bytes.extend_from_slice(&0u32.to_le_bytes()); // Leaf
        bytes
    }

    #[test]
    fn a_value_nested_a_million_levels_is_refused_not_a_stack_overflow() {
        // 12 MB: under the default maximum frame of 16 MiB. Decoded on a
        // thread with the 2 MiB stack of a runtime worker.
        let bytes = nested_tree(1_000_000);
        let err = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode::<Tree>(&bytes).unwrap_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(
            matches!(
                err,
                CodecError::TooDeep {
                    max_depth: MAX_DEPTH
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("nests deeper"), "{err}");
    }

    #[test]
    fn nesting_up_to_the_limit_decodes_on_a_runtime_threads_stack() {
        // Each level is an enum and a sequence (two levels of the limit),
        // and the leaf is an enum.
        let depth = (MAX_DEPTH as usize - 1) / 2;
        let bytes = nested_tree(depth);
        let tree = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || decode::<Tree>(&bytes).unwrap())
            .unwrap()
            .join()
            .unwrap();
        let mut levels = 0;
        let mut at = &tree;
        while let Tree::Node(children) = at {
            levels += 1;
            at = &children[0];
        }
        assert_eq!(levels, depth);
        assert!(decode::<Tree>(&nested_tree(depth + 1)).is_err());
    }

    #[test]
    fn zero_sized_elements_are_bounded_by_a_count() {
        let bytes = u64::MAX.to_le_bytes();
        let err = decode::<Vec<()>>(&bytes).unwrap_err();
        assert!(
            matches!(err, CodecError::TooManyElements { len: 8, allowed } if allowed == 8 + SPARE_ELEMENTS),
            "{err:?}"
        );
        assert!(err.to_string().contains("elements"), "{err}");
        // As many as the spare allowance beyond the bytes still decode.
        let n = 8 + SPARE_ELEMENTS;
        let units: Vec<()> = decode(&n.to_le_bytes()).unwrap();
        assert_eq!(units.len() as u64, n);
        assert!(decode::<Vec<()>>(&(n + 1).to_le_bytes()).is_err());
        // Maps too.
        let err = decode::<std::collections::BTreeMap<(), ()>>(&bytes).unwrap_err();
        assert!(matches!(err, CodecError::TooManyElements { .. }), "{err:?}");
    }

    #[test]
    fn elements_paid_for_by_their_bytes_are_never_refused() {
        // One element per byte, nested: all allowed.
        let value: Vec<Vec<u8>> = vec![vec![7; 3]; 40_000];
        let back: Vec<Vec<u8>> = decode(&encode(&value).unwrap()).unwrap();
        assert_eq!(back, value);
        let bytes = vec![1u8; 1 << 20];
        let back: Vec<u8> = decode(&encode(&bytes).unwrap()).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = decode::<u8>(&[1, 2]).unwrap_err();
        assert!(
            matches!(err, CodecError::TrailingBytes { len: 2, used: 1 }),
            "{err:?}"
        );
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
    }
}
