//! A ChunkService sender written from `docs/PROTOCOL.md` ("ChunkService")
//! alone, byte by byte and without the library's encoders, that breaks the
//! protocol on purpose: the receiver's checks are tested against bytes on
//! the wire rather than hooks in the library's own sender, and the
//! document is checked against the receiver on the way.

use octopii::transport::PeerConnection;
use quinn::RecvStream;
use sha2::{Digest, Sha256};

/// Where the transfer's bytes go.
#[derive(Debug, Clone, Copy)]
pub enum Destination<'a> {
    /// Into the receiver's memory, under this label.
    Memory(&'a str),
    /// Into this file below the receiver's receive directory.
    File(&'a str),
}

/// How the transfer breaks the protocol.
#[derive(Debug, Clone, Copy)]
pub enum Lie {
    /// Flips the data byte at this offset after hashing the data.
    FlipByte(usize),
    /// Announces the size plus this in the size header; the request
    /// offers the true size, and all of it is sent.
    SizeHeader(i64),
}

/// The receiver's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// The status byte: 0 OK, 1 checksum mismatch, 2 error, 3 not durable.
    pub status: u8,
    /// The text of the reason frame.
    pub reason: String,
}

/// Sends `data` to `destination` on a new stream of `conn`, lying as
/// `lie` says (or not at all), and returns the receiver's verdict. Panics
/// where the receiver's bytes differ from the document.
pub async fn send(
    conn: &PeerConnection,
    destination: Destination<'_>,
    data: &[u8],
    lie: Option<Lie>,
) -> Verdict {
    let size = data.len() as u64;
    let (mut send, mut recv) = conn.open_bi().await.expect("a stream");
    let mut request = frame(&request_header());
    request.extend(frame(&transfer_request(destination, size)));
    send.write_all(&request).await.expect("the request is sent");

    // The accept: a response frame, code 0, then `Accept { offset }`.
    let accept = read_frame(&mut recv).await;
    let mut accepted = vec![0];
    accepted.extend(0u64.to_le_bytes());
    assert_eq!(accept, accepted, "a fresh transfer is accepted at offset 0");

    let announced = match lie {
        Some(Lie::SizeHeader(delta)) => size.checked_add_signed(delta).expect("a size header"),
        _ => size,
    };
    let hash = Sha256::digest(data);
    let mut sent = announced.to_be_bytes().to_vec();
    sent.extend_from_slice(data);
    if let Some(Lie::FlipByte(at)) = lie {
        sent[8 + at] ^= 0xFF;
    }
    sent.extend_from_slice(&hash);
    // A receiver that fails while data still arrives answers at once and
    // stops reading: the write then fails, and the verdict still comes.
    if send.write_all(&sent).await.is_ok() {
        send.finish().expect("the send side finishes");
    }

    let mut status = [0u8];
    recv.read_exact(&mut status).await.expect("a status byte");
    let reason = read_frame(&mut recv).await;
    let rest = recv.read_to_end(0).await;
    assert!(
        rest.as_ref().is_ok_and(Vec::is_empty),
        "the receiver finishes after its reason: {rest:?}"
    );
    Verdict {
        status: status[0],
        reason: String::from_utf8(reason).expect("a UTF-8 reason"),
    }
}

/// The request header of a transfer: service `Chunk`, method `transfer`,
/// no deadline, no metadata, `owns_stream = 1`, no trace, no signature.
fn request_header() -> Vec<u8> {
    let mut header = string("Chunk");
    header.extend(string("transfer"));
    header.push(0); // timeout_micros: None
    header.extend(0u64.to_le_bytes()); // metadata: no pairs
    header.push(1); // owns_stream
    header.push(0); // trace: None
    header.push(0); // signature: None
    header
}

/// `TransferRequest { destination, size, resume: false }`.
fn transfer_request(destination: Destination<'_>, size: u64) -> Vec<u8> {
    let (variant, name) = match destination {
        Destination::Memory(name) => (0u32, name),
        Destination::File(path) => (1u32, path),
    };
    let mut request = variant.to_le_bytes().to_vec();
    request.extend(string(name));
    request.extend(size.to_le_bytes());
    request.push(0); // resume
    request
}

/// A bincode string: `u64` little-endian length, then the UTF-8 bytes.
fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

/// A frame: `u32` big-endian length, then the payload.
fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("a frame under 4 GiB");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(payload);
    out
}

/// Reads one frame's payload.
async fn read_frame(recv: &mut RecvStream) -> Vec<u8> {
    let mut len = [0u8; 4];
    recv.read_exact(&mut len).await.expect("a frame length");
    let mut payload = vec![0u8; u32::from_be_bytes(len) as usize];
    recv.read_exact(&mut payload)
        .await
        .expect("a frame payload");
    payload
}
