//! Helpers shared by the integration tests. Each test crate uses a subset of them.
#![allow(dead_code)]

use bytes::{Bytes, BytesMut};
use tendril_core::{FrameError, Framer, Outgoing};

/// Bytes from a hex string (no separators).
pub fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len() % 2 == 0, "odd-length hex string {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap_or_else(|e| panic!("{s:?}: {e}")))
        .collect()
}

/// A hex string from bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex strings of a list of frames, for readable assertion failures.
pub fn hexes<B: AsRef<[u8]>>(frames: &[B]) -> Vec<String> {
    frames.iter().map(|f| hex(f.as_ref())).collect()
}

/// `frameify` until `Ok(None)`, checking that every frame consumes input (so a buggy framer
/// fails the test instead of looping forever).
pub fn pull<F: Framer>(framer: &mut F, buf: &mut BytesMut) -> Result<Vec<F::Frame>, FrameError> {
    let mut frames = Vec::new();
    loop {
        let before = buf.len();
        match framer.frameify(buf)? {
            Some(frame) => {
                assert!(
                    buf.len() < before,
                    "frameify returned a frame without consuming input"
                );
                frames.push(frame);
            }
            None => return Ok(frames),
        }
    }
}

/// `frameify_eof` until `Ok(None)`, with the same progress check as [`pull`].
pub fn pull_eof<F: Framer>(
    framer: &mut F,
    buf: &mut BytesMut,
) -> Result<Vec<F::Frame>, FrameError> {
    let mut frames = Vec::new();
    loop {
        let before = buf.len();
        match framer.frameify_eof(buf)? {
            Some(frame) => {
                assert!(
                    buf.len() < before,
                    "frameify_eof returned a frame without consuming input"
                );
                frames.push(frame);
            }
            None => return Ok(frames),
        }
    }
}

/// Feed `pieces` one after another into one buffer, pulling frames after each; then pull
/// with `frameify_eof`. Returns the frames and what is left in the buffer.
pub fn feed<'a, F: Framer>(
    framer: &mut F,
    pieces: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(Vec<F::Frame>, BytesMut), FrameError> {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        frames.extend(pull(framer, &mut buf)?);
    }
    frames.extend(pull_eof(framer, &mut buf)?);
    Ok((frames, buf))
}

/// Cut `wire` at the given positions (any order, duplicates allowed, each at most `wire.len()`).
pub fn split_at<'a>(wire: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut cuts: Vec<usize> = cuts.to_vec();
    cuts.push(0);
    cuts.push(wire.len());
    cuts.sort_unstable();
    cuts.dedup();
    cuts.windows(2).map(|w| &wire[w[0]..w[1]]).collect()
}

/// One byte at a time.
pub fn bytewise(wire: &[u8]) -> Vec<&[u8]> {
    wire.chunks(1).collect()
}

/// `streamify` one frame into a fresh queue and return the wire bytes.
pub fn encode<F: Framer>(framer: &mut F, frame: F::Frame) -> Result<Bytes, FrameError> {
    let mut out = Outgoing::new();
    framer.streamify(frame, &mut out)?;
    Ok(out.take_all())
}

/// What [`encode_each`] did with a list of frames.
pub struct Encoded {
    /// All accepted frames, streamified into one queue.
    pub wire: Bytes,
    /// The frames `streamify` accepted, in order.
    pub accepted: Vec<Bytes>,
    /// The frames `streamify` refused, with the error.
    pub rejected: Vec<(Bytes, FrameError)>,
}

/// `streamify` every frame into one queue, keeping the refused ones aside; a refused frame must
/// not leave anything in the queue.
pub fn encode_each<F: Framer<Frame = Bytes>>(framer: &mut F, frames: &[Vec<u8>]) -> Encoded {
    let mut out = Outgoing::new();
    let mut accepted = Vec::new();
    let mut rejected = Vec::new();
    for frame in frames {
        let frame = Bytes::copy_from_slice(frame);
        let before = out.len();
        match framer.streamify(frame.clone(), &mut out) {
            Ok(()) => accepted.push(frame),
            Err(e) => {
                assert_eq!(
                    out.len(),
                    before,
                    "streamify wrote bytes for a frame it refused ({e})"
                );
                rejected.push((frame, e));
            }
        }
    }
    Encoded {
        wire: out.take_all(),
        accepted,
        rejected,
    }
}
