//! # Tendril ↔ tokio-util
//!
//! Bridges between [Tendril](tendril_core)'s framers and `tokio_util`'s codecs, both ways, so
//! code on `tokio_util::codec` can adopt Tendril's framers, and existing codecs can run in a
//! `Tendril`:
//!
//! - [`FramerCodec`]: a Tendril receive framer and send framer as a
//!   [`Decoder`](tokio_util::codec::Decoder) and [`Encoder`](tokio_util::codec::Encoder), for
//!   `Framed`, `FramedRead` and `FramedWrite` (errors: [`CodecError`]);
//! - [`CodecFramer`]: a codec as a Tendril [`Framer`](tendril_core::Framer), with framer
//!   switching (a reset puts in a fresh codec); [`DecoderOnly`] for codecs that only decode.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use core::time::Duration;
//! use tendril_codec::{CodecFramer, FramerCodec};
//! use tendril_core::{Netstring, Proto, Tendril};
//! use tokio_util::codec::{Decoder, Encoder, LinesCodec};
//!
//! // A Tendril framer as a codec, as `Framed::new(stream, codec)` would use it.
//! let mut codec = FramerCodec::new(Netstring::new());
//! let mut wire = BytesMut::new();
//! codec.encode(Bytes::from("hello"), &mut wire).unwrap();
//! assert_eq!(wire, "5:hello,");
//! assert_eq!(codec.decode(&mut wire).unwrap().unwrap(), "hello");
//!
//! // A codec as a Tendril framer.
//! let lines = || CodecFramer::new(LinesCodec::new());
//! let mut t = Tendril::new(Proto::TCP, lines(), lines());
//! t.handle_data(Duration::ZERO, b"one\r\ntwo\n");
//! assert_eq!(t.poll_frame().as_deref(), Some("one"));
//! assert_eq!(t.poll_frame().as_deref(), Some("two"));
//! ```
//!
//! ## Where the contracts differ
//!
//! | | `tokio_util::codec` | Tendril | the bridges |
//! | --- | --- | --- | --- |
//! | end of input | `decode_eof`'s default fails on any leftover byte | `frameify_eof`: each format says (an unterminated last line is a frame, a cut-off length-prefixed frame is `Truncated`) | each side keeps its own rule: a `FramerCodec` the framer's, a `CodecFramer` the codec's |
//! | an oversized frame skipped | the codec's own business; an error ends a `Framed` stream | a recoverable `FrameError` (`is_recoverable`): decoding goes on | `FramerCodec` goes on and counts it (or returns it: `report_skipped`); a codec's errors are never recoverable in a `Tendril` |
//! | state between frames | scan offsets, a length already read; no reset | at most offsets, cleared by `reset` when a framer is switched in | `CodecFramer::reset` puts in a fresh codec |
//! | switching | `Framed::map_codec` | `set_recv_framer`, `set_send_framer`, between any two frames | `FramerCodec::set_recv_framer` / `set_send_framer`, boxed framers for other types |
//!
//! The root README's "From tokio-util" section maps each tokio-util codec and builder option to
//! its Tendril framer.
#![forbid(unsafe_code)]

mod codec_framer;
mod decoder_only;
mod error;
mod framer_codec;

pub use codec_framer::CodecFramer;
pub use decoder_only::DecoderOnly;
pub use error::CodecError;
pub use framer_codec::FramerCodec;

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
