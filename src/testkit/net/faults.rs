//! How badly the network behaves, and the random numbers that decide it.

use core::time::Duration;

/// How badly the network behaves. Chances are in percent; start from a preset and change what
/// you need:
///
/// ```
/// use core::time::Duration;
/// use tendril_core::testkit::net::Faults;
///
/// let mut faults = Faults::hostile();
/// faults.fault_window = Duration::from_millis(60); // resets and hang-ups early: in a handshake
/// assert_eq!(Faults::perfect().loss, 0);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Percent of writes that take only a random part of what is queued (at least one byte).
    pub short_writes: u8,
    /// Percent of stream deliveries handed to the reader one byte per read.
    pub one_byte_reads: u8,
    /// The longest time bytes or a datagram spend in flight; each write draws a delay up to
    /// this. A stream stays in order; datagrams overtake each other.
    pub max_delay: Duration,
    /// Percent of stream connections that one end resets (its peer reads an error) at a
    /// random moment within `fault_window` of the connect.
    pub resets: u8,
    /// Percent of the other stream connections that one end hangs up on: it aborts and its peer
    /// reads an EOF, as when a process exits.
    pub hang_ups: u8,
    /// When resets and hang-ups happen: within this long after the connect.
    pub fault_window: Duration,
    /// Percent of datagrams lost.
    pub loss: u8,
    /// Percent of datagrams delivered twice.
    pub duplication: u8,
}

impl Faults {
    /// A perfect link: every write is read whole, at once; nothing is lost.
    pub fn perfect() -> Self {
        Faults {
            short_writes: 0,
            one_byte_reads: 0,
            max_delay: Duration::ZERO,
            resets: 0,
            hang_ups: 0,
            fault_window: Duration::ZERO,
            loss: 0,
            duplication: 0,
        }
    }

    /// A bad day on a real network: writes split and delayed, some datagrams lost or doubled
    /// and reordered, but no connection fails.
    pub fn lossy() -> Self {
        Faults {
            short_writes: 50,
            one_byte_reads: 5,
            max_delay: Duration::from_millis(5),
            loss: 10,
            duplication: 5,
            ..Faults::perfect()
        }
    }

    /// An attacker's network: every write split, one delivery in five read a byte at a time,
    /// 15 % of connections reset and 15 % hung up on (mid-frame, mid-handshake), a tenth of
    /// datagrams lost and a tenth doubled.
    pub fn hostile() -> Self {
        Faults {
            short_writes: 100,
            one_byte_reads: 20,
            max_delay: Duration::from_millis(5),
            resets: 15,
            hang_ups: 15,
            fault_window: Duration::from_millis(400),
            loss: 10,
            duplication: 10,
        }
    }
}

/// The simulation's random numbers: SplitMix64, the same on every platform, from the seed.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    /// A stream of numbers from `seed`.
    pub fn new(seed: u64) -> Self {
        SimRng(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// `true` with this chance, in percent.
    pub fn chance(&mut self, percent: u8) -> bool {
        self.below(100) < u64::from(percent)
    }

    /// A duration in `0..=max`, in whole microseconds.
    pub fn up_to(&mut self, max: Duration) -> Duration {
        let micros = max.as_micros().min(u128::from(u64::MAX)) as u64;
        Duration::from_micros(self.below(micros.saturating_add(1)))
    }
}
