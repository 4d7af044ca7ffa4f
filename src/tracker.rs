//! Connection tracking for datagram protocols: the table that makes connections out of
//! datagrams.

use alloc::boxed::Box;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use bytes::Bytes;
use core::cmp::Reverse;
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};
use core::net::{SocketAddr, SocketAddrV4};
use core::time::Duration;
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};

use crate::connection::{Parked, Stats};
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

/// A received datagram, for [`Tracker::handle_datagrams`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Datagram<'a> {
    /// The local address it arrived on.
    pub local: Addr,
    /// The peer that sent it.
    pub remote: Addr,
    /// Its bytes.
    pub data: &'a [u8],
    /// The driver's buffer was too small and the datagram was cut (it is dropped and reported).
    pub truncated: bool,
}

impl<'a> Datagram<'a> {
    /// A whole datagram from `remote` to `local`.
    pub fn new(local: impl Into<Addr>, remote: impl Into<Addr>, data: &'a [u8]) -> Self {
        Datagram {
            local: local.into(),
            remote: remote.into(),
            data,
            truncated: false,
        }
    }

    /// Mark it as cut short by the driver (or not).
    pub fn truncated(mut self, truncated: bool) -> Self {
        self.truncated = truncated;
        self
    }
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

/// Slots per page of the slot table. Pages never move, so the table grows without copying
/// (or doubling) the peers it holds.
const PAGE: usize = 256;

struct Entry<In, Out, A> {
    /// (local, remote), canonical: the table's key, stored once.
    key: StoredKey,
    peer: PeerState<In, Out>,
    app: A,
    /// The deadline this entry is queued under in the timer heap.
    scheduled: Option<Duration>,
}

impl<In, Out, A> Entry<In, Out, A> {
    /// Make sure the timer heap wakes this entry (`id`) by `at`. The heap is lazy: an entry
    /// already queued earlier stays queued, and a stale heap entry is skipped when it fires.
    fn schedule(&mut self, timers: &mut Timers, id: ConnId, at: Duration) {
        if self.scheduled.is_none_or(|s| at < s) {
            self.scheduled = Some(at);
            timers.push(Reverse((at, id)));
        }
    }
}

enum PeerState<In, Out> {
    /// Idle: framers, last-receive time and counters only (the usual state between datagrams).
    Parked(Parked<In, Out>),
    /// A peer with state of its own (bytes buffered or queued, a layer, a timer, its own
    /// configuration, closing).
    Live(Box<Tendril<In, Out>>),
    /// Taken out while a call works on it.
    Busy,
}

/// Aligned to a cache line: a slot with a small application (up to about 8 bytes) fills exactly
/// two lines, which is what one datagram touches of it.
#[repr(align(64))]
struct Slot<In, Out, A> {
    generation: u32,
    /// The entry's peer has sent a datagram / been sent one (both: established).
    received: bool,
    sent: bool,
    entry: Option<Entry<In, Out, A>>,
}

type Key = (Addr, Addr);

/// Deadlines of entries, earliest first.
type Timers = BinaryHeap<Reverse<(Duration, ConnId)>>;

/// A key as an entry stores it: an IPv4 pair in 12 bytes, anything else boxed, so the usual
/// slot stays within two cache lines.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredKey {
    V4(SocketAddrV4, SocketAddrV4),
    Other(Box<Key>),
}

impl StoredKey {
    fn new(key: Key) -> Self {
        match key {
            (Addr::Ip(SocketAddr::V4(local)), Addr::Ip(SocketAddr::V4(remote))) => {
                StoredKey::V4(local, remote)
            }
            other => StoredKey::Other(Box::new(other)),
        }
    }

    fn matches(&self, key: &Key) -> bool {
        match (self, key) {
            (
                StoredKey::V4(local, remote),
                (Addr::Ip(SocketAddr::V4(l)), Addr::Ip(SocketAddr::V4(r))),
            ) => local == l && remote == r,
            (StoredKey::Other(stored), key) => **stored == *key,
            _ => false,
        }
    }

    fn local(&self) -> Addr {
        match self {
            StoredKey::V4(local, _) => Addr::Ip(SocketAddr::V4(*local)),
            StoredKey::Other(key) => key.0.clone(),
        }
    }

    fn remote(&self) -> Addr {
        match self {
            StoredKey::V4(_, remote) => Addr::Ip(SocketAddr::V4(*remote)),
            StoredKey::Other(key) => key.1.clone(),
        }
    }

