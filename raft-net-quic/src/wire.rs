//! The wire format, version [`PROTOCOL_VERSION`]: length-prefixed frames on QUIC streams.
//!
//! ```text
//! frame   := length: u32 big-endian (of the body) | body
//! body    := kind: u8 | payload
//! kind 1  := Hello:   version u16 | cluster id u64 | from u64 | to u64      (all big-endian)
//! kind 2  := Message: a raft-core Message, postcard
//! ```
//!
//! Every stream starts with one Hello; the receiver checks the version, the cluster id, that it
//! is the addressee and that the sender's certificate names the sender. Messages follow. A frame
//! longer than the configured maximum is refused before its body is read.

use bytes::{BufMut, BytesMut};
use raft_core::{ClusterId, Message, NodeId};
use thiserror::Error;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;

const KIND_HELLO: u8 = 1;
const KIND_MESSAGE: u8 = 2;
const HELLO_BODY_BYTES: usize = 1 + 2 + 8 + 8 + 8;
/// The length a hello frame's prefix announces: the most the first frame of a stream may be.
pub const HELLO_FRAME_BYTES: usize = HELLO_BODY_BYTES;
/// The length prefix.
pub const LENGTH_BYTES: usize = 4;

/// What opens every stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u16,
    /// The sender's cluster.
    pub cluster_id: ClusterId,
    /// The sending node.
    pub from: NodeId,
    /// The node the sender means to reach.
    pub to: NodeId,
}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A stream's opening.
    Hello(Hello),
    /// A Raft message.
    Message(Message),
}

/// Input that is not a valid frame, or a valid frame that is not acceptable here.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame ({got} of {expected} bytes)")]
    Truncated {
        /// Bytes of the frame received.
        got: usize,
        /// Bytes the frame needs.
        expected: usize,
    },
    /// A frame longer than allowed.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    Oversized {
        /// The length the prefix announced (or the encoded length, when sending).
        len: usize,
        /// The configured maximum.
        max: usize,
    },
    /// A frame of zero length (it has no kind).
    #[error("empty frame")]
    Empty,
    /// A kind this version does not know.
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    /// A body that does not decode.
    #[error("malformed {kind} frame: {detail}")]
    Malformed {
        /// The frame's kind.
        kind: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The peer speaks another protocol version.
    #[error("peer speaks protocol version {found}; this node speaks {supported}")]
    UnsupportedVersion {
        /// The peer's version.
        found: u16,
        /// Ours.
        supported: u16,
    },
    /// The peer belongs to another cluster.
    #[error("peer belongs to cluster {found}, not {expected}")]
    WrongCluster {
        /// The peer's cluster id.
        found: ClusterId,
        /// Ours.
        expected: ClusterId,
    },
    /// The stream (or a message on it) is not from the node it claims, or not for this node.
    #[error("{0}")]
    WrongNode(String),
    /// A stream did not start with Hello, or sent a second one.
    #[error("protocol violation: {0}")]
    Protocol(&'static str),
}

/// Appends `hello` as a frame.
pub fn encode_hello(hello: &Hello, out: &mut BytesMut) {
    out.reserve(LENGTH_BYTES + HELLO_BODY_BYTES);
    out.put_u32(HELLO_BODY_BYTES as u32);
    out.put_u8(KIND_HELLO);
    out.put_u16(hello.version);
    out.put_u64(hello.cluster_id);
    out.put_u64(hello.from);
    out.put_u64(hello.to);
}

/// Appends `message` as a frame, or refuses it (leaving `out` as it was) when its body would
/// exceed `max_frame_bytes`.
pub fn encode_message(
    message: &Message,
    max_frame_bytes: usize,
    out: &mut BytesMut,
) -> Result<(), WireError> {
    let body = postcard::to_allocvec(message).map_err(|e| WireError::Malformed {
        kind: "message",
        detail: e.to_string(),
    })?;
    let len = 1 + body.len();
    if len > max_frame_bytes {
        return Err(WireError::Oversized {
            len,
            max: max_frame_bytes,
        });
    }
    out.reserve(LENGTH_BYTES + len);
    out.put_u32(len as u32);
    out.put_u8(KIND_MESSAGE);
    out.extend_from_slice(&body);
    Ok(())
}

/// Reads a length prefix, refusing a length above `max_frame_bytes` before anything is
/// allocated for it.
pub fn frame_length(prefix: [u8; LENGTH_BYTES], max_frame_bytes: usize) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len > max_frame_bytes {
        return Err(WireError::Oversized {
            len,
            max: max_frame_bytes,
        });
    }
    if len == 0 {
        return Err(WireError::Empty);
    }
    Ok(len)
}

