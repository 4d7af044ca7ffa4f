//! # Tendril core
//!
//! The sans-IO core of Tendril, a library for frame-based network applications. It is handed
//! stream bytes, datagrams and the time, and hands back frames, events, outgoing bytes and the
//! next deadline. It never touches a socket, a clock or a runtime, so the same protocol code runs
//! under Tokio, async-std, blocking sockets, a simulator or a fuzzer.
//!
//! What it holds:
//!
//! - **Framers** ([`framer`]): the [`Framer`] trait and eight built-in framers ([`Identity`],
//!   [`Chunk`], [`Line`], [`Delimiter`], [`LengthPrefixed`], [`Netstring`], [`Stuffing`],
//!   [`Cobs`]), separate for receiving and sending and switchable between any two frames
//!   without losing a byte. Frames are zero-copy [`bytes::Bytes`] slices where the format
//!   allows; [`SliceFramer`] hands them out in place.
//! - **Connections** ([`connection`]): [`Tendril`], one connection's state machine. A driver
//!   feeds it bytes or datagrams, EOF, errors and the time; it hands frames and events to an
//!   [`Application`], and gives back outgoing bytes ([`Outgoing`]) and its next deadline. Every
//!   connection ends, with one [`CloseReason`], whatever state it is in.
//! - **Datagram peers** ([`tracker`]): a bounded table of UDP peers, each a [`Tendril`], with
//!   idle timeouts, so one [`Application`] serves TCP and UDP alike.
//! - **Layers** ([`Layer`]): byte transforms under the framers, such as TLS on rustls's sans-IO
//!   API ([`tls`], feature `rustls`), wrapped at any time (STARTTLS).
//! - **Testing** ([`testkit`], the guide "Testing your protocol without sockets"): two
//!   tendrils joined in memory, a seeded hostile network with virtual time for many of them
//!   ([`testkit::net`]), and deterministic TLS, for reproducible tests and fuzzing.
//!
//! The framers on their own:
//!
//! ```
//! use bytes::BytesMut;
//! use tendril_core::{Chunk, Framer, Line};
//!
//! // An SMTP-like stream: a command line, five raw bytes, more lines.
//! let mut buf = BytesMut::from(&b"DATA\r\n12345rest\r\nnext\r\n"[..]);
//! let (mut line, mut chunk) = (Line::crlf(), Chunk::new(5));
//!
//! assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "DATA");
//! // Switch framers between two frames: the buffered bytes go through the new one.
//! assert_eq!(chunk.frameify(&mut buf).unwrap().unwrap(), "12345");
//! assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "rest");
//! assert_eq!(line.frameify(&mut buf).unwrap().unwrap(), "next");
//! assert!(buf.is_empty());
//! ```
//!
//! Without the default `std` feature the crate is `#![no_std]` and needs only `alloc`.
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

mod addr;
pub mod connection;
mod error;
pub mod framer;
mod layer;
mod outgoing;
pub mod testkit;
mod time;
#[cfg(feature = "rustls")]
pub mod tls;
pub mod tracker;

pub use addr::{Addr, Proto};
pub use connection::{
    AppError, Application, CloseReason, Config, Event, Reject, SendError, Stats, Tendril,
};
pub use error::{ConfigError, FrameError};
pub use framer::{
    BoxFramer, Chunk, Cobs, Delimiter, Framer, Identity, LengthField, LengthPrefixed, Line, Map,
    Netstring, Slice, SliceFramer, Stuffing,
};
pub use layer::{Layer, LayerError};
pub use outgoing::{Outgoing, COPY_THRESHOLD};

/// The README's example, compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The crate README's example (crates.io shows it), compiled and run as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../docs/tendril-core.md")]
pub struct CrateReadmeDoctests;
