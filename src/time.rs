//! Times kept in 8 bytes instead of a `Duration`'s 16 (a connection's clocks, parked peers'
//! times in the tracker): nanoseconds on the caller's clock, saturating (at 584 years).

use core::time::Duration;

/// `t` in nanoseconds, saturating (584 years).
pub(crate) fn nanos(t: Duration) -> u64 {
    u64::try_from(t.as_nanos()).unwrap_or(u64::MAX)
}

/// `n` nanoseconds.
pub(crate) fn from_nanos(n: u64) -> Duration {
    Duration::from_nanos(n)
}

/// A time on the caller's clock, in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub(crate) struct Nanos(u64);

impl Nanos {
    pub(crate) const ZERO: Nanos = Nanos(0);

    pub(crate) fn new(t: Duration) -> Nanos {
        Nanos(nanos(t))
    }

    pub(crate) fn get(self) -> Duration {
        from_nanos(self.0)
    }

    /// `n` nanoseconds, as [`nanos`] gives them (no round trip through a `Duration`).
    pub(crate) fn from_nanos(n: u64) -> Nanos {
        Nanos(n)
    }

    /// In nanoseconds.
    pub(crate) fn as_nanos(self) -> u64 {
        self.0
    }
}

/// A time that may not be set, in 8 bytes: `u64::MAX` is "not set" (a time 584 years on is
/// as good as never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MaybeNanos(u64);

impl MaybeNanos {
    pub(crate) const NONE: MaybeNanos = MaybeNanos(u64::MAX);

    pub(crate) fn new(t: Option<Duration>) -> MaybeNanos {
        t.map_or(Self::NONE, |t| MaybeNanos(nanos(t)))
    }

    pub(crate) fn get(self) -> Option<Duration> {
        (self != Self::NONE).then(|| from_nanos(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_saturate() {
        let t = Duration::new(12, 345_678_901);
        assert_eq!(Nanos::new(t).get(), t);
        assert_eq!(
            Nanos::new(Duration::MAX).get(),
            Duration::from_nanos(u64::MAX)
        );
        assert_eq!(MaybeNanos::new(Some(t)).get(), Some(t));
        assert_eq!(MaybeNanos::new(None).get(), None);
        assert_eq!(MaybeNanos::new(Some(Duration::MAX)).get(), None);
        assert_eq!(core::mem::size_of::<MaybeNanos>(), 8);
    }
}