    fn hash(&self, hasher: &DefaultHashBuilder) -> u64 {
        match self {
            StoredKey::V4(..) => hash_key(hasher, &(self.local(), self.remote())),
            StoredKey::Other(key) => hash_key(hasher, key),
        }
    }
}

type Pages<In, Out, A> = Vec<Vec<Slot<In, Out, A>>>;

/// The hash of a key: IP addresses as one or two words each rather than field by field (the
/// derived `Hash` of `SocketAddr`), as this runs for every datagram.
fn hash_key(hasher: &DefaultHashBuilder, (local, remote): &Key) -> u64 {
    let mut h = hasher.build_hasher();
    for addr in [local, remote] {
        match addr {
            Addr::Ip(SocketAddr::V4(a)) => {
                h.write_u64(u64::from(a.ip().to_bits()) << 16 | u64::from(a.port()))
            }
            Addr::Ip(SocketAddr::V6(a)) => {
                h.write_u128(a.ip().to_bits());
                h.write_u64(u64::from(a.port()) << 32 | u64::from(a.scope_id()));
            }
            other => other.hash(&mut h),
        }
    }
    h.finish()
}

fn slot_at<In, Out, A>(pages: &Pages<In, Out, A>, index: u32) -> Option<&Slot<In, Out, A>> {
    let index = index as usize;
    pages.get(index / PAGE)?.get(index % PAGE)
}

fn slot_at_mut<In, Out, A>(
    pages: &mut Pages<In, Out, A>,
    index: u32,
) -> Option<&mut Slot<In, Out, A>> {
    let index = index as usize;
    pages.get_mut(index / PAGE)?.get_mut(index % PAGE)
}

/// The slot of `id` if it still holds that peer (same generation, not removed).
fn live_slot<In, Out, A>(pages: &Pages<In, Out, A>, id: ConnId) -> Option<&Slot<In, Out, A>> {
    slot_at(pages, id.index).filter(|slot| slot.generation == id.generation && slot.entry.is_some())
}

fn live_slot_mut<In, Out, A>(
    pages: &mut Pages<In, Out, A>,
    id: ConnId,
) -> Option<&mut Slot<In, Out, A>> {
    slot_at_mut(pages, id.index)
        .filter(|slot| slot.generation == id.generation && slot.entry.is_some())
}

/// `true` if `id` is tracked and has not exchanged datagrams both ways.
fn unestablished_at<In, Out, A>(pages: &Pages<In, Out, A>, id: ConnId) -> bool {
    live_slot(pages, id).is_some_and(|slot| !(slot.received && slot.sent))
}

fn entry_at<In, Out, A>(pages: &Pages<In, Out, A>, id: ConnId) -> Option<&Entry<In, Out, A>> {
    live_slot(pages, id)?.entry.as_ref()
}

fn entry_at_mut<In, Out, A>(
    pages: &mut Pages<In, Out, A>,
    id: ConnId,
) -> Option<&mut Entry<In, Out, A>> {
    live_slot_mut(pages, id)?.entry.as_mut()
}

/// A tracked peer as [`Tracker::get`] shows it: its addresses and counters.
#[derive(Debug, Clone)]
pub struct TrackedPeer {
    local: Addr,
    remote: Addr,
    stats: Stats,
    open: bool,
}

