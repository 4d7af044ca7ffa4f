//! The typed adapter behind [`Framer::map`].

use bytes::BytesMut;

use crate::{FrameError, Framer, Outgoing};

/// A framer whose frames are converted to and from the application's own type. Made by
/// [`Framer::map`].
#[derive(Debug, Clone)]
pub struct Map<F, D, E> {
    inner: F,
    decode: D,
    encode: E,
}

impl<F, D, E> Map<F, D, E> {
    pub(crate) fn new(inner: F, decode: D, encode: E) -> Self {
        Map {
            inner,
            decode,
            encode,
        }
    }

    /// The wrapped framer.
    pub fn get_ref(&self) -> &F {
        &self.inner
    }

    /// The wrapped framer, mutably (e.g. to change its limits).
    pub fn get_mut(&mut self) -> &mut F {
        &mut self.inner
    }
}

impl<F, T, D, E> Framer for Map<F, D, E>
where
    F: Framer,
    D: FnMut(F::Frame) -> Result<T, FrameError>,
    E: FnMut(T) -> Result<F::Frame, FrameError>,
{
    type Frame = T;

    fn frameify(&mut self, buf: &mut BytesMut) -> Result<Option<T>, FrameError> {
        self.inner.frameify(buf)?.map(&mut self.decode).transpose()
    }

    fn frameify_eof(&mut self, buf: &mut BytesMut) -> Result<Option<T>, FrameError> {
        self.inner
            .frameify_eof(buf)?
            .map(&mut self.decode)
            .transpose()
    }

    fn streamify(&mut self, frame: T, out: &mut Outgoing) -> Result<(), FrameError> {
        let frame = (self.encode)(frame)?;
        self.inner.streamify(frame, out)
    }

    fn reset(&mut self) {
        self.inner.reset()
    }
}
