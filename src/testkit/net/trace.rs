//! What happened on a [`Net`](super::Net), kept cheaply and written out only when asked.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use bytes::Bytes;
use core::fmt;
use core::net::SocketAddr;
use core::time::Duration;

/// The last things that happened on a [`Net`](super::Net), oldest first; printed by
/// [`check`](super::check) when a seed fails.
///
/// Entries are kept as data and written out only when the trace is printed, so a run that
/// passes pays almost nothing for it.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    entries: VecDeque<(Duration, Entry)>,
    forgotten: usize,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// Anything rare enough to be written out at once.
    Note(String),
    /// An end of connection `link` read `len` bytes, beginning with `start`.
    Read {
        link: usize,
        side: usize,
        len: usize,
        start: Bytes,
        one_byte_at_a_time: bool,
    },
    /// A datagram arrived.
    Datagram {
        from: SocketAddr,
        to: SocketAddr,
        len: usize,
        start: Bytes,
    },
    /// An end read its peer's EOF.
    Eof { link: usize, side: usize },
    /// An end read its peer's reset.
    Reset { link: usize, side: usize },
}

/// The names of a connection's ends, by side.
pub(super) const SIDES: [&str; 2] = ["client", "server"];

/// How many bytes of a read the trace shows.
const SHOWN: usize = 32;

impl Entry {
    /// A datagram's arrival, keeping only the start of it.
    pub(super) fn datagram(from: SocketAddr, to: SocketAddr, data: &Bytes) -> Self {
        Entry::Datagram {
            from,
            to,
            len: data.len(),
            start: data.slice(..data.len().min(SHOWN)),
        }
    }

    /// A read of `data` by an end, keeping only the start of it.
    pub(super) fn read(link: usize, side: usize, data: &Bytes, one_byte_at_a_time: bool) -> Self {
        Entry::Read {
            link,
            side,
            len: data.len(),
            start: data.slice(..data.len().min(SHOWN)),
            one_byte_at_a_time,
        }
    }
}

/// A byte count and the start of the bytes, escaped: `5 bytes "PING\n"`.
fn bytes(f: &mut fmt::Formatter<'_>, len: usize, start: &Bytes) -> fmt::Result {
    let unit = if len == 1 { "byte" } else { "bytes" };
    write!(f, "{len} {unit} \"{}\"", start.escape_ascii())?;
    if len > start.len() {
        f.write_str("…")?;
    }
    Ok(())
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Note(line) => f.write_str(line),
            Entry::Read {
                link,
                side,
                len,
                start,
                one_byte_at_a_time,
            } => {
                write!(f, "#{link} {} reads ", SIDES[*side])?;
                bytes(f, *len, start)?;
                if *one_byte_at_a_time {
                    f.write_str(", one byte per read")?;
                }
                Ok(())
            }
            Entry::Datagram {
                from,
                to,
                len,
                start,
            } => {
                write!(f, "udp {from}→{to}: ")?;
                bytes(f, *len, start)
            }
            Entry::Eof { link, side } => write!(f, "#{link} {} reads the EOF", SIDES[*side]),
            Entry::Reset { link, side } => write!(f, "#{link} {} reads a reset", SIDES[*side]),
        }
    }
}

impl Trace {
    /// How many entries a trace keeps.
    pub const KEPT: usize = 200;

    pub(super) fn push(&mut self, at: Duration, entry: Entry) {
        if self.entries.len() == Self::KEPT {
            self.entries.pop_front();
            self.forgotten += 1;
        }
        self.entries.push_back((at, entry));
    }

    pub(super) fn note(&mut self, at: Duration, line: String) {
        self.push(at, Entry::Note(line));
    }

    /// The kept entries with their virtual times, oldest first, written out.
    pub fn lines(&self) -> impl Iterator<Item = (Duration, String)> + '_ {
        self.entries
            .iter()
            .map(|(at, entry)| (*at, entry.to_string()))
    }
}

impl fmt::Display for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.forgotten > 0 {
            writeln!(f, "  … {} earlier entries", self.forgotten)?;
        }
        for (at, entry) in &self.entries {
            writeln!(f, "  {:>9.3} ms  {entry}", at.as_secs_f64() * 1e3)?;
        }
        Ok(())
    }
}
