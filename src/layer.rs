//! Layers: byte-stream transformations between the socket and the framers (e.g. TLS).

use alloc::boxed::Box;
use alloc::string::String;
use bytes::BytesMut;
use core::fmt;

use crate::Outgoing;

/// A byte-stream transformation between the socket and the framers, such as TLS.
///
/// A layer is driven by its [`Tendril`](crate::Tendril): `recv` with bytes that came from the
/// socket side, `send` with bytes to go towards it. A layer never touches a socket; it only moves
/// bytes between buffers, so it behaves the same under every driver and in tests.
///
/// ```
/// use bytes::BytesMut;
/// use tendril_core::{Layer, LayerError, Outgoing};
///
/// /// A toy layer that flips every bit on the wire.
/// struct Invert;
///
/// impl Layer for Invert {
///     fn recv(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<(), LayerError> {
///         output.extend(input.split().iter().map(|b| !b));
///         Ok(())
///     }
///     fn send(&mut self, input: &mut Outgoing, output: &mut Outgoing) -> Result<(), LayerError> {
///         let plain = input.take_all();
///         output.put_slice(&plain.iter().map(|b| !b).collect::<Vec<u8>>());
///         Ok(())
///     }
/// }
/// ```
pub trait Layer: Send {
    /// Bytes arrived from the socket side in `input`: consume what can be processed and append the
    /// resulting bytes for the framers to `output`. Bytes left in `input` are offered again with
    /// the next arrival.
    fn recv(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> Result<(), LayerError>;

    /// Take bytes to send from `input` (as many as the layer accepts) and append what goes to the
    /// socket side to `output`. Also called with an empty `input` after every `recv`, so the layer
    /// can emit handshake records and alerts.
    fn send(&mut self, input: &mut Outgoing, output: &mut Outgoing) -> Result<(), LayerError>;

    /// The connection is closing: queue whatever ends the layer's stream (e.g. a TLS
    /// `close_notify`); the next `send` writes it.
    fn close(&mut self) {}

    /// `true` while the layer cannot carry application bytes yet (a TLS handshake).
    fn is_handshaking(&self) -> bool {
        false
    }

    /// `true` once the peer ended the layer's stream (a TLS `close_notify`): the tendril treats it
    /// as the end of input.
    fn peer_closed(&self) -> bool {
        false
    }
}

/// A layer failed; the connection closes with this as its reason.
#[derive(Debug)]
pub struct LayerError {
    layer: &'static str,
    message: String,
    source: Option<Box<dyn core::error::Error + Send + Sync>>,
}

impl LayerError {
    /// An error of the layer named `layer` (e.g. `"TLS"`), with a message.
    pub fn new(layer: &'static str, message: impl Into<String>) -> Self {
        LayerError {
            layer,
            message: message.into(),
            source: None,
        }
    }

    /// An error of the layer named `layer` caused by `source`, whose message is used.
    pub fn from_source<E>(layer: &'static str, source: E) -> Self
    where
        E: core::error::Error + Send + Sync + 'static,
    {
        use alloc::string::ToString;
        LayerError {
            layer,
            message: source.to_string(),
            source: Some(Box::new(source)),
        }
    }

    /// The name of the layer that failed.
    pub fn layer(&self) -> &'static str {
        self.layer
    }
}

impl fmt::Display for LayerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} error: {}", self.layer, self.message)
    }
}

impl core::error::Error for LayerError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn core::error::Error + 'static))
    }
}

/// One layer in a tendril's stack, with the bytes waiting for it in each direction.
pub(crate) struct LayerSlot {
    pub layer: Box<dyn Layer>,
    /// Bytes from the socket side not yet consumed by `layer.recv`.
    pub recv_in: BytesMut,
    /// Bytes from the framer side not yet consumed by `layer.send`.
    pub send_in: Outgoing,
}
