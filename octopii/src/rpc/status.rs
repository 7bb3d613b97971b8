//! Call outcomes other than a value: [`Code`] and [`RpcError`].

use std::fmt;

/// Why a call did not produce a value. Numbered as gRPC's codes, so
/// operators read them the way they already know; the number is what
/// travels on the wire (see `docs/PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum Code {
    /// The call was cancelled (its caller went away).
    Cancelled = 1,
    /// An error with no better code.
    Unknown = 2,
    /// The request could not be decoded (bad header, bad arguments).
    InvalidArgument = 3,
    /// The deadline passed before the handler finished.
    DeadlineExceeded = 4,
    /// The caller's verified identity may not make this call (its
    /// certificate's role or name is refused by the service's policy).
    PermissionDenied = 7,
    /// The server is at its concurrency limit, or a frame is too large.
    ResourceExhausted = 8,
    /// No such service or method on the server.
    Unimplemented = 12,
    /// The handler failed (for example it panicked).
    Internal = 13,
    /// The peer could not be reached or the connection broke.
    Unavailable = 14,
    /// The call was refused and the caller's identity was never verified
    /// (under `insecure_accept_any_certificate`), or the answering peer is
    /// not the one the caller expected.
    Unauthenticated = 16,
}

impl Code {
    /// The code for a wire byte; unknown numbers read as [`Code::Unknown`].
    pub fn from_wire(byte: u8) -> Code {
        match byte {
            1 => Code::Cancelled,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }

    /// The byte that carries this code on the wire.
    pub fn to_wire(self) -> u8 {
        self as u8
    }
}

impl Code {
    /// The code's name, as [`Display`](fmt::Display) writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Cancelled => "Cancelled",
            Code::Unknown => "Unknown",
            Code::InvalidArgument => "InvalidArgument",
            Code::DeadlineExceeded => "DeadlineExceeded",
            Code::PermissionDenied => "PermissionDenied",
            Code::ResourceExhausted => "ResourceExhausted",
            Code::Unimplemented => "Unimplemented",
            Code::Internal => "Internal",
            Code::Unavailable => "Unavailable",
            Code::Unauthenticated => "Unauthenticated",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call that did not produce a value: a framework [`Code`] and a message.
///
/// An application error is not an `RpcError`: a method declared to return
/// `Result<T, E>` delivers its `Err(E)` as a value, `Ok(Err(e))`.
///
/// ```
/// use octopii::rpc::{Code, RpcError};
/// let e = RpcError::new(Code::Unimplemented, "no method `nope` in service `Calculator`");
/// assert_eq!(e.code(), Code::Unimplemented);
/// assert_eq!(e.to_string(), "Unimplemented: no method `nope` in service `Calculator`");
/// ```
#[derive(Debug, Clone)]
pub struct RpcError {
    code: Code,
    message: String,
    never_ran: bool,
}

/// Errors are equal if their codes and messages are.
impl PartialEq for RpcError {
    fn eq(&self, other: &Self) -> bool {
        self.code == other.code && self.message == other.message
    }
}

impl Eq for RpcError {}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: Code, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
            never_ran: false,
        }
    }

    /// Whether the call certainly did not run: its request was never
    /// sent, or the server refused it before its handler. Such a call may
    /// be made again, or elsewhere, whatever the method does.
    pub fn never_ran(&self) -> bool {
        self.never_ran
    }

    /// The same error, known not to have run.
    pub(crate) fn not_run(self) -> Self {
        RpcError {
            never_ran: true,
            ..self
        }
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for RpcError {}

impl From<crate::codec::CodecError> for RpcError {
    /// Bytes that do not decode are [`Code::InvalidArgument`]; a value
    /// that does not encode is [`Code::Internal`].
    fn from(e: crate::codec::CodecError) -> Self {
        let code = match &e {
            crate::codec::CodecError::Encode(_) => Code::Internal,
            _ => Code::InvalidArgument,
        };
        RpcError::new(code, e.to_string())
    }
}

impl From<crate::transport::TransportError> for RpcError {
    /// The one place a transport failure becomes a call status: a
    /// handshake that timed out is a deadline; anything else leaves the
    /// peer unavailable.
    fn from(e: crate::transport::TransportError) -> Self {
        use crate::transport::TransportError as E;
        let code = match &e {
            E::HandshakeTimeout { .. } => Code::DeadlineExceeded,
            _ => Code::Unavailable,
        };
        RpcError::new(code, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code survives the wire, as `docs/PROTOCOL.md` numbers it.
    #[test]
    fn codes_round_trip_as_numbered() {
        let codes = [
            (Code::Cancelled, 1),
            (Code::Unknown, 2),
            (Code::InvalidArgument, 3),
            (Code::DeadlineExceeded, 4),
            (Code::PermissionDenied, 7),
            (Code::ResourceExhausted, 8),
            (Code::Unimplemented, 12),
            (Code::Internal, 13),
            (Code::Unavailable, 14),
            (Code::Unauthenticated, 16),
        ];
        for (code, byte) in codes {
            assert_eq!(code.to_wire(), byte);
            assert_eq!(Code::from_wire(byte), code);
        }
        assert_eq!(Code::from_wire(99), Code::Unknown);
    }

    /// Lower layers' errors become statuses in one place, each with the
    /// code that tells the caller what to do.
    #[test]
    fn lower_layer_errors_map_to_codes() {
        use crate::transport::TransportError;
        let timeout = TransportError::HandshakeTimeout {
            addr: "127.0.0.1:9".parse().unwrap(),
            after: std::time::Duration::from_millis(200),
        };
        let status = RpcError::from(timeout);
        assert_eq!(status.code(), Code::DeadlineExceeded);
        assert!(status.message().contains("127.0.0.1:9"), "{status}");
        let lost = TransportError::from(quinn::ConnectionError::TimedOut);
        assert_eq!(RpcError::from(lost).code(), Code::Unavailable);

        let undecodable = crate::codec::decode::<u64>(&[1, 2, 3]).unwrap_err();
        assert_eq!(RpcError::from(undecodable).code(), Code::InvalidArgument);
    }
}