/// Decodes a frame's body (after the length prefix).
pub fn decode_body(body: &[u8]) -> Result<Frame, WireError> {
    let (&kind, rest) = body.split_first().ok_or(WireError::Empty)?;
    match kind {
        KIND_HELLO => {
            if rest.len() != HELLO_BODY_BYTES - 1 {
                return Err(WireError::Malformed {
                    kind: "hello",
                    detail: format!("{} bytes, expected {}", rest.len(), HELLO_BODY_BYTES - 1),
                });
            }
            let u64_at = |at: usize| {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(&rest[at..at + 8]);
                u64::from_be_bytes(bytes)
            };
            Ok(Frame::Hello(Hello {
                version: u16::from_be_bytes([rest[0], rest[1]]),
                cluster_id: u64_at(2),
                from: u64_at(10),
                to: u64_at(18),
            }))
        }
        KIND_MESSAGE => {
            let (message, unused) =
                postcard::take_from_bytes::<Message>(rest).map_err(|e| WireError::Malformed {
                    kind: "message",
                    detail: e.to_string(),
                })?;
            if !unused.is_empty() {
                return Err(WireError::Malformed {
                    kind: "message",
                    detail: format!("{} bytes after the message", unused.len()),
                });
            }
            Ok(Frame::Message(message))
        }
        other => Err(WireError::UnknownKind(other)),
    }
}

/// Decodes the first frame in `buf`: `Ok(None)` when `buf` does not hold a whole frame yet,
/// otherwise the frame and the bytes it took.
pub fn decode_frame(buf: &[u8], max_frame_bytes: usize) -> Result<Option<(Frame, usize)>, WireError> {
    let Some(prefix) = buf.get(..LENGTH_BYTES) else {
        return Ok(None);
    };
    let mut bytes = [0u8; LENGTH_BYTES];
    bytes.copy_from_slice(prefix);
    let len = frame_length(bytes, max_frame_bytes)?;
    let Some(body) = buf.get(LENGTH_BYTES..LENGTH_BYTES + len) else {
        return Ok(None);
    };
    Ok(Some((decode_body(body)?, LENGTH_BYTES + len)))
}

/// Checks a stream's Hello against this node.
pub fn check_hello(hello: &Hello, cluster_id: ClusterId, me: NodeId) -> Result<(), WireError> {
    if hello.version != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion {
            found: hello.version,
            supported: PROTOCOL_VERSION,
        });
    }
    if hello.cluster_id != cluster_id {
        return Err(WireError::WrongCluster {
            found: hello.cluster_id,
            expected: cluster_id,
        });
    }
    if hello.to != me {
        return Err(WireError::WrongNode(format!(
            "stream is for node {}, this is node {me}",
            hello.to
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use raft_core::{Heartbeat, MessageBody};

    fn heartbeat() -> Message {
        Message {
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Heartbeat(Heartbeat { commit: 4, round: 5 }),
        }
    }

    #[test]
    fn frames_round_trip() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: 9,
            from: 1,
            to: 2,
        };
        let mut buf = BytesMut::new();
        encode_hello(&hello, &mut buf);
        encode_message(&heartbeat(), 1 << 20, &mut buf).expect("encodes");
        let (first, used) = decode_frame(&buf, 1 << 20).expect("valid").expect("whole");
        assert_eq!(first, Frame::Hello(hello));
        let (second, used2) = decode_frame(&buf[used..], 1 << 20)
            .expect("valid")
            .expect("whole");
        assert_eq!(second, Frame::Message(heartbeat()));
        assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn an_oversized_message_is_refused_when_sending_and_leaves_the_buffer_alone() {
        let mut buf = BytesMut::from(&b"xyz"[..]);
        let refused = encode_message(&heartbeat(), 4, &mut buf);
        assert!(matches!(refused, Err(WireError::Oversized { max: 4, .. })));
        assert_eq!(&buf[..], b"xyz");
    }

    #[test]
    fn an_oversized_length_is_refused_before_reading_the_body() {
        let refused = decode_frame(&[0xff, 0xff, 0xff, 0xff], 1 << 20);
        assert!(matches!(refused, Err(WireError::Oversized { .. })));
    }

    #[test]
    fn unknown_kind_and_trailing_bytes_are_typed_errors() {
        assert_eq!(decode_body(&[7, 1, 2]), Err(WireError::UnknownKind(7)));
        let mut buf = BytesMut::new();
        encode_message(&heartbeat(), 1 << 20, &mut buf).expect("encodes");
        let mut body = buf[LENGTH_BYTES..].to_vec();
        body.push(0);
        assert!(matches!(decode_body(&body), Err(WireError::Malformed { .. })));
    }

    #[test]
    fn hello_from_another_cluster_or_version_is_refused() {
        let hello = Hello {
            version: PROTOCOL_VERSION,
            cluster_id: 9,
            from: 1,
            to: 2,
        };
        assert_eq!(check_hello(&hello, 9, 2), Ok(()));
        assert!(matches!(
            check_hello(&hello, 8, 2),
            Err(WireError::WrongCluster {
                found: 9,
                expected: 8
            })
        ));
        assert!(matches!(check_hello(&hello, 9, 3), Err(WireError::WrongNode(_))));
        let old = Hello { version: 0, ..hello };
        assert!(matches!(
            check_hello(&old, 9, 2),
            Err(WireError::UnsupportedVersion { found: 0, .. })
        ));
    }
}
