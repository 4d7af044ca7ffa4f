//! Connection tracking for datagram protocols: the table that makes connections out of
//! datagrams.

use alloc::boxed::Box;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use bytes::Bytes;
use core::cmp::Reverse;
use core::fmt;
use core::time::Duration;
use hashbrown::HashMap;

use crate::{Addr, Application, BoxFramer, CloseReason, Config, Proto, Reject, Tendril};

/// A handle to a tracked connection: an index and a generation, so a stale handle never reaches
/// a newer connection that reuses the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}.{}", self.index, self.generation)
    }
}

/// Settings of a [`Tracker`], with documented defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct TrackerConfig {
    /// Close a peer that sent nothing for this long. Default 60 s.
    pub idle_timeout: Duration,
    /// The most peers tracked at once. Default 65 536.
    pub max_peers: usize,
    /// How long a rejected peer's datagrams are dropped without asking the acceptor again.
    /// Default 10 s.
    pub reject_ttl: Duration,
    /// The most rejections remembered at once. Default 65 536.
    pub max_rejected: usize,
    /// Settings for each peer's [`Tendril`]; its `idle_timeout` is replaced by the one above.
    pub connection: Config,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            idle_timeout: Duration::from_secs(60),
            max_peers: 65_536,
            reject_ttl: Duration::from_secs(10),
            max_rejected: 65_536,
            connection: Config::default(),
        }
    }
}

/// A datagram to send: from `local` to `remote`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// The local address to send from (matters on wildcard-bound, multi-homed sockets).
    pub local: Addr,
    /// The peer.
    pub remote: Addr,
    /// The datagram.
    pub data: Bytes,
}

/// Something the tracker did, for the driver's logs and metrics.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TrackerEvent {
    /// A new peer was accepted.
    Accepted {
        /// Its handle.
        id: ConnId,
        /// Its address.
        remote: Addr,
    },
    /// A new peer was rejected by the acceptor (and will be ignored for `reject_ttl`).
    Rejected {
        /// Its address.
        remote: Addr,
        /// The acceptor's reason.
        reason: Reject,
    },
    /// A datagram from a new peer was dropped: the table is full of established peers.
    TableFull {
        /// The peer that was turned away.
        remote: Addr,
    },
    /// A tracked peer closed (its application's `closed` has run).
    Closed {
        /// Its former handle.
        id: ConnId,
        /// Its address.
        remote: Addr,
    },
}

type Acceptor<In, Out, A> = Box<dyn FnMut(&mut Tendril<In, Out>) -> Result<A, Reject> + Send>;
type FramerFactory<In, Out> = Box<dyn FnMut() -> (BoxFramer<In>, BoxFramer<Out>) + Send>;

struct Entry<In, Out, A> {
    tendril: Tendril<In, Out>,
    app: A,
    received: bool,
    sent: bool,
    /// The deadline this entry is queued under in the timer heap.
    scheduled: Option<Duration>,
}

struct Slot<In, Out, A> {
    generation: u32,
    entry: Option<Entry<In, Out, A>>,
}

type Key = (Addr, Addr);

