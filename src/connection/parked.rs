//! Parking: what an idle datagram peer keeps between datagrams.
//!
//! A tracked UDP peer spends nearly all its life idle. Between datagrams it needs only its
//! framers, its last-receive time and its counters; everything else in a [`Tendril`] — buffers,
//! queues, layers, deadlines, the configuration — is either empty or the same for every peer of a
//! tracker. So the tracker keeps idle peers as [`Parked`] and runs each datagram through one
//! spare `Tendril` that it reuses for every peer ([`Tendril::unpark`] / [`Tendril::park`]). A peer
//! that is not quiescent after its datagram (bytes left, a timer, a layer, its own
//! configuration, closing) stays a whole `Tendril` until it is.

use alloc::boxed::Box;
use core::marker::PhantomData;
use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;

use bytes::BytesMut;

use super::{State, Stats, Tendril};
use crate::time::Nanos;
use crate::{Addr, BoxFramer, Config, FrameError, Framer, Outgoing};

/// An idle datagram peer: what survives between datagrams.
pub(crate) struct Parked<In, Out> {
    recv: BoxFramer<In>,
    send: BoxFramer<Out>,
    last_received: Nanos,
    stats: Stats,
}

impl<In, Out> Parked<In, Out> {
    /// A new peer's state: its framers, received from at `now`.
    pub(crate) fn new(recv: BoxFramer<In>, send: BoxFramer<Out>, now: Duration) -> Self {
        Parked {
            recv,
            send,
            last_received: Nanos::new(now),
            stats: Stats::default(),
        }
    }

    /// When the peer idles out under `config`.
    #[cfg(test)]
    pub(crate) fn idle_deadline(&self, config: &Config) -> Option<Duration> {
        config
            .idle_timeout
            .map(|idle| self.last_received.get() + idle)
    }

    /// Its counters.
    #[cfg(test)]
    pub(crate) fn stats(&self) -> Stats {
        self.stats
    }

    /// A peer from its parts (the tracker keeps them apart, so a datagram touches one cache
    /// line of them).
    pub(crate) fn from_parts(
        recv: BoxFramer<In>,
        send: BoxFramer<Out>,
        last_received: Nanos,
        stats: Stats,
    ) -> Self {
        Parked {
            recv,
            send,
            last_received,
            stats,
        }
    }

    /// Its parts: framers, last receive, counters.
    pub(crate) fn into_parts(self) -> (BoxFramer<In>, BoxFramer<Out>, Nanos, Stats) {
        (self.recv, self.send, self.last_received, self.stats)
    }
}

/// The framer of a tendril that holds no peer: frames nothing and encodes nothing. A zero-sized
/// type, so boxing it allocates nothing.
struct Vacant<F>(PhantomData<fn() -> F>);

impl<F> Framer for Vacant<F> {
    type Frame = F;

    fn frameify(&mut self, _: &mut BytesMut) -> Result<Option<F>, FrameError> {
        Ok(None)
    }

    fn frameify_eof(&mut self, _: &mut BytesMut) -> Result<Option<F>, FrameError> {
        Ok(None)
    }

    fn streamify(&mut self, _: F, _: &mut Outgoing) -> Result<(), FrameError> {
        Err(FrameError::Unencodable {
            what: "frame",
            reason: "the tendril holds no peer",
        })
    }
}

fn vacant<F: 'static>() -> BoxFramer<F> {
    Box::new(Vacant(PhantomData))
}

impl<In: 'static, Out: 'static> Tendril<In, Out> {
    /// A tendril that holds no peer yet, for [`unpark`](Self::unpark).
    pub(crate) fn spare(proto: crate::Proto) -> Self {
        Tendril::with_boxed(proto, vacant(), vacant())
    }

    /// Take a parked peer in: its framers and counters, the tracker's `config`, and
    /// the state of an open connection that has buffered nothing. Whatever this tendril held
    /// before (a peer that closed or was parked, or a rejected newcomer) is forgotten; its buffers'
    /// memory is kept for reuse. `clean`: this tendril was emptied by [`park`](Self::park) and
    /// nothing touched it since, so it is already in that state apart from the peer's own parts.
    /// Its addresses are set afterwards ([`set_addrs`](Self::set_addrs), or
    /// [`set_addrs_v4`](Self::set_addrs_v4)).
    #[inline(always)]
    pub(crate) fn unpark(&mut self, parked: Parked<In, Out>, config: &Config, clean: bool) {
        if !clean {
            self.start_over(config);
        }
        debug_assert!(self.can_park(config));
        // Its configuration is the tracker's (fresh, or checked when it was parked).
        self.config_set = false;
        self.recv = parked.recv;
        self.send = parked.send;
        self.framers_replaced = false;
        self.now = parked.last_received;
        self.last_received = parked.last_received;
        self.stats = parked.stats;
    }

