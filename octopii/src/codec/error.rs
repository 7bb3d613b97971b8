//! [`CodecError`]: why a value did not become bytes, or bytes a value.
//!
//! The codec is a standalone layer: its error names nothing above it, and
//! the crate's top-level error wraps it. A refused decode says which limit
//! refused it and with what numbers, so a caller can tell a damaged or
//! hostile input from a type mismatch.

use super::MAX_DEPTH;

/// Why [`encode`](super::encode) or [`decode`](super::decode) failed.
///
/// ```
/// use octopii::codec::{self, CodecError};
///
/// // A `u32` is four bytes; two are not enough.
/// match codec::decode::<u32>(&[1, 2]) {
///     Err(CodecError::Decode(source)) => {
///         assert!(matches!(source, bincode::error::DecodeError::UnexpectedEnd { .. }));
///     }
///     other => panic!("two bytes are not a u32: {other:?}"),
/// }
/// // A `u8` is one byte; the second is left over.
/// match codec::decode::<u8>(&[1, 2]) {
///     Err(CodecError::TrailingBytes { len: 2, used: 1 }) => {}
///     other => panic!("one byte is left over: {other:?}"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value could not be encoded (its `Serialize` implementation
    /// failed, or it is of a kind the format cannot hold).
    #[error("encoding failed: {0}")]
    Encode(#[source] bincode::error::EncodeError),

    /// The bytes are not an encoding of the type asked for (cut short, an
    /// invalid tag, a `Deserialize` implementation that refused them, …).
    #[error("decoding failed: {0}")]
    Decode(#[source] bincode::error::DecodeError),

    /// A length inside the input claims more bytes than the decode may
    /// allocate: at most `limit`, the input's length `len` rounded up to
    /// the next size bucket. Nothing that large was allocated.
    #[error("a length in the {len}-byte input claims more than the decode limit of {limit} bytes")]
    SizeLimit {
        /// Length of the input.
        len: usize,
        /// The most the decode could allocate.
        limit: usize,
    },

    /// The value nests more compound values inside one another than
    /// [`MAX_DEPTH`](super::MAX_DEPTH) allows.
    #[error("the value nests deeper than {max_depth} levels")]
    TooDeep {
        /// The nesting limit, [`MAX_DEPTH`](super::MAX_DEPTH).
        max_depth: u32,
    },

    /// The value holds more sequence elements and map entries than its
    /// bytes pay for (one per byte plus
    /// [`SPARE_ELEMENTS`](super::SPARE_ELEMENTS)).
    #[error(
        "the value holds more sequence elements than its bytes allow \
         ({allowed} for a {len}-byte input)"
    )]
    TooManyElements {
        /// Length of the input.
        len: usize,
        /// The elements it allowed.
        allowed: u64,
    },

    /// The value decoded from the first `used` bytes, but the input is
    /// `len` bytes long: the rest is not part of it.
    #[error("{} trailing bytes after the value ({used} of {len} bytes used)", len - used)]
    TrailingBytes {
        /// Length of the input.
        len: usize,
        /// Bytes the value took.
        used: usize,
    },
}

impl CodecError {
    /// A [`TooDeep`](CodecError::TooDeep) error at the codec's limit.
    pub(super) fn too_deep() -> Self {
        CodecError::TooDeep {
            max_depth: MAX_DEPTH,
        }
    }
}
