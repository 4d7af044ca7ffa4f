//! Tendril framers in a real `tokio_util::codec::Framed` over an in-memory duplex pipe.

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tendril_codec::{CodecError, FramerCodec};
use tendril_core::{
    BoxFramer, Chunk, Cobs, FrameError, Framer, Identity, LengthPrefixed, Line, Netstring,
};
use tokio::io::{duplex, AsyncWriteExt, DuplexStream};
use tokio_util::codec::{Framed, FramedRead, FramedWrite};

/// The frames a `Framed` yields until its stream ends (`Ok`s and `Err`s alike).
async fn collect<F>(
    framed: &mut FramedRead<DuplexStream, FramerCodec<F>>,
) -> Vec<Result<Bytes, String>>
where
    F: Framer<Frame = Bytes>,
{
    let mut got = Vec::new();
    while let Some(item) = framed.next().await {
        got.push(item.map_err(|e| e.to_string()));
    }
    got
}

/// A peer that writes `wire` and hangs up.
async fn peer_writes(wire: &[u8]) -> DuplexStream {
    let (mut writer, reader) = duplex(64 * 1024);
    writer.write_all(wire).await.unwrap();
    drop(writer);
    reader
}

#[tokio::test]
async fn netstrings_go_both_ways_through_framed() {
    let (a, b) = duplex(256); // smaller than the big frame: it crosses in several reads
    let mut left = Framed::new(a, FramerCodec::new(Netstring::new()));
    let mut right = Framed::new(b, FramerCodec::new(Netstring::new()));
    let big = Bytes::from(vec![b'x'; 10_000]);
    let frames = [
        Bytes::from("hello"),
        Bytes::new(),
        big.clone(),
        Bytes::from("bye"),
    ];
    let sending = async {
        for frame in frames.clone() {
            left.send(frame).await.unwrap();
        }
        left.send(Bytes::from("ack?")).await.unwrap();
        assert_eq!(left.next().await.unwrap().unwrap(), "ack");
        left
    };
    let receiving = async {
        for frame in &frames {
            assert_eq!(&right.next().await.unwrap().unwrap(), frame);
        }
        assert_eq!(right.next().await.unwrap().unwrap(), "ack?");
        right.send(Bytes::from("ack")).await.unwrap();
        right
    };
    let (left, mut right) = tokio::join!(sending, receiving);
    drop(left);
    assert!(
        right.next().await.is_none(),
        "a clean EOF between frames ends the stream"
    );
}

#[tokio::test]
async fn separate_framers_serve_framed_read_and_framed_write() {
    let (a, b) = duplex(1024);
    // Only the send framer of a `FramedWrite` and the receive framer of a `FramedRead` are used.
    let mut writer = FramedWrite::new(
        a,
        FramerCodec::with_framers(Identity::new(), LengthPrefixed::varint()),
    );
    let mut reader = FramedRead::new(b, FramerCodec::new(LengthPrefixed::varint()));
    writer.send(Bytes::from(vec![7u8; 300])).await.unwrap();
    writer.send(Bytes::from("short")).await.unwrap();
    drop(writer);
    let got = collect(&mut reader).await;
    assert_eq!(
        got,
        [Ok(Bytes::from(vec![7u8; 300])), Ok(Bytes::from("short"))]
    );
}

#[tokio::test]
async fn a_skipped_oversized_line_does_not_end_the_stream() {
    let mut wire = b"ok\r\n".to_vec();
    wire.extend_from_slice(&[b'x'; 100]);
    wire.extend_from_slice(b"\r\nafter\r\nlast");
    let line = Line::crlf().max_length(10).discard_oversized(true);
    let mut framed = FramedRead::new(peer_writes(&wire).await, FramerCodec::new(line));
    let got = collect(&mut framed).await;
    assert_eq!(
        got,
        [Ok("ok".into()), Ok("after".into()), Ok("last".into())]
    );
    assert_eq!(framed.decoder().skipped(), 1);
    let skip = framed.decoder_mut().take_skipped().unwrap();
    assert!(matches!(
        skip,
        FrameError::TooLong {
            max: 10,
            resynced: true,
            ..
        }
    ));
}