/// The connection table of one datagram socket (one per socket per thread): peers keyed by
/// (local, remote) address, each a [`Tendril`] with its [`Application`].
///
/// A datagram from an unknown peer asks the acceptor; an accepted peer becomes a tendril whose
/// frames are delivered to its application, a rejected one is ignored for
/// [`TrackerConfig::reject_ttl`]. Peers that stay silent for the idle timeout are closed. When
/// the table is full, the oldest peer that has not yet exchanged traffic both ways is evicted to
/// make room, so a flood of spoofed sources cannot push out established peers; if every peer is
/// established, the newcomer is turned away.
///
/// Like everything in the core it is sans-IO: feed it datagrams and time, take out
/// [`Transmit`]s and deadlines.
///
/// ```
/// use bytes::Bytes;
/// use core::time::Duration;
/// use tendril_core::tracker::{Tracker, TrackerConfig};
/// use tendril_core::{AppError, Application, Identity, Proto, Tendril};
///
/// struct Echo;
/// impl Application for Echo {
///     fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
///         t.send_frame(frame)?;
///         Ok(())
///     }
/// }
///
/// let mut tracker = Tracker::new(
///     Proto::UDP,
///     TrackerConfig::default(),
///     || (Identity::new().boxed(), Identity::new().boxed()),
///     |_t: &mut Tendril| Ok(Echo),
/// );
/// let local: SocketAddr = "127.0.0.1:53".parse().unwrap();
/// let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
/// tracker.handle_datagram(Duration::ZERO, local, peer, b"hello", false);
/// let reply = tracker.poll_transmit().unwrap();
/// assert_eq!((reply.remote, reply.data), (peer.into(), Bytes::from("hello")));
/// # use tendril_core::Framer;
/// # use std::net::SocketAddr;
/// ```
pub struct Tracker<In, Out, A> {
    proto: Proto,
    config: TrackerConfig,
    table: HashMap<Key, ConnId>,
    slots: Vec<Slot<In, Out, A>>,
    free: Vec<u32>,
    live: usize,
    /// Peers not yet established, oldest first (stale handles are skipped).
    unestablished: VecDeque<ConnId>,
    timers: BinaryHeap<Reverse<(Duration, ConnId)>>,
    rejected: HashMap<Key, Duration>,
    rejected_order: VecDeque<(Duration, Key)>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<TrackerEvent>,
    acceptor: Acceptor<In, Out, A>,
    framers: FramerFactory<In, Out>,
}

impl<In, Out, A> fmt::Debug for Tracker<In, Out, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("proto", &self.proto)
            .field("peers", &self.live)
            .field("rejected", &self.rejected.len())
            .finish_non_exhaustive()
    }
}

impl<In: 'static, Out: 'static, A: Application<In, Out>> Tracker<In, Out, A> {
    /// A tracker for `proto`; `framers` makes each new peer's receive and send framers, and
    /// `acceptor` decides on each new peer.
    pub fn new<F, C>(proto: Proto, config: TrackerConfig, framers: F, acceptor: C) -> Self
    where
        F: FnMut() -> (BoxFramer<In>, BoxFramer<Out>) + Send + 'static,
        C: FnMut(&mut Tendril<In, Out>) -> Result<A, Reject> + Send + 'static,
    {
        Tracker {
            proto,
            config,
            table: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            unestablished: VecDeque::new(),
            timers: BinaryHeap::new(),
            rejected: HashMap::new(),
            rejected_order: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            acceptor: Box::new(acceptor),
            framers: Box::new(framers),
        }
    }

    /// Peers tracked now.
    pub fn len(&self) -> usize {
        self.live
    }

    /// `true` when no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Rejected peers remembered now.
    pub fn rejected_len(&self) -> usize {
        self.rejected.len()
    }

    /// The handle of the peer at (local, remote), if tracked.
    pub fn lookup(&self, local: &Addr, remote: &Addr) -> Option<ConnId> {
        self.table
            .get(&(local.canonical(), remote.canonical()))
            .copied()
    }