    /// Start over as a new connection under `config`, keeping only the buffers' memory: what
    /// [`unpark`](Self::unpark) does first when not `clean` (out of line, as a tracker unparks
    /// into a clean tendril for nearly every datagram).
    #[inline(never)]
    fn start_over(&mut self, config: &Config) {
        let mut fresh = Tendril::spare(self.proto).with_config(*config);
        fresh.recv_buf = core::mem::take(&mut self.recv_buf);
        fresh.recv_buf.clear();
        fresh.out = core::mem::take(&mut self.out);
        fresh.out.clear();
        fresh.datagrams = core::mem::take(&mut self.datagrams);
        fresh.datagrams.clear();
        fresh.events = core::mem::take(&mut self.events);
        fresh.events.clear();
        *self = fresh;
    }

    /// Set both addresses.
    pub(crate) fn set_addrs(&mut self, local: Addr, remote: Addr) {
        self.local = local;
        self.remote = remote;
    }

    /// Set both addresses to an IPv4 pair: in place when they are IPv4 already, as a tracker's
    /// spare tendril is from its last peer (no `Addr` made, moved or dropped).
    #[inline(always)]
    pub(crate) fn set_addrs_v4(&mut self, local: SocketAddrV4, remote: SocketAddrV4) {
        #[inline(always)]
        fn set(addr: &mut Addr, to: SocketAddrV4) {
            match addr {
                Addr::Ip(SocketAddr::V4(v4)) => *v4 = to,
                other => *other = Addr::Ip(SocketAddr::V4(to)),
            }
        }
        set(&mut self.local, local);
        set(&mut self.remote, remote);
    }

    /// `true` when nothing but the parked state is left to keep: open, nothing buffered,
    /// queued or pending, no layer, no timer, and the tracker's own `config`.
    pub(crate) fn can_park(&self, config: &Config) -> bool {
        self.state == State::Open
            && self.recv_buf.is_empty()
            && self.out.is_empty()
            && self.datagrams.is_empty()
            && self.events.is_empty()
            && self.layers.is_empty()
            && !self.eof
            && !self.want_writable
            && !self.finishing
            && !self.recv_paused
            && self.frame_started.is_none()
            && self.timer.get().is_none()
            // Comparing the whole `Config` costs as much as all the rest: only when it was set.
            && (!self.config_set || self.config == *config)
    }

    /// Take a peer in that uses the framers this tendril already holds (a tracker's shared
    /// framers): as [`unpark`](Self::unpark), but the framers stay. Not `clean`: the framers are
    /// reset too, as a framer switched in is.
    #[inline(always)]
    pub(crate) fn visit(
        &mut self,
        last_received: Nanos,
        stats: Stats,
        config: &Config,
        clean: bool,
    ) {
        if !clean {
            let (mut recv, mut send) = self.take_framers();
            recv.reset();
            send.reset();
            let parked = Parked::from_parts(recv, send, last_received, stats);
            self.unpark(parked, config, false);
            return;
        }
        debug_assert!(self.can_park(config) && !self.framers_replaced);
        self.config_set = false;
        self.now = last_received;
        self.last_received = last_received;
        self.stats = stats;
    }

    /// The framers, replaced by ones that hold no peer.
    pub(crate) fn take_framers(&mut self) -> (BoxFramer<In>, BoxFramer<Out>) {
        (
            core::mem::replace(&mut self.recv, vacant()),
            core::mem::replace(&mut self.send, vacant()),
        )
    }

    /// Install framers (the old ones are dropped); they count as not replaced.
    pub(crate) fn put_framers(&mut self, recv: BoxFramer<In>, send: BoxFramer<Out>) {
        self.recv = recv;
        self.send = send;
        self.framers_replaced = false;
    }

    /// `true` if the application or acceptor replaced a framer since the last
    /// [`put_framers`](Self::put_framers) or [`unpark`](Self::unpark).
    pub(crate) fn framers_replaced(&self) -> bool {
        self.framers_replaced
    }

    /// What a parked peer keeps besides its framers: last receive and counters.
    pub(crate) fn parked_state(&self) -> (Nanos, Stats) {
        (self.last_received, self.stats)
    }

