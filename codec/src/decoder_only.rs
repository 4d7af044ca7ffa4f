//! A decoder with an encoder that refuses everything, for receive-only codecs.

use std::io;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// A [`Decoder`] with an [`Encoder`] for any type that refuses every frame, so a codec that
/// only decodes (one written for `FramedRead`) or that encodes another type than it decodes
/// (`AnyDelimiterCodec`: `Bytes` in, strings out) can be a [`CodecFramer`](crate::CodecFramer):
/// the receive framer of a `Tendril`, whose send framer is a separate one.
///
/// Decoding is the inner codec's, `decode_eof` included. Encoding fails with an
/// [`io::ErrorKind::Unsupported`] error, which `Tendril::send_frame` reports as
/// `SendError::Frame` without touching the connection.
///
/// ```
/// use core::time::Duration;
/// use bytes::Bytes;
/// use tendril_codec::{CodecFramer, DecoderOnly};
/// use tendril_core::{Line, Proto, Tendril};
/// use tokio_util::codec::AnyDelimiterCodec;
///
/// let fields = AnyDelimiterCodec::new(b",;".to_vec(), b",".to_vec());
/// let mut t: Tendril<Bytes> =
///     Tendril::new(Proto::TCP, CodecFramer::new(DecoderOnly::new(fields)), Line::crlf());
/// t.handle_data(Duration::ZERO, b"a,b;c");
/// assert_eq!(t.poll_frame().unwrap(), "a");
/// assert_eq!(t.poll_frame().unwrap(), "b");
/// t.send_frame(Bytes::from("got two")).unwrap();
/// assert_eq!(t.outgoing().take_all(), "got two\r\n");
/// ```
#[derive(Debug, Clone, Default)]
pub struct DecoderOnly<D> {
    decoder: D,
}

impl<D> DecoderOnly<D> {
    /// Wrap `decoder`.
    ///
    /// ```
    /// use tendril_codec::DecoderOnly;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let codec = DecoderOnly::new(LinesCodec::new());
    /// # let _ = codec;
    /// ```
    pub fn new(decoder: D) -> Self {
        DecoderOnly { decoder }
    }

    /// The decoder.
    ///
    /// ```
    /// use tendril_codec::DecoderOnly;
    /// use tokio_util::codec::LinesCodec;
    ///
    /// let codec = DecoderOnly::new(LinesCodec::new_with_max_length(80));
    /// assert_eq!(codec.get_ref().max_length(), 80);
    /// ```
    pub fn get_ref(&self) -> &D {
        &self.decoder
    }

    /// The decoder, mutably.
    ///
    /// ```
    /// use tendril_codec::DecoderOnly;
    /// use tokio_util::codec::LengthDelimitedCodec;
    ///
    /// let mut codec = DecoderOnly::new(LengthDelimitedCodec::new());
    /// codec.get_mut().set_max_frame_length(512);
    /// ```
    pub fn get_mut(&mut self) -> &mut D {
        &mut self.decoder
    }

    /// The decoder, unwrapped.
    ///
    /// ```
    /// use tendril_codec::DecoderOnly;
    /// use tokio_util::codec::BytesCodec;
    ///
    /// let codec: BytesCodec = DecoderOnly::new(BytesCodec::new()).into_inner();
    /// # let _ = codec;
    /// ```
    pub fn into_inner(self) -> D {
        self.decoder
    }
}

impl<D: Decoder> Decoder for DecoderOnly<D> {
    type Item = D::Item;
    type Error = D::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<D::Item>, D::Error> {
        self.decoder.decode(src)
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<D::Item>, D::Error> {
        self.decoder.decode_eof(buf)
    }
}

impl<D, T> Encoder<T> for DecoderOnly<D> {
    type Error = io::Error;

    fn encode(&mut self, _item: T, _dst: &mut BytesMut) -> Result<(), io::Error> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "this codec only decodes: send through a separate send framer",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CodecFramer;
    use bytes::Bytes;
    use tendril_core::{Framer, Outgoing};
    use tokio_util::codec::AnyDelimiterCodec;

    #[test]
    fn sending_through_a_decoder_only_framer_is_refused_and_queues_nothing() {
        let codec = DecoderOnly::new(AnyDelimiterCodec::new(b",".to_vec(), b",".to_vec()));
        let mut framer = CodecFramer::new(codec);
        let mut out = Outgoing::new();
        let err = framer.streamify(Bytes::from("x"), &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this codec only decodes: send through a separate send framer"
        );
        assert!(out.is_empty());
    }

    #[test]
    fn the_inner_decoders_end_of_input_rule_is_kept() {
        let mut codec = DecoderOnly::new(AnyDelimiterCodec::new(b",".to_vec(), b",".to_vec()));
        let mut buf = BytesMut::from("last");
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert_eq!(codec.decode_eof(&mut buf).unwrap().unwrap(), "last");
    }
}