#[tokio::test]
async fn a_reported_skip_pauses_framed_until_the_next_read() {
    // What `report_skipped(true)` does under `Framed`: the error, then `None`; frames already
    // buffered behind the skip come out only when polled again after the socket is readable
    // again (here: the peer's EOF).
    let line = Line::lf().max_length(3).discard_oversized(true);
    let codec = FramerCodec::new(line).report_skipped(true);
    let mut framed = FramedRead::new(peer_writes(b"ok\ntoo long\nend\n").await, codec);
    assert_eq!(framed.next().await.unwrap().unwrap(), "ok");
    let err = framed.next().await.unwrap().unwrap_err();
    assert!(err.is_recoverable());
    assert!(framed.next().await.is_none());
    assert_eq!(framed.next().await.unwrap().unwrap(), "end");
    assert!(framed.next().await.is_none());
}

#[tokio::test]
async fn framers_switch_between_frames_and_keep_what_framed_buffered() {
    let reader = peer_writes(b"BDAT 5\r\n12345QUIT\r\n").await;
    let codec: FramerCodec<BoxFramer<Bytes>> =
        FramerCodec::with_framers(Line::crlf().boxed(), Line::crlf().boxed());
    let mut framed = FramedRead::new(reader, codec);
    // One read brought everything; the switch still applies to the very next byte.
    assert_eq!(framed.next().await.unwrap().unwrap(), "BDAT 5");
    let line = framed.decoder_mut().set_recv_framer(Chunk::new(5).boxed());
    assert_eq!(framed.next().await.unwrap().unwrap(), "12345");
    framed.decoder_mut().set_recv_framer(line);
    assert_eq!(framed.next().await.unwrap().unwrap(), "QUIT");
    assert!(framed.next().await.is_none());
}

#[tokio::test]
async fn map_codec_also_keeps_the_buffered_bytes() {
    let (mut writer, reader) = duplex(1024);
    writer.write_all(b"NETSTRING\r\n5:hello,").await.unwrap();
    let mut framed = Framed::new(reader, FramerCodec::new(Line::crlf()));
    assert_eq!(framed.next().await.unwrap().unwrap(), "NETSTRING");
    let mut framed = framed.map_codec(|_| FramerCodec::new(Netstring::new()));
    assert_eq!(framed.next().await.unwrap().unwrap(), "hello");
}

#[tokio::test]
async fn at_eof_the_framers_rule_applies_not_bytes_remaining_on_stream() {
    // An unterminated last line is a frame…
    let mut lines = FramedRead::new(peer_writes(b"a\nb").await, FramerCodec::new(Line::lf()));
    assert_eq!(collect(&mut lines).await, [Ok("a".into()), Ok("b".into())]);

    // …a COBS frame cut short is `Truncated`…
    let mut cobs = FramedRead::new(
        peer_writes(&[0x02, 0x11, 0x00, 0x03, 0x22]).await,
        FramerCodec::new(Cobs::new()),
    );
    assert_eq!(cobs.next().await.unwrap().unwrap(), [0x11][..]);
    match cobs.next().await {
        Some(Err(CodecError::Frame(FrameError::Truncated { buffered: 2, .. }))) => {}
        other => panic!("expected a truncated COBS frame, got {other:?}"),
    }
    assert!(cobs.next().await.is_none());

    // …and so is a length-prefixed frame cut right after its length field.
    let mut prefixed = FramedRead::new(
        peer_writes(b"\0\x05").await,
        FramerCodec::new(LengthPrefixed::u16_be()),
    );
    assert!(matches!(
        prefixed.next().await,
        Some(Err(CodecError::Frame(FrameError::Truncated { .. })))
    ));
}

#[tokio::test]
async fn a_frame_the_format_cannot_carry_is_refused_and_the_sink_goes_on() {
    let (a, b) = duplex(1024);
    let mut writer = FramedWrite::new(a, FramerCodec::new(Line::lf()));
    let err = writer.send(Bytes::from("two\nlines")).await.unwrap_err();
    assert!(matches!(
        err,
        CodecError::Frame(FrameError::Unencodable { .. })
    ));
    writer.send(Bytes::from("one line")).await.unwrap();
    drop(writer);
    let mut reader = FramedRead::new(b, FramerCodec::new(Line::lf()));
    assert_eq!(collect(&mut reader).await, [Ok("one line".into())]);
}