impl TrackedPeer {
    /// The local address its datagrams arrive on.
    pub fn local_addr(&self) -> &Addr {
        &self.local
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> &Addr {
        &self.remote
    }

    /// Its byte and frame counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// `true` while frames can be sent to it (it is not closing).
    pub fn is_open(&self) -> bool {
        self.open
    }
}

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
/// An idle peer costs about 200 bytes: between datagrams the tracker keeps only its framers,
/// last-receive time and counters ("parked"), and each datagram runs through one reused
/// [`Tendril`]. A peer that keeps state of its own between datagrams (buffered bytes, a timer, a
/// layer, a configuration of its own) stays a whole `Tendril` until it is quiescent again. Either
/// way its application sees the same `&mut Tendril`.
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
    /// Every peer's connection settings: `config.connection` with the tracker's idle timeout.
    peer_config: Config,
    hasher: DefaultHashBuilder,
    /// Slot indexes, hashed by their entries' keys.
    table: HashTable<u32>,
    pages: Pages<In, Out, A>,
    free: Vec<u32>,
    live: usize,
    /// The tendril each parked peer is unparked into while a datagram (or a call) works on it,
    /// and whether `park` left it clean (nothing to reset).
    spare: Option<(Box<Tendril<In, Out>>, bool)>,
    /// Peers not yet established, oldest first (stale handles are skipped).
    unestablished: VecDeque<ConnId>,
    timers: Timers,
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
            peer_config: Config {
                idle_timeout: Some(config.idle_timeout),
                ..config.connection
            },
            hasher: DefaultHashBuilder::default(),
            table: HashTable::new(),
            pages: Vec::new(),
            free: Vec::new(),
            live: 0,
            spare: None,
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
        self.find(&(local.canonical(), remote.canonical()))
    }

    /// Handles of all tracked peers.
    pub fn ids(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.pages
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, slot)| {
                slot.entry.as_ref().map(|_| ConnId {
                    index: i as u32,
                    generation: slot.generation,
                })
            })
    }

    /// A tracked peer's addresses and counters. To work on its connection use
    /// [`with`](Self::with).
    pub fn get(&self, id: ConnId) -> Option<TrackedPeer> {
        let entry = entry_at(&self.pages, id)?;
        let (stats, open) = match &entry.peer {
            PeerState::Parked(parked) => (parked.stats(), true),
            PeerState::Live(tendril) => (tendril.stats(), tendril.is_open()),
            PeerState::Busy => (Stats::default(), false),
        };
        Some(TrackedPeer {
            local: entry.key.local(),
            remote: entry.key.remote(),
            stats,
            open,
        })
    }

    /// Work on a tracked peer's connection and application (send frames, switch framers,
    /// close); the tracker settles the results (datagrams, close, timers) afterwards.
    pub fn with<R>(
        &mut self,
        now: Duration,
        id: ConnId,
        f: impl FnOnce(&mut Tendril<In, Out>, &mut A) -> R,
    ) -> Option<R> {
        let mut tendril = self.activate(id)?;
        let Some(entry) = entry_at_mut(&mut self.pages, id) else {
            self.keep_spare(tendril, false);
            return None;
        };
        let result = f(&mut tendril, &mut entry.app);
        self.settle(now, id, tendril);
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
        let mut tendril = self.newcomer(now, &key);
        let app = match acceptor(&mut tendril) {
            Ok(app) => app,
            Err(reason) => {
                self.keep_spare(tendril, false);
                return Err(reason);
            }
        };
        if let Some(id) = self.find(&key) {
            self.close_entry(now, id, CloseReason::Evicted);
        }
        let id = self.insert(key, app);
        self.settle(now, id, tendril);
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
        self.handle_keyed(now, key, data, truncated);
    }

    /// Several datagrams that arrived together (e.g. one `recvmmsg`), in order: the same as
    /// [`handle_datagram`](Self::handle_datagram) for each. A driver hands over its receive
    /// records as they are (a `map` over them), without collecting them first.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use core::time::Duration;
    /// use std::net::SocketAddr;
    /// use tendril_core::tracker::{Datagram, Tracker, TrackerConfig};
    /// use tendril_core::{AppError, Application, Framer, Identity, Proto, Tendril};
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
    ///     |_: &mut Tendril| Ok(Echo),
    /// );
    /// let local: SocketAddr = "127.0.0.1:53".parse().unwrap();
    /// let (a, b): (SocketAddr, SocketAddr) =
    ///     ("127.0.0.1:4000".parse().unwrap(), "127.0.0.1:4001".parse().unwrap());
    /// let batch = [
    ///     Datagram::new(local, a, b"one"),
    ///     Datagram::new(local, b, b"two"),
    ///     Datagram::new(local, a, b"three"),
    /// ];
    /// tracker.handle_datagrams(Duration::ZERO, batch);
    /// let replies: Vec<Bytes> = std::iter::from_fn(|| tracker.poll_transmit())
    ///     .map(|t| t.data)
    ///     .collect();
    /// assert_eq!(replies, ["one", "two", "three"]);
    /// assert_eq!(tracker.len(), 2);
    /// ```
    pub fn handle_datagrams<'d>(
        &mut self,
        now: Duration,
        batch: impl IntoIterator<Item = Datagram<'d>>,
    ) {
        for datagram in batch {
            let key = (datagram.local.canonical(), datagram.remote.canonical());
            self.handle_keyed(now, key, datagram.data, datagram.truncated);
        }
    }

    /// A datagram from `key` (canonical).
    fn handle_keyed(&mut self, now: Duration, key: Key, data: &[u8], truncated: bool) {
        let (id, mut tendril) = match self.find(&key) {
            Some(id) => match self.activate(id) {
                Some(tendril) => (id, tendril),
                None => return,
            },
            None => match self.admit(now, key) {
                Some(admitted) => admitted,
                None => return,
            },
        };
        if let Some(slot) = live_slot_mut(&mut self.pages, id) {
            slot.received = true;
        }
        tendril.handle_datagram(now, data, truncated);
        self.settle(now, id, tendril);
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
            let Some(entry) = entry_at_mut(&mut self.pages, id) else {
                continue;
            };
            if entry.scheduled != Some(at) {
                continue;
            }
            entry.scheduled = None;
            if let PeerState::Parked(parked) = &entry.peer {
                // The heap entry is from an earlier datagram; a parked peer's only deadline is
                // its idle timeout, so requeue it without unparking if it heard from the peer since.
                if let Some(deadline) = parked.idle_deadline(&self.peer_config) {
                    if deadline > now {
                        entry.schedule(&mut self.timers, id, deadline);
                        continue;
                    }
                }
            }
            if let Some(mut tendril) = self.activate(id) {
                tendril.handle_timeout(now);
                self.settle(now, id, tendril);
            }
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

    fn find(&self, key: &Key) -> Option<ConnId> {
        let hash = hash_key(&self.hasher, key);
        let pages = &self.pages;
        let index = *self.table.find(hash, |&i| {
            slot_at(pages, i)
                .and_then(|slot| slot.entry.as_ref())
                .is_some_and(|entry| entry.key.matches(key))
        })?;
        let generation = slot_at(pages, index)?.generation;
        Some(ConnId { index, generation })
    }

    /// The spare tendril (or a new one), and whether it is clean.
    fn take_spare(&mut self) -> (Box<Tendril<In, Out>>, bool) {
        self.spare
            .take()
            .unwrap_or_else(|| (Box::new(Tendril::spare(self.proto)), false))
    }

    /// Keep `tendril` as the spare; `clean`: `park` just emptied it.
    fn keep_spare(&mut self, tendril: Box<Tendril<In, Out>>, clean: bool) {
        if self.spare.is_none() {
            self.spare = Some((tendril, clean));
        }
    }

    /// Take a peer's tendril out of its entry to work on it (unparking a parked one); hand it
    /// back with [`settle`](Self::settle).
    fn activate(&mut self, id: ConnId) -> Option<Box<Tendril<In, Out>>> {
        let entry = entry_at_mut(&mut self.pages, id)?;
        match core::mem::replace(&mut entry.peer, PeerState::Busy) {
            PeerState::Live(tendril) => Some(tendril),
            PeerState::Parked(parked) => {
                let (mut tendril, clean) = self.take_spare();
                let key = &entry_at(&self.pages, id)?.key;
                let (local, remote) = (key.local(), key.remote());
                tendril.unpark(parked, local, remote, &self.peer_config, clean);
                Some(tendril)
            }
            PeerState::Busy => None,
        }
    }

    /// A new peer's tendril at `key`, with fresh framers, for the acceptor to see.
    fn newcomer(&mut self, now: Duration, key: &Key) -> Box<Tendril<In, Out>> {
        let (recv, send) = (self.framers)();
        let (mut tendril, clean) = self.take_spare();
        tendril.unpark(
            Parked::new(recv, send, now),
            key.0.clone(),
            key.1.clone(),
            &self.peer_config,
            clean,
        );
        tendril
    }

    /// A datagram from an unknown peer: ask the acceptor, within the table's limits.
    fn admit(&mut self, now: Duration, key: Key) -> Option<(ConnId, Box<Tendril<In, Out>>)> {
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
        let mut tendril = self.newcomer(now, &key);
        match (self.acceptor)(&mut tendril) {
            Ok(app) => {
                let remote = key.1.clone();
                let id = self.insert(key, app);
                self.events.push_back(TrackerEvent::Accepted { id, remote });
                Some((id, tendril))
            }
            Err(reason) => {
                self.keep_spare(tendril, false);
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

    /// A new entry for `key`, its tendril taken out (to be handed back with `settle`).
    fn insert(&mut self, key: Key, app: A) -> ConnId {
        let hash = hash_key(&self.hasher, &key);
        let entry = Entry {
            key: StoredKey::new(key),
            peer: PeerState::Busy,
            app,
            scheduled: None,
        };
        let id = match self.free.pop() {
            Some(index) => {
                let page = &mut self.pages[index as usize / PAGE];
                let slot = &mut page[index as usize % PAGE];
                slot.entry = Some(entry);
                slot.received = false;
                slot.sent = false;
                ConnId {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                if self.pages.last().is_none_or(|page| page.len() == PAGE) {
                    self.pages.push(Vec::with_capacity(PAGE));
                }
                let pages = self.pages.len() - 1;
                let page = &mut self.pages[pages];
                page.push(Slot {
                    generation: 0,
                    received: false,
                    sent: false,
                    entry: Some(entry),
                });
                ConnId {
                    index: (pages * PAGE + page.len() - 1) as u32,
                    generation: 0,
                }
            }
        };
        self.live += 1;
        let (hasher, pages) = (&self.hasher, &self.pages);
        self.table.insert_unique(hash, id.index, |&i| {
            slot_at(pages, i)
                .and_then(|slot| slot.entry.as_ref())
                .map_or(0, |entry| entry.key.hash(hasher))
        });
        self.unestablished.push_back(id);
        if self.unestablished.len() > 2 * self.live + 64 {
            // Peers that closed or established since they were queued: drop them, so the queue
            // stays proportional to the table however many peers come and go.
            let pages = &self.pages;
            self.unestablished.retain(|&id| unestablished_at(pages, id));
        }
        id
    }

    /// Evict the oldest peer that has not exchanged traffic both ways. `false` if there is none.
    fn evict_one(&mut self, now: Duration) -> bool {
        while let Some(id) = self.unestablished.pop_front() {
            if unestablished_at(&self.pages, id) {
                self.close_entry(now, id, CloseReason::Evicted);
                return true;
            }
        }
        false
    }

    fn close_entry(&mut self, now: Duration, id: ConnId, reason: CloseReason) {
        if let Some(mut tendril) = self.activate(id) {
            tendril.fail(reason);
            self.settle(now, id, tendril);
        }
    }

    /// After anything touched a peer: deliver its frames and events, collect its datagrams,
    /// finish a close, remove it once closed, queue its next deadline, and put its tendril back
    /// (parked if it is quiescent).
    fn settle(&mut self, now: Duration, id: ConnId, mut tendril: Box<Tendril<In, Out>>) {
        let Some(slot) = live_slot_mut(&mut self.pages, id) else {
            self.keep_spare(tendril, false);
            return;
        };
        let Some(entry) = slot.entry.as_mut() else {
            return;
        };
        tendril.dispatch(&mut entry.app);
        let mut sent = false;
        while let Some(data) = tendril.poll_datagram() {
            sent = true;
            self.transmits.push_back(Transmit {
                local: tendril.local_addr().clone(),
                remote: tendril.remote_addr().clone(),
                data,
            });
        }
        slot.sent |= sent;
        if tendril.wants_shutdown() {
            tendril.handle_shutdown(now);
            tendril.dispatch(&mut entry.app);
        }
        if tendril.is_closed() {
            self.remove(id);
            self.keep_spare(tendril, false);
            return;
        }
        if let Some(at) = tendril.poll_timeout() {
            entry.schedule(&mut self.timers, id, at);
        }
        if tendril.can_park(&self.peer_config) {
            entry.peer = PeerState::Parked(tendril.park());
            self.keep_spare(tendril, true);
        } else {
            entry.peer = PeerState::Live(tendril);
        }
    }

    fn remove(&mut self, id: ConnId) {
        let Some(slot) = slot_at_mut(&mut self.pages, id.index) else {
            return;
        };
        let Some(entry) = slot.entry.take() else {
            return;
        };
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        let hash = entry.key.hash(&self.hasher);
        if let Ok(found) = self.table.find_entry(hash, |&i| i == id.index) {
            found.remove();
        }
        self.events.push_back(TrackerEvent::Closed {
            id,
            remote: entry.key.remote(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AppError, Framer, Identity};
    use core::net::SocketAddr;

    /// Echoes; `timer` and `pause` ask it to keep state of its own (a timer, paused delivery).
    #[derive(Default)]
    struct Peer {
        frames: usize,
        timers: usize,
    }

    impl Application for Peer {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            self.frames += 1;
            match &frame[..] {
                b"timer" => t.set_timer(Some(t.now() + Duration::from_secs(1))),
                b"pause" => t.pause_recv(true),
                _ => {}
            }
            t.send_frame(frame)?;
            Ok(())
        }

        fn timer(&mut self, t: &mut Tendril) {
            self.timers += 1;
            let _ = t.send_frame(Bytes::from_static(b"tick"));
        }
    }

    fn tracker(config: TrackerConfig) -> Tracker<Bytes, Bytes, Peer> {
        Tracker::new(
            Proto::UDP,
            config,
            || (Identity::new().boxed(), Identity::new().boxed()),
            |_: &mut Tendril| Ok(Peer::default()),
        )
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn is_parked(tracker: &Tracker<Bytes, Bytes, Peer>, id: ConnId) -> bool {
        entry_at(&tracker.pages, id).is_some_and(|e| matches!(e.peer, PeerState::Parked(_)))
    }

    fn replies(tracker: &mut Tracker<Bytes, Bytes, Peer>) -> Vec<Bytes> {
        core::iter::from_fn(|| tracker.poll_transmit())
            .map(|t| t.data)
            .collect()
    }

    #[test]
    fn a_peer_is_parked_between_datagrams_and_live_while_it_has_state() {
        let mut tracker = tracker(TrackerConfig::default());
        let (local, remote) = (addr(53), addr(4000));
        let t0 = Duration::from_secs(10);
        tracker.handle_datagram(t0, local, remote, b"hello", false);
        let id = tracker.lookup(&local.into(), &remote.into()).unwrap();
        assert!(is_parked(&tracker, id));
        assert_eq!(replies(&mut tracker), ["hello"]);

        // A timer is state of its own: the peer stays whole until the timer has fired.
        tracker.handle_datagram(t0, local, remote, b"timer", false);
        assert!(!is_parked(&tracker, id));
        assert_eq!(tracker.poll_timeout(), Some(t0 + Duration::from_secs(1)));
        tracker.handle_timeout(t0 + Duration::from_secs(1));
        assert_eq!(replies(&mut tracker), ["timer", "tick"]);
        assert!(is_parked(&tracker, id), "parked again once quiescent");
        assert_eq!(tracker.with(t0, id, |_, app| app.timers), Some(1));

        // Paused delivery keeps the next datagram buffered; resuming delivers it.
        tracker.handle_datagram(t0, local, remote, b"pause", false);
        tracker.handle_datagram(t0, local, remote, b"later", false);
        assert!(!is_parked(&tracker, id));
        assert_eq!(replies(&mut tracker), ["pause"]);
        tracker.with(t0, id, |t, _| t.pause_recv(false));
        assert_eq!(replies(&mut tracker), ["later"]);
        assert!(is_parked(&tracker, id));

        let peer = tracker.get(id).unwrap();
        assert_eq!(peer.stats().frames_received, 4);
        assert_eq!(peer.remote_addr(), &Addr::from(remote));
        assert_eq!(tracker.with(t0, id, |_, app| app.frames), Some(4));

        // A parked peer idles out at its last receive plus the idle timeout, not earlier.
        let idle = TrackerConfig::default().idle_timeout;
        tracker.handle_timeout(t0 + idle - Duration::from_millis(1));
        assert_eq!(tracker.len(), 1);
        tracker.handle_timeout(t0 + idle);
        assert!(tracker.is_empty());
    }

    #[test]
    fn a_slot_fills_two_cache_lines() {
        struct Stateless;
        impl Application for Stateless {
            fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
                Ok(())
            }
        }
        assert_eq!(core::mem::size_of::<Slot<Bytes, Bytes, Stateless>>(), 128);
        assert_eq!(core::mem::size_of::<Slot<Bytes, Bytes, u64>>(), 128);
        assert_eq!(core::mem::size_of::<StoredKey>(), 16);
    }

    #[test]
    fn keys_other_than_ipv4_pairs_are_stored_boxed_and_found() {
        let mut tracker = tracker(TrackerConfig::default());
        let v6: SocketAddr = "[::1]:53".parse().unwrap();
        let peers: [SocketAddr; 3] = [
            "[2001:db8::1]:4000".parse().unwrap(),
            "[::ffff:192.0.2.1]:4000".parse().unwrap(),
            "192.0.2.1:4000".parse().unwrap(),
        ];
        for peer in peers {
            tracker.handle_datagram(Duration::ZERO, v6, peer, b"x", false);
        }
        tracker.handle_datagram(Duration::ZERO, addr(53), peers[2], b"x", false);
        // The IPv4-mapped peer and the plain IPv4 one are the same peer on the IPv6 socket.
        assert_eq!(tracker.len(), 3);
        for (local, peer) in [(v6, peers[0]), (v6, peers[2]), (addr(53), peers[2])] {
            let id = tracker.lookup(&local.into(), &peer.into()).unwrap();
            let found = tracker.get(id).unwrap();
            assert_eq!(found.local_addr(), &Addr::from(local));
            assert_eq!(found.remote_addr(), &Addr::from(peer));
        }
        let to: Vec<Addr> = core::iter::from_fn(|| tracker.poll_transmit())
            .map(|t| t.remote)
            .collect();
        assert_eq!(to.len(), 4);
        assert_eq!(
            to[1],
            Addr::from(peers[2]),
            "replies go to the canonical address"
        );
    }

    #[test]
    fn a_batch_is_handled_as_one_by_one() {
        // A batch that admits a peer and then hears from it again, and closes a peer ("close"
        // is its last datagram) and then hears from it as a new one, must come out as if
        // handled datagram by datagram.
        struct Closer;
        impl Application for Closer {
            fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
                let close = &frame[..] == b"close";
                t.send_frame(frame)?;
                if close {
                    t.close();
                }
                Ok(())
            }
        }
        let make = || {
            let mut t = Tracker::new(
                Proto::UDP,
                TrackerConfig {
                    max_peers: 20_000,
                    ..TrackerConfig::default()
                },
                || (Identity::new().boxed(), Identity::new().boxed()),
                |_: &mut Tendril| Ok(Closer),
            );
            for port in 0..100u16 {
                t.handle_datagram(Duration::ZERO, addr(53), addr(10_000 + port), b"hi", false);
            }
            while t.poll_transmit().is_some() {}
            while t.poll_event().is_some() {}
            t
        };
        let (new, old) = (addr(5), addr(10_007));
        let batch = [
            Datagram::new(addr(53), new, b"a"),
            Datagram::new(addr(53), old, b"b"),
            Datagram::new(addr(53), new, b"close"),
            Datagram::new(addr(53), old, b"close"),
            Datagram::new(addr(53), new, b"c"),
            Datagram::new(addr(53), old, b"d"),
            Datagram::new(addr(53), addr(10_008), b"e").truncated(true),
        ];
        let outcome = |t: &mut Tracker<Bytes, Bytes, Closer>| {
            let sent: Vec<(Addr, Bytes)> = core::iter::from_fn(|| t.poll_transmit())
                .map(|x| (x.remote, x.data))
                .collect();
            let events: Vec<TrackerEvent> = core::iter::from_fn(|| t.poll_event()).collect();
            (sent, events, t.len())
        };
        let mut batched = make();
        batched.handle_datagrams(Duration::ZERO, batch.iter().cloned());
        let mut single = make();
        for d in &batch {
            single.handle_datagram(
                Duration::ZERO,
                d.local.clone(),
                d.remote.clone(),
                d.data,
                d.truncated,
            );
        }
        let (sent, events, len) = outcome(&mut batched);
        assert_eq!((sent.clone(), events, len), outcome(&mut single));
        assert_eq!(
            sent.len(),
            6,
            "everything but the truncated datagram is echoed: {sent:?}"
        );
    }

    #[test]
    fn the_queue_of_unestablished_peers_stays_proportional_to_the_table() {
        let mut tracker = tracker(TrackerConfig {
            idle_timeout: Duration::from_secs(1),
            ..TrackerConfig::default()
        });
        for round in 0..100u64 {
            let now = Duration::from_secs(round * 2);
            for port in 0..100 {
                let remote = addr(1000 + (round * 100 + port) as u16 % 60_000);
                tracker.handle_datagram(now, addr(53), remote, b"x", false);
            }
            tracker.handle_timeout(now + Duration::from_secs(1));
            assert!(tracker.is_empty());
        }
        // 10,000 peers came and went; the queue holds at most a few table's worth of handles.
        assert!(tracker.unestablished.len() <= 2 * 100 + 64 + 1);
    }
}