    /// Move the peer out (check [`can_park`](Self::can_park) first); this tendril is left
    /// holding no peer, ready for the next [`unpark`](Self::unpark).
    pub(crate) fn park(&mut self) -> Parked<In, Out> {
        Parked {
            recv: core::mem::replace(&mut self.recv, vacant()),
            send: core::mem::replace(&mut self.send, vacant()),
            last_received: self.last_received,
            stats: self.stats,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Identity, Proto};
    use bytes::Bytes;

    fn addr(s: &str) -> Addr {
        Addr::Ip(s.parse().unwrap())
    }

    #[test]
    fn a_peer_survives_parking_with_its_framers_and_counters() {
        let config = Config::default();
        let mut spare: Tendril = Tendril::spare(Proto::UDP);
        let parked = Parked::new(
            crate::Line::lf().boxed(),
            Identity::new().boxed(),
            Duration::ZERO,
        );
        let (local, remote) = (addr("127.0.0.1:53"), addr("127.0.0.1:4000"));
        spare.unpark(parked, &config, false);
        spare.set_addrs(local.clone(), remote.clone());
        spare.handle_datagram(Duration::from_secs(1), b"a\nb\n", false);
        assert_eq!(spare.poll_frame().unwrap(), "a");
        assert_eq!(spare.poll_frame().unwrap(), "b");
        assert!(spare.poll_frame().is_none());
        assert!(spare.can_park(&config));
        let parked = spare.park();
        assert_eq!(parked.stats().frames_received, 2);
        assert_eq!(
            parked.idle_deadline(&Config {
                idle_timeout: Some(Duration::from_secs(5)),
                ..config
            }),
            Some(Duration::from_secs(6))
        );

        // The spare frames nothing while it holds no peer.
        spare.handle_datagram(Duration::from_secs(2), b"x\n", false);
        assert!(spare.poll_frame().is_none());

        spare.unpark(parked, &config, false);
        spare.set_addrs(local.clone(), remote.clone());
        assert_eq!(spare.remote_addr(), &remote);
        spare.handle_datagram(Duration::from_secs(3), b"c\n", false);
        assert_eq!(spare.poll_frame().unwrap(), "c");
        assert_eq!(spare.stats().frames_received, 3);
        assert!(spare.send_frame(Bytes::from("reply")).is_ok());
        assert!(
            !spare.can_park(&config),
            "a queued datagram must not be parked"
        );
    }

    #[test]
    fn a_peer_with_state_of_its_own_is_not_parked() {
        let config = Config::default();
        let mut t: Tendril = Tendril::spare(Proto::UDP);
        let fresh = |t: &mut Tendril| {
            t.unpark(
                Parked::new(
                    Identity::new().boxed(),
                    Identity::new().boxed(),
                    Duration::ZERO,
                ),
                &config,
                false,
            )
        };
        fresh(&mut t);
        assert!(t.can_park(&config));
        t.set_timer(Some(Duration::from_secs(1)));
        assert!(!t.can_park(&config));
        fresh(&mut t);
        t.pause_recv(true);
        assert!(!t.can_park(&config));
        fresh(&mut t);
        t.set_config(Config {
            frame_timeout: Some(Duration::from_secs(1)),
            ..config
        });
        assert!(!t.can_park(&config));
        fresh(&mut t);
        t.close();
        assert!(!t.can_park(&config));
    }

    #[test]
    fn a_config_set_back_to_the_trackers_parks_and_one_set_on_a_clean_visit_does_not() {
        let config = Config::default();
        let other = Config {
            frame_timeout: Some(Duration::from_secs(1)),
            ..config
        };
        let mut t: Tendril = Tendril::spare(Proto::UDP);
        let parked = Parked::new(
            Identity::new().boxed(),
            Identity::new().boxed(),
            Duration::ZERO,
        );
        t.unpark(parked, &config, false);
        t.set_config(other);
        assert!(!t.can_park(&config));
        t.set_config(config);
        assert!(t.can_park(&config), "the same configuration again");
        // A clean visit (the tracker's shared framers) starts without a configuration of its
        // own; one set afterwards is still seen.
        let (last, stats) = t.parked_state();
        t.visit(last, stats, &config, true);
        assert!(t.can_park(&config));
        t.set_config(other);
        assert!(!t.can_park(&config));
        // Unparked into a tendril whose last peer set a configuration: not clean, made anew.
        let parked = Parked::new(
            Identity::new().boxed(),
            Identity::new().boxed(),
            Duration::ZERO,
        );
        t.unpark(parked, &config, false);
        assert!(t.can_park(&config));
        assert_eq!(*t.config(), config);
    }
}