    /// Handles of all tracked peers.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.slots.iter().enumerate().filter_map(|(i, slot)| {
            slot.entry.as_ref().map(|_| ConnId {
                index: i as u32,
                generation: slot.generation,
            })
        })
    }

    /// A tracked peer's connection.
    pub fn get(&self, id: ConnId) -> Option<&Tendril<In, Out>> {
        self.entry(id).map(|e| &e.tendril)
    }

    /// Work on a tracked peer's connection and application (send frames, switch framers,
    /// close); the tracker settles the results (datagrams, close, timers) afterwards.
    pub fn with<R>(
        &mut self,
        now: Duration,
        id: ConnId,
        f: impl FnOnce(&mut Tendril<In, Out>, &mut A) -> R,
    ) -> Option<R> {
        let entry = self.entry_mut(id)?;
        let result = f(&mut entry.tendril, &mut entry.app);
        self.settle(now, id);
        Some(result)
    }

    /// Track an outgoing "connection" to `remote` from `local`. `acceptor` sees the new tendril
    /// (to set its framers) and makes its application, as for incoming peers. A peer already
    /// tracked at that address pair is replaced.
    pub fn connect(
        &mut self,
        now: Duration,
        local: Addr,
        remote: Addr,
        acceptor: impl FnOnce(&mut Tendril<In, Out>) -> Result<A, Reject>,
    ) -> Result<ConnId, Reject> {
        let key = (local.canonical(), remote.canonical());
        let mut tendril = self.new_tendril(now, &key);
        let app = acceptor(&mut tendril)?;
        if let Some(&id) = self.table.get(&key) {
            self.close_entry(now, id, CloseReason::Evicted);
        }
        let id = self.insert(key, tendril, app);
        self.settle(now, id);
        Ok(id)
    }

    /// A datagram arrived on `local` from `remote`. `truncated`: the driver's buffer was too small
    /// and the datagram was cut; it is dropped and reported to the application.
    pub fn handle_datagram(
        &mut self,
        now: Duration,
        local: impl Into<Addr>,
        remote: impl Into<Addr>,
        data: &[u8],
        truncated: bool,
    ) {
        let key = (local.into().canonical(), remote.into().canonical());
        let id = match self.table.get(&key) {
            Some(&id) => id,
            None => match self.admit(now, key) {
                Some(id) => id,
                None => return,
            },
        };
        if let Some(entry) = self.entry_mut(id) {
            entry.received = true;
            entry.tendril.handle_datagram(now, data, truncated);
        }
        self.settle(now, id);
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// The next tracker event.
    pub fn poll_event(&mut self) -> Option<TrackerEvent> {
        self.events.pop_front()
    }

    /// The next time [`handle_timeout`](Self::handle_timeout) must be called.
    pub fn poll_timeout(&self) -> Option<Duration> {
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let reject = self.rejected_order.front().map(|(at, _)| *at);
        timer.into_iter().chain(reject).min()
    }

    /// Fire every deadline up to `now`: idle peers close, rejections expire, timers run.
    pub fn handle_timeout(&mut self, now: Duration) {
        while let Some(&(until, _)) = self.rejected_order.front() {
            if until > now {
                break;
            }
            if let Some((_, key)) = self.rejected_order.pop_front() {
                if self.rejected.get(&key) == Some(&until) {
                    self.rejected.remove(&key);
                }
            }
        }
        while let Some(&Reverse((at, id))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(entry) = self.entry_mut(id) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue;
            }
            entry.scheduled = None;
            entry.tendril.handle_timeout(now);
            self.settle(now, id);
        }
    }

    /// Close every peer at once with an I/O error (the socket failed): each application's
    /// `closed` runs.
    pub fn fail_all(&mut self, now: Duration, message: &str) {
        let ids: Vec<ConnId> = self.ids().collect();
        for id in ids {
            self.close_entry(now, id, CloseReason::Io(message.into()));
        }
    }

    /// Close every peer gracefully (e.g. when the socket shuts down).
    pub fn close_all(&mut self, now: Duration) {
        let ids: Vec<ConnId> = self.ids().collect();
        for id in ids {
            self.with(now, id, |t, _| t.close());
        }
    }

    // ---- internals ---------------------------------------------------------------------

    fn entry(&self, id: ConnId) -> Option<&Entry<In, Out, A>> {
        let slot = self.slots.get(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_ref()
    }

    fn entry_mut(&mut self, id: ConnId) -> Option<&mut Entry<In, Out, A>> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.entry.as_mut()
    }

    fn new_tendril(&mut self, now: Duration, key: &Key) -> Tendril<In, Out> {
        let (recv, send) = (self.framers)();
        let config = Config {
            idle_timeout: Some(self.config.idle_timeout),
            ..self.config.connection
        };
        Tendril::with_boxed(self.proto, recv, send)
            .with_addrs(key.0.clone(), key.1.clone())
            .with_config(config)
            .started_at(now)
    }

    /// A datagram from an unknown peer: ask the acceptor, within the table's limits.
    fn admit(&mut self, now: Duration, key: Key) -> Option<ConnId> {
        if let Some(&until) = self.rejected.get(&key) {
            if now < until {
                return None;
            }
            self.rejected.remove(&key);
        }
        if self.live >= self.config.max_peers && !self.evict_one(now) {
            self.events
                .push_back(TrackerEvent::TableFull { remote: key.1 });
            return None;
        }
        let mut tendril = self.new_tendril(now, &key);
        match (self.acceptor)(&mut tendril) {
            Ok(app) => {
                let remote = key.1.clone();
                let id = self.insert(key, tendril, app);
                self.events.push_back(TrackerEvent::Accepted { id, remote });
                Some(id)
            }
            Err(reason) => {
                if self.rejected.len() < self.config.max_rejected {
                    let until = now + self.config.reject_ttl;
                    self.rejected.insert(key.clone(), until);
                    self.rejected_order.push_back((until, key.clone()));
                }
                self.events.push_back(TrackerEvent::Rejected {
                    remote: key.1,
                    reason,
                });
                None
            }
        }
    }

    fn insert(&mut self, key: Key, tendril: Tendril<In, Out>, app: A) -> ConnId {
        let entry = Entry {
            tendril,
            app,
            received: false,
            sent: false,
            scheduled: None,
        };
        let id = match self.free.pop() {
            Some(index) => {
                let slot = &mut self.slots[index as usize];
                slot.entry = Some(entry);
                ConnId {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    entry: Some(entry),
                });
                ConnId {
                    index: (self.slots.len() - 1) as u32,
                    generation: 0,
                }
            }
        };
        self.live += 1;
        self.table.insert(key, id);
        self.unestablished.push_back(id);
        id
    }

    /// Evict the oldest peer that has not exchanged traffic both ways. `false` if there is none.
    fn evict_one(&mut self, now: Duration) -> bool {
        while let Some(id) = self.unestablished.pop_front() {
            match self.entry(id) {
                Some(e) if !(e.received && e.sent) => {
                    self.close_entry(now, id, CloseReason::Evicted);
                    return true;
                }
                _ => continue,
            }
        }
        false
    }

    fn close_entry(&mut self, now: Duration, id: ConnId, reason: CloseReason) {
        if let Some(entry) = self.entry_mut(id) {
            entry.tendril.fail(reason);
        }
        self.settle(now, id);
    }

    /// After anything touched a peer: deliver its frames and events, collect its datagrams,
    /// finish a close, remove it once closed, and queue its next deadline.
    fn settle(&mut self, now: Duration, id: ConnId) {
        let Some(entry) = self
            .slots
            .get_mut(id.index as usize)
            .filter(|slot| slot.generation == id.generation)
            .and_then(|slot| slot.entry.as_mut())
        else {
            return;
        };
        entry.tendril.dispatch(&mut entry.app);
        let mut sent = false;
        while let Some(data) = entry.tendril.poll_datagram() {
            sent = true;
            self.transmits.push_back(Transmit {
                local: entry.tendril.local_addr().clone(),
                remote: entry.tendril.remote_addr().clone(),
                data,
            });
        }
        entry.sent |= sent;
        if entry.tendril.wants_shutdown() {
            entry.tendril.handle_shutdown(now);
            entry.tendril.dispatch(&mut entry.app);
        }
        if entry.tendril.is_closed() {
            self.remove(id);
            return;
        }
        if let Some(at) = entry.tendril.poll_timeout() {
            if entry.scheduled.is_none_or(|s| at < s) {
                entry.scheduled = Some(at);
                self.timers.push(Reverse((at, id)));
            }
        }
    }

    fn remove(&mut self, id: ConnId) {
        let slot = &mut self.slots[id.index as usize];
        let Some(entry) = slot.entry.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        let key = (
            entry.tendril.local_addr().clone(),
            entry.tendril.remote_addr().clone(),
        );
        if self.table.get(&key) == Some(&id) {
            self.table.remove(&key);
        }
        self.events
            .push_back(TrackerEvent::Closed { id, remote: key.1 });
    }
}
