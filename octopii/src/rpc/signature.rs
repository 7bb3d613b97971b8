//! Method signatures on the wire: what keeps two versions of a service
//! from garbling each other's calls.
//!
//! bincode is positional: arguments encoded for `put(String, String)` may
//! decode as something else entirely for `put(String, String,
//! Option<u64>)`, or fail with a message about bytes. So each generated
//! client sends its method's fingerprint (FNV-1a, 64 bits, of the
//! signature as written: `put(String,String)->Option<String>`) in its
//! request header, and each generated server compares it with its own
//! before it decodes the arguments. Different ones answer
//! [`Code::Unimplemented`], naming the method and the server's signature.
//! A request without one (a hand-written client, a client in another
//! language) is served as before.

use super::{Code, Context, RpcError};

/// `Err` if the caller sent a fingerprint other than `fingerprint`, the
/// server's own for `service`'s method `signature`.
pub fn check_signature(
    ctx: &Context,
    service: &str,
    signature: &str,
    fingerprint: u64,
) -> Result<(), RpcError> {
    let Some(theirs) = ctx.signature() else {
        return Ok(());
    };
    if theirs == fingerprint {
        return Ok(());
    }
    Err(RpcError::new(
        Code::Unimplemented,
        format!(
            "`{service}.{signature}` here (signature {fingerprint:016x}), and the caller's \
             differs (signature {theirs:016x}): the two sides run different versions of the \
             service; see \"Evolving a service\" in docs/ARCHITECTURE.md"
        ),
    ))
}
