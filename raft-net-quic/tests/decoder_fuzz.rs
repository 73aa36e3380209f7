//! Property tests: the decoder takes any bytes without panicking, and every valid frame survives
//! any cut or corruption as a typed error or a (different) valid frame, never a panic.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use raft_core::{AppendEntries, Entry, Heartbeat, Message, MessageBody};
use raft_net_quic::wire::{
    decode_frame, encode_hello, encode_message, Frame, Hello, WireError, PROTOCOL_VERSION,
};

const MAX: usize = 1 << 20;

fn message(term: u64, commit: u64, payloads: Vec<Vec<u8>>) -> Message {
    let body = if payloads.is_empty() {
        MessageBody::Heartbeat(Heartbeat { commit, round: term })
    } else {
        MessageBody::AppendEntries(AppendEntries {
            prev_log_index: commit,
            prev_log_term: term,
            entries: payloads
                .into_iter()
                .enumerate()
                .map(|(i, p)| Entry::command(term, commit + 1 + i as u64, Bytes::from(p)))
                .collect(),
            leader_commit: commit,
        })
    };
    Message {
        from: 1,
        to: 2,
        term,
        body,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut rest = &bytes[..];
        // Decode frame after frame until an error or the end: each step either consumes bytes,
        // waits for more, or fails with a typed error.
        while let Ok(Some((_, used))) = decode_frame(rest, MAX) {
            prop_assert!(used > 0 && used <= rest.len());
            rest = &rest[used..];
        }
    }

    #[test]
    fn valid_frames_round_trip(
        term in any::<u64>(),
        commit in any::<u64>(),
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
        cluster in any::<u64>(),
    ) {
        let hello = Hello { version: PROTOCOL_VERSION, cluster_id: cluster, from: 1, to: 2 };
        let message = message(term, commit.min(u64::MAX - 8), payloads);
        let mut buf = BytesMut::new();
        encode_hello(&hello, &mut buf);
        encode_message(&message, MAX, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (first, used) = decode_frame(&buf, MAX).map_err(|e| TestCaseError::fail(e.to_string()))?.ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(first, Frame::Hello(hello));
        let (second, used2) = decode_frame(&buf[used..], MAX).map_err(|e| TestCaseError::fail(e.to_string()))?.ok_or_else(|| TestCaseError::fail("incomplete"))?;
        prop_assert_eq!(second, Frame::Message(message));
        prop_assert_eq!(used + used2, buf.len());
    }

    #[test]
    fn cut_or_corrupted_frames_give_typed_errors(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4),
        cut in any::<prop::sample::Index>(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
    ) {
        let mut buf = BytesMut::new();
        encode_message(&message(3, 5, payloads), MAX, &mut buf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let whole = buf.to_vec();
        // A cut frame is incomplete: the decoder waits for the rest.
        let cut = cut.index(whole.len());
        prop_assert!(matches!(decode_frame(&whole[..cut], MAX), Ok(None)));
        let mut corrupted = whole.clone();
        for (at, byte) in flips {
            let at = at.index(corrupted.len());
            corrupted[at] ^= byte;
        }
        match decode_frame(&corrupted, MAX) {
            Ok(_) => {}
            Err(WireError::Oversized { .. } | WireError::Empty | WireError::UnknownKind(_) | WireError::Malformed { .. }) => {}
            Err(other) => prop_assert!(false, "unexpected error kind {other:?}"),
        }
    }
}
