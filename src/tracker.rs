//! Connection tracking for datagram protocols: the table that makes connections out of
//! datagrams.

use alloc::boxed::Box;
use alloc::collections::{BinaryHeap, VecDeque};
use alloc::vec::Vec;
use bytes::Bytes;
use core::cmp::Reverse;
use core::fmt;
use core::hash::{BuildHasher, Hash, Hasher};
use core::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use core::time::Duration;
use hashbrown::{DefaultHashBuilder, HashMap};

use crate::connection::{Parked, Stats};
use crate::time::{from_nanos, nanos, Nanos};

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
    /// The framers the factory makes keep no state from one datagram to the next, as every
    /// built-in framer does (a receive framer is reset after each datagram; the built-in send
    /// framers keep nothing). Then idle peers share one pair of framers, made once, instead of
    /// each holding its own: 16-64 bytes and one cache miss less per peer and datagram. A peer
    /// whose acceptor or application replaces a framer, or that keeps state between datagrams
    /// (see [`Tracker`]), gets framers of its own. Default `false`: a framer of your own that
    /// counts or remembers across datagrams would see every peer's datagrams.
    pub stateless_framers: bool,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        TrackerConfig {
            idle_timeout: Duration::from_secs(60),
            max_peers: 65_536,
            reject_ttl: Duration::from_secs(10),
            max_rejected: 65_536,
            connection: Config::default(),
            stateless_framers: false,
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

/// Slots per page of the slot table. Full pages never move, so the table grows without copying
/// the peers it holds (only the last page grows in place, by doubling, up to this size). Big
/// enough that the page directory stays in cache (25 pages at 100k peers).
const PAGE: usize = 4096;

/// What a slot keeps of its peer besides the first cache line.
enum Peer<In, Out> {
    /// Parked with framers of its own.
    Framers(BoxFramer<In>, BoxFramer<Out>),
    /// `Some`: a peer with state of its own (bytes buffered or queued, a layer, a timer, its own
    /// configuration, closing). `None`: nothing here — the slot is vacant, its peer is parked on
    /// the tracker's shared framers ([`Slot::shared`]), or a call has taken the peer out (busy).
    Tendril(Option<Box<Tendril<In, Out>>>),
}

/// One peer. Aligned to a cache line, and laid out so that a datagram from a parked peer on
/// the shared framers, with a zero-sized application, touches the first line only: key,
/// counters, last receive and flags. A slot with a small application (up to 8 bytes) fills
/// exactly two lines.
#[repr(C, align(64))]
struct Slot<In, Out, A> {
    /// (local, remote), canonical: the table's key, stored once.
    key: StoredKey,
    /// The counters of a parked peer (a live one keeps them in its tendril).
    stats: Stats,
    /// A parked peer's last receive, in nanoseconds; `u64::MAX` before its first settle.
    last_received: u64,
    generation: u32,
    /// The peer has sent a datagram / been sent one (both: established).
    received: bool,
    sent: bool,
    /// Parked on the tracker's shared framers (`TrackerConfig::stateless_framers`).
    shared: bool,
    /// `Some` while the slot holds a peer.
    app: Option<A>,
    peer: Peer<In, Out>,
    /// The deadline this peer is queued under in the timer heap.
    scheduled: Option<Duration>,
}

impl<In, Out, A> Slot<In, Out, A> {
    /// Make sure the timer heap wakes this peer (`id`) by `at`. The heap is lazy: a peer already
    /// queued earlier stays queued, and a stale heap entry is skipped when it fires.
    fn schedule(&mut self, timers: &mut Timers, id: ConnId, at: Duration) {
        let at = from_nanos(nanos(at));
        if self.scheduled.is_none_or(|s| at < s) {
            self.scheduled = Some(at);
            timers.push(Reverse((nanos(at), id)));
        }
    }

    /// Parked (on shared framers or its own): its only deadline is the idle timeout.
    fn is_parked(&self) -> bool {
        self.shared || matches!(self.peer, Peer::Framers(..))
    }
}

/// A peer's tendril while a call works on it; `shared`: it runs on the tracker's shared framers.
struct Active<In, Out> {
    tendril: Box<Tendril<In, Out>>,
    shared: bool,
}

/// The tendril parked peers are unparked into: `clean`, `park` left it so (nothing to reset);
/// `shared`, it holds the tracker's shared framers.
struct Spare<In, Out> {
    tendril: Box<Tendril<In, Out>>,
    clean: bool,
    shared: bool,
}

type Key = (Addr, Addr);

/// Deadlines of peers in nanoseconds, earliest first.
type Timers = BinaryHeap<Reverse<(u64, ConnId)>>;

/// A key as a slot stores it: an IPv4 pair in 12 bytes, anything else boxed, so the slot's
/// first cache line holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredKey {
    V4(SocketAddrV4, SocketAddrV4),
    Other(Box<Key>),
}

impl StoredKey {
    /// What a vacant slot holds.
    const VACANT: StoredKey = StoredKey::V4(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
    );

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

    /// `true` if this is the IPv4 key (`local`, `remote`).
    #[inline(always)]
    fn is_v4(&self, local: &SocketAddrV4, remote: &SocketAddrV4) -> bool {
        matches!(self, StoredKey::V4(l, r) if l == local && r == remote)
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

    /// The IPv4 pair, if it is one.
    #[inline(always)]
    fn v4(&self) -> Option<(SocketAddrV4, SocketAddrV4)> {
        match self {
            StoredKey::V4(local, remote) => Some((*local, *remote)),
            StoredKey::Other(_) => None,
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

/// An IPv4 key, the usual one, in one word: the remote's 48 bits with the local's rotated over
/// them. For one local address this is one-to-one in the remote (what a peer controls), so peers
/// cannot pick colliding words; the keyed hash does the rest.
#[inline(always)]
fn v4_word(local: &SocketAddrV4, remote: &SocketAddrV4) -> u64 {
    let word = |a: &SocketAddrV4| u64::from(a.ip().to_bits()) << 16 | u64::from(a.port());
    word(remote) ^ word(local).rotate_left(40)
}

/// The hash of an IPv4 key: [`spread`] over the keyed hash of its word.
#[inline(always)]
fn hash_v4(hasher: &DefaultHashBuilder, local: &SocketAddrV4, remote: &SocketAddrV4) -> u64 {
    spread(hasher.hash_one(v4_word(local, remote)))
}

/// A second, fixed round over the keyed hash of one word. That hash is a single folded
/// multiply, which maps structured keys (consecutive addresses and ports, as subnets and NAT
/// pools give) onto a lattice: for most seeds that spreads them better than random, but for a
/// few percent it piles them into long probe runs (the 100k-peer bench saw 22 extra probes per
/// lookup with one seed; a simulation of 150 seeds found two above 10, one above 100). A
/// multiply of the whole keyed word spreads them as a random function would for every seed, for
/// a few instructions.
#[inline(always)]
fn spread(keyed: u64) -> u64 {
    // Odd constants with their bits spread over the word (digits of pi).
    let product = u128::from(keyed ^ 0x243f_6a88_85a3_08d3) * u128::from(0x9319_8a2e_0370_7345u64);
    product as u64 ^ (product >> 64) as u64
}

/// The hash of a key: IP addresses as one or two words each rather than field by field (the
/// derived `Hash` of `SocketAddr`), as this runs for every datagram.
#[inline(always)]
fn hash_key(hasher: &DefaultHashBuilder, (local, remote): &Key) -> u64 {
    if let (Addr::Ip(SocketAddr::V4(l)), Addr::Ip(SocketAddr::V4(r))) = (local, remote) {
        return hash_v4(hasher, l, r);
    }
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

/// The hash table from keys to slot indexes: open addressing with linear probing, one `u64`
/// per bucket holding the upper half of the key's hash (which also picks the bucket) and the
/// slot index. A lookup reads one cache line of it (eight buckets) and goes to the slot only
/// when the 32 bits of hash match, so a datagram touches the table once, not twice as with
/// separate control bytes and buckets. Removal shifts the probe run back: no tombstones.
#[derive(Default)]
struct Index {
    buckets: Vec<u64>,
    len: usize,
}

impl Index {
    const EMPTY: u64 = u64::MAX;

    fn mask(&self) -> usize {
        self.buckets.len() - 1
    }

    /// The bucket an entry belongs in.
    fn home(&self, entry: u64) -> usize {
        (entry >> 32) as usize & self.mask()
    }

    /// The slot index whose entry has `hash` and for which `eq` holds.
    #[inline(always)]
    fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if self.buckets.is_empty() {
            return None;
        }
        let tag = hash >> 32;
        let mut i = self.home(hash);
        loop {
            let entry = self.buckets[i];
            if entry == Self::EMPTY {
                return None;
            }
            if entry >> 32 == tag && eq(entry as u32) {
                return Some(entry as u32);
            }
            i = (i + 1) & self.mask();
        }
    }

    fn insert(&mut self, hash: u64, slot: u32) {
        debug_assert!(slot != u32::MAX);
        if (self.len + 1) * 8 > self.buckets.len() * 7 {
            let buckets = (self.buckets.len() * 2).max(16);
            let old = core::mem::replace(&mut self.buckets, alloc::vec![Self::EMPTY; buckets]);
            for entry in old.into_iter().filter(|&e| e != Self::EMPTY) {
                self.place(entry);
            }
        }
        self.place((hash & !0xffff_ffff) | u64::from(slot));
        self.len += 1;
    }

    fn place(&mut self, entry: u64) {
        let mut i = self.home(entry);
        while self.buckets[i] != Self::EMPTY {
            i = (i + 1) & self.mask();
        }
        self.buckets[i] = entry;
    }

    fn remove(&mut self, hash: u64, slot: u32) {
        if self.buckets.is_empty() {
            return;
        }
        let wanted = (hash & !0xffff_ffff) | u64::from(slot);
        let mask = self.mask();
        let mut hole = self.home(wanted);
        loop {
            match self.buckets[hole] {
                Self::EMPTY => return,
                entry if entry == wanted => break,
                _ => hole = (hole + 1) & mask,
            }
        }
        self.len -= 1;
        // Move later entries of the run back into the hole, unless that would put one before
        // its home bucket.
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let entry = self.buckets[j];
            if entry == Self::EMPTY {
                break;
            }
            let home = self.home(entry);
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.buckets[hole] = entry;
                hole = j;
            }
        }
        self.buckets[hole] = Self::EMPTY;
    }
}

/// [`Addr::canonical`] of an address given away: the usual IPv4 one is moved, not cloned.
#[inline(always)]
fn canonical(addr: Addr) -> Addr {
    match addr {
        Addr::Ip(SocketAddr::V4(_)) => addr,
        other => other.canonical(),
    }
}

#[inline(always)]
fn slot_at<In, Out, A>(pages: &Pages<In, Out, A>, index: u32) -> Option<&Slot<In, Out, A>> {
    let index = index as usize;
    pages.get(index / PAGE)?.get(index % PAGE)
}

#[inline(always)]
fn slot_at_mut<In, Out, A>(
    pages: &mut Pages<In, Out, A>,
    index: u32,
) -> Option<&mut Slot<In, Out, A>> {
    let index = index as usize;
    pages.get_mut(index / PAGE)?.get_mut(index % PAGE)
}

/// The slot of `id` if it still holds that peer (same generation, not removed).
#[inline(always)]
fn live_slot<In, Out, A>(pages: &Pages<In, Out, A>, id: ConnId) -> Option<&Slot<In, Out, A>> {
    slot_at(pages, id.index).filter(|slot| slot.generation == id.generation && slot.app.is_some())
}

#[inline(always)]
fn live_slot_mut<In, Out, A>(
    pages: &mut Pages<In, Out, A>,
    id: ConnId,
) -> Option<&mut Slot<In, Out, A>> {
    slot_at_mut(pages, id.index)
        .filter(|slot| slot.generation == id.generation && slot.app.is_some())
}

/// `true` if `id` is tracked and has not exchanged datagrams both ways.
fn unestablished_at<In, Out, A>(pages: &Pages<In, Out, A>, id: ConnId) -> bool {
    live_slot(pages, id).is_some_and(|slot| !(slot.received && slot.sent))
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
/// An idle peer costs under 200 bytes: between datagrams the tracker keeps only its framers,
/// last-receive time and counters ("parked") in a 128-byte slot, and each datagram runs through
/// one reused [`Tendril`]. With [`TrackerConfig::stateless_framers`] parked peers share one pair
/// of framers that stays in that tendril, so a datagram touches one line of the hash table and
/// one of the slot (about 170 bytes per peer). A peer that keeps state of its own between
/// datagrams (buffered bytes, a timer, a layer, a configuration of its own) stays a whole
/// `Tendril` until it is quiescent again. Either way its application sees the same
/// `&mut Tendril`.
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
    /// Slot indexes, hashed by their peers' keys.
    index: Index,
    pages: Pages<In, Out, A>,
    free: Vec<u32>,
    live: usize,
    /// The tendril each parked peer is unparked into while a datagram (or a call) works on it.
    spare: Option<Spare<In, Out>>,
    /// The shared framers (`stateless_framers`) while the spare does not hold them.
    shared: Option<(BoxFramer<In>, BoxFramer<Out>)>,
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
            index: Index::default(),
            pages: Vec::new(),
            free: Vec::new(),
            live: 0,
            spare: None,
            shared: None,
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
                slot.app.as_ref().map(|_| ConnId {
                    index: i as u32,
                    generation: slot.generation,
                })
            })
    }

    /// A tracked peer's addresses and counters. To work on its connection use
    /// [`with`](Self::with).
    pub fn get(&self, id: ConnId) -> Option<TrackedPeer> {
        let slot = live_slot(&self.pages, id)?;
        let (stats, open) = match &slot.peer {
            _ if slot.is_parked() => (slot.stats, true),
            Peer::Tendril(Some(tendril)) => (tendril.stats(), tendril.is_open()),
            _ => (Stats::default(), false),
        };
        Some(TrackedPeer {
            local: slot.key.local(),
            remote: slot.key.remote(),
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
        let mut active = self.activate_cold(id)?;
        let Some(app) = live_slot_mut(&mut self.pages, id).and_then(|slot| slot.app.as_mut())
        else {
            self.drop_active(active);
            return None;
        };
        let result = f(&mut active.tendril, app);
        self.settle_cold(now, id, active, true);
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
        let mut active = self.newcomer(now, &key);
        let app = match acceptor(&mut active.tendril) {
            Ok(app) => app,
            Err(reason) => {
                self.drop_active(active);
                return Err(reason);
            }
        };
        if let Some(id) = self.find(&key) {
            self.close_entry(now, id, CloseReason::Evicted);
        }
        let id = self.insert(key, app);
        self.settle_cold(now, id, active, false);
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
        self.handle_between(now, local.into(), remote.into(), data, truncated);
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
        for d in batch {
            self.handle_between(now, d.local, d.remote, d.data, d.truncated);
        }
    }

    /// A datagram from `remote` to `local`: IPv4 pairs looked up as they are
    /// ([`handle_v4`](Self::handle_v4)), other addresses by their canonical key.
    #[inline(always)]
    fn handle_between(
        &mut self,
        now: Duration,
        local: Addr,
        remote: Addr,
        data: &[u8],
        truncated: bool,
    ) {
        match (local, remote) {
            (Addr::Ip(SocketAddr::V4(local)), Addr::Ip(SocketAddr::V4(remote))) => {
                self.handle_v4(now, local, remote, data, truncated)
            }
            (local, remote) => {
                let key = (canonical(local), canonical(remote));
                self.handle_keyed(now, key, data, truncated);
            }
        }
    }

    /// A datagram between IPv4 addresses, the usual key: looked up without making the
    /// `Addr`s of a [`Key`] (those only for a new peer).
    #[inline(always)]
    fn handle_v4(
        &mut self,
        now: Duration,
        local: SocketAddrV4,
        remote: SocketAddrV4,
        data: &[u8],
        truncated: bool,
    ) {
        match self.find_v4(&local, &remote) {
            Some(id) => self.handle_tracked(now, id, data, truncated),
            None => {
                let key = (Addr::Ip(local.into()), Addr::Ip(remote.into()));
                self.handle_new(now, key, data, truncated)
            }
        }
    }

    /// A datagram from `key` (canonical).
    fn handle_keyed(&mut self, now: Duration, key: Key, data: &[u8], truncated: bool) {
        match self.find(&key) {
            Some(id) => self.handle_tracked(now, id, data, truncated),
            None => self.handle_new(now, key, data, truncated),
        }
    }

    /// A datagram from the tracked peer `id`.
    #[inline(always)]
    fn handle_tracked(&mut self, now: Duration, id: ConnId, data: &[u8], truncated: bool) {
        if let Some(mut active) = self.activate(id) {
            active.tendril.handle_datagram(now, data, truncated);
            self.settle(now, id, active, true, true);
        }
    }

    /// A datagram from a peer not tracked (at canonical `key`).
    #[inline(never)]
    fn handle_new(&mut self, now: Duration, key: Key, data: &[u8], truncated: bool) {
        if let Some((id, mut active)) = self.admit(now, key) {
            active.tendril.handle_datagram(now, data, truncated);
            self.settle(now, id, active, false, true);
        }
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
        let timer = self.timers.peek().map(|Reverse((at, _))| from_nanos(*at));
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
            let at = from_nanos(at);
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(slot) = live_slot_mut(&mut self.pages, id) else {
                continue;
            };
            if slot.scheduled != Some(at) {
                continue;
            }
            slot.scheduled = None;
            if slot.is_parked() {
                // The heap entry is from an earlier datagram; a parked peer's only deadline is
                // its idle timeout, so requeue it without unparking if it heard from the peer since.
                let deadline = from_nanos(slot.last_received) + self.config.idle_timeout;
                if deadline > now {
                    slot.schedule(&mut self.timers, id, deadline);
                    continue;
                }
            }
            if let Some(mut active) = self.activate_cold(id) {
                active.tendril.handle_timeout(now);
                self.settle_cold(now, id, active, false);
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
        self.find_hashed(hash, |stored| stored.matches(key))
    }

    /// [`find`](Self::find) for an IPv4 key.
    #[inline(always)]
    fn find_v4(&self, local: &SocketAddrV4, remote: &SocketAddrV4) -> Option<ConnId> {
        let hash = hash_v4(&self.hasher, local, remote);
        self.find_hashed(hash, |stored| stored.is_v4(local, remote))
    }

    /// The peer whose key has `hash` and satisfies `matches`.
    #[inline(always)]
    fn find_hashed(&self, hash: u64, matches: impl Fn(&StoredKey) -> bool) -> Option<ConnId> {
        let pages = &self.pages;
        // The generation is read while the slot is at hand, not looked up again.
        let mut generation = 0;
        let index = self.index.find(hash, |i| match slot_at(pages, i) {
            Some(slot) if matches(&slot.key) => {
                generation = slot.generation;
                true
            }
            _ => false,
        })?;
        Some(ConnId { index, generation })
    }

    /// The spare tendril (or a new one).
    #[inline(always)]
    fn take_spare(&mut self) -> Spare<In, Out> {
        self.spare.take().unwrap_or_else(|| Spare {
            tendril: Box::new(Tendril::spare(self.proto)),
            clean: false,
            shared: false,
        })
    }

    /// A tendril holding the shared framers (made now if nobody holds them), and whether it
    /// is clean.
    #[inline(always)]
    fn shared_tendril(&mut self) -> (Box<Tendril<In, Out>>, bool) {
        let mut spare = self.take_spare();
        if !spare.shared {
            let (recv, send) = self.shared.take().unwrap_or_else(|| (self.framers)());
            spare.tendril.put_framers(recv, send);
        }
        (spare.tendril, spare.clean)
    }

    /// A tendril for a peer with framers of its own (the shared ones put aside), and whether
    /// it is clean.
    fn own_tendril(&mut self) -> (Box<Tendril<In, Out>>, bool) {
        let mut spare = self.take_spare();
        if spare.shared {
            let framers = spare.tendril.take_framers();
            self.shared.get_or_insert(framers);
        }
        (spare.tendril, spare.clean)
    }

    /// Keep `tendril` as the spare; `clean`: `park` (or a parked peer on the shared framers)
    /// just left it.
    #[inline(always)]
    fn keep_spare(&mut self, mut tendril: Box<Tendril<In, Out>>, clean: bool, shared: bool) {
        if self.spare.is_none() {
            self.spare = Some(Spare {
                tendril,
                clean,
                shared,
            });
        } else if shared && self.shared.is_none() {
            let (mut recv, mut send) = tendril.take_framers();
            recv.reset();
            send.reset();
            self.shared = Some((recv, send));
        }
    }

    /// A tendril taken out for a peer that is gone (or never came): keep it as the spare.
    fn drop_active(&mut self, active: Active<In, Out>) {
        let shared = active.shared && !active.tendril.framers_replaced();
        self.keep_spare(active.tendril, false, shared);
    }

    /// [`activate`](Self::activate) for the calls other than a datagram's, out of line.
    #[inline(never)]
    fn activate_cold(&mut self, id: ConnId) -> Option<Active<In, Out>> {
        self.activate(id)
    }

    /// [`settle`](Self::settle) for the calls other than a datagram's, out of line.
    #[inline(never)]
    fn settle_cold(&mut self, now: Duration, id: ConnId, active: Active<In, Out>, timed: bool) {
        self.settle(now, id, active, timed, false)
    }

    /// Take a peer's tendril out of its slot to work on it (unparking a parked one); hand it
    /// back with [`settle`](Self::settle).
    #[inline(always)]
    fn activate(&mut self, id: ConnId) -> Option<Active<In, Out>> {
        let slot = live_slot_mut(&mut self.pages, id)?;
        let last_received = Nanos::from_nanos(slot.last_received);
        if slot.shared {
            slot.shared = false;
            let (stats, v4) = (slot.stats, slot.key.v4());
            let (mut tendril, clean) = self.shared_tendril();
            tendril.visit(last_received, stats, &self.peer_config, clean);
            self.give_addrs(&mut tendril, id, v4);
            return Some(Active {
                tendril,
                shared: true,
            });
        }
        match core::mem::replace(&mut slot.peer, Peer::Tendril(None)) {
            Peer::Tendril(Some(tendril)) => Some(Active {
                tendril,
                shared: false,
            }),
            Peer::Tendril(None) => None,
            Peer::Framers(recv, send) => {
                let parked = Parked::from_parts(recv, send, last_received, slot.stats);
                let v4 = slot.key.v4();
                let (mut tendril, clean) = self.own_tendril();
                tendril.unpark(parked, &self.peer_config, clean);
                self.give_addrs(&mut tendril, id, v4);
                Some(Active {
                    tendril,
                    shared: false,
                })
            }
        }
    }

    /// Give `tendril` the addresses of `id`: `v4`, its key if that is an IPv4 pair (copied out
    /// of the slot before the spare was taken, so the slot is not looked up again); others are
    /// cloned from the slot.
    #[inline(always)]
    fn give_addrs(
        &self,
        tendril: &mut Tendril<In, Out>,
        id: ConnId,
        v4: Option<(SocketAddrV4, SocketAddrV4)>,
    ) {
        match v4 {
            Some((local, remote)) => tendril.set_addrs_v4(local, remote),
            None => {
                if let Some(slot) = slot_at(&self.pages, id.index) {
                    tendril.set_addrs(slot.key.local(), slot.key.remote());
                }
            }
        }
    }

    /// A new peer's tendril at `key`, with fresh (or the shared) framers, for the acceptor to
    /// see.
    fn newcomer(&mut self, now: Duration, key: &Key) -> Active<In, Out> {
        if self.config.stateless_framers {
            let (mut tendril, clean) = self.shared_tendril();
            tendril.visit(Nanos::new(now), Stats::default(), &self.peer_config, clean);
            tendril.set_addrs(key.0.clone(), key.1.clone());
            return Active {
                tendril,
                shared: true,
            };
        }
        let (recv, send) = (self.framers)();
        let (mut tendril, clean) = self.own_tendril();
        tendril.unpark(Parked::new(recv, send, now), &self.peer_config, clean);
        tendril.set_addrs(key.0.clone(), key.1.clone());
        Active {
            tendril,
            shared: false,
        }
    }

    /// A datagram from an unknown peer: ask the acceptor, within the table's limits.
    fn admit(&mut self, now: Duration, key: Key) -> Option<(ConnId, Active<In, Out>)> {
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
        let mut active = self.newcomer(now, &key);
        match (self.acceptor)(&mut active.tendril) {
            Ok(app) => {
                let remote = key.1.clone();
                let id = self.insert(key, app);
                self.events.push_back(TrackerEvent::Accepted { id, remote });
                Some((id, active))
            }
            Err(reason) => {
                self.drop_active(active);
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

    /// A new peer for `key`, its tendril taken out (to be handed back with `settle`).
    fn insert(&mut self, key: Key, app: A) -> ConnId {
        let hash = hash_key(&self.hasher, &key);
        let key = StoredKey::new(key);
        let id = match self.free.pop() {
            Some(index) => {
                let page = &mut self.pages[index as usize / PAGE];
                let slot = &mut page[index as usize % PAGE];
                slot.key = key;
                slot.stats = Stats::default();
                slot.last_received = u64::MAX;
                slot.received = false;
                slot.sent = false;
                slot.shared = false;
                slot.app = Some(app);
                slot.peer = Peer::Tendril(None);
                slot.scheduled = None;
                ConnId {
                    index,
                    generation: slot.generation,
                }
            }
            None => {
                if self.pages.last().is_none_or(|page| page.len() == PAGE) {
                    self.pages.push(Vec::new());
                }
                let pages = self.pages.len() - 1;
                let page = &mut self.pages[pages];
                page.push(Slot {
                    key,
                    stats: Stats::default(),
                    last_received: u64::MAX,
                    generation: 0,
                    received: false,
                    sent: false,
                    shared: false,
                    app: Some(app),
                    peer: Peer::Tendril(None),
                    scheduled: None,
                });
                let index = u32::try_from(pages * PAGE + page.len() - 1)
                    .ok()
                    .filter(|&i| i != u32::MAX)
                    .expect("fewer than 2^32 - 1 peers");
                ConnId {
                    index,
                    generation: 0,
                }
            }
        };
        self.live += 1;
        self.index.insert(hash, id.index);
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
        if let Some(mut active) = self.activate_cold(id) {
            active.tendril.fail(reason);
            self.settle_cold(now, id, active, true);
        }
    }

    /// After anything touched a peer: deliver its frames and events, collect its datagrams,
    /// finish a close, remove it once closed, queue its next deadline, and put its tendril back
    /// (parked if it is quiescent). `timed`: the peer's queued deadline still stands (it was not
    /// just taken off the heap, and the peer is not new). `received`: it was a datagram from
    /// the peer (marked here rather than before, so the slot is looked up once).
    #[inline(always)]
    fn settle(
        &mut self,
        now: Duration,
        id: ConnId,
        active: Active<In, Out>,
        timed: bool,
        received: bool,
    ) {
        let Active {
            mut tendril,
            shared,
        } = active;
        let Some(slot) = live_slot_mut(&mut self.pages, id) else {
            let shared = shared && !tendril.framers_replaced();
            self.keep_spare(tendril, false, shared);
            return;
        };
        slot.received |= received;
        let Some(app) = slot.app.as_mut() else {
            return;
        };
        tendril.dispatch(app);
        let mut sent = false;
        while let Some(data) = tendril.poll_datagram() {
            sent = true;
            // The tendril's addresses are the key's (nothing changes them): an IPv4 key makes
            // them without cloning an `Addr`.
            self.transmits.push_back(Transmit {
                local: slot.key.local(),
                remote: slot.key.remote(),
                data,
            });
        }
        slot.sent |= sent;
        if tendril.wants_shutdown() {
            tendril.handle_shutdown(now);
            if let Some(app) = slot.app.as_mut() {
                tendril.dispatch(app);
            }
        }
        let shared = shared && !tendril.framers_replaced();
        if tendril.is_closed() {
            self.remove(id);
            self.keep_spare(tendril, false, shared);
            return;
        }
        if !tendril.can_park(&self.peer_config) {
            if let Some(at) = tendril.poll_timeout() {
                slot.schedule(&mut self.timers, id, at);
            }
            slot.peer = Peer::Tendril(Some(tendril));
            return;
        }
        let (last_received, stats) = tendril.parked_state();
        let last_received = last_received.as_nanos();
        // A parked peer's only deadline is its idle timeout, which only moves later while time
        // does: the deadline queued for it stands (and the slot's second line is not touched).
        if !timed || last_received < slot.last_received {
            slot.schedule(
                &mut self.timers,
                id,
                from_nanos(last_received) + self.config.idle_timeout,
            );
        }
        slot.last_received = last_received;
        slot.stats = stats;
        if shared {
            slot.shared = true;
            self.keep_spare(tendril, true, true);
        } else {
            let (recv, send, _, _) = tendril.park().into_parts();
            slot.peer = Peer::Framers(recv, send);
            self.keep_spare(tendril, true, false);
        }
    }

    fn remove(&mut self, id: ConnId) {
        let Some(slot) = slot_at_mut(&mut self.pages, id.index) else {
            return;
        };
        if slot.app.take().is_none() {
            return;
        }
        let key = core::mem::replace(&mut slot.key, StoredKey::VACANT);
        slot.shared = false;
        slot.peer = Peer::Tendril(None);
        slot.scheduled = None;
        slot.generation = slot.generation.wrapping_add(1);
        self.free.push(id.index);
        self.live -= 1;
        self.index.remove(key.hash(&self.hasher), id.index);
        self.events.push_back(TrackerEvent::Closed {
            id,
            remote: key.remote(),
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

    fn is_parked<A: Application>(tracker: &Tracker<Bytes, Bytes, A>, id: ConnId) -> bool {
        live_slot(&tracker.pages, id).is_some_and(|slot| slot.is_parked())
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
    fn the_index_finds_what_it_holds_through_collisions_growth_and_removals() {
        // Hashes from a few values only, so runs of colliding entries form and wrap around the
        // end of the table; a removal in the middle of a run must leave the rest findable.
        let mut index = Index::default();
        let mut model: Vec<Option<u64>> = Vec::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let hash_of = |r: u64| ((r % 7) << 60) | ((r % 5) << 32) | (r % 3);
        for step in 0..20_000u32 {
            let r = next();
            if r % 3 != 0 || model.iter().all(Option::is_none) {
                let slot = model.len() as u32;
                let hash = hash_of(r);
                index.insert(hash, slot);
                model.push(Some(hash));
            } else {
                let live: Vec<usize> = (0..model.len()).filter(|&i| model[i].is_some()).collect();
                let victim = live[(r / 3) as usize % live.len()];
                index.remove(model[victim].take().unwrap(), victim as u32);
            }
            if step % 997 == 0 || step == 19_999 {
                for (slot, hash) in model.iter().enumerate() {
                    let found = hash.and_then(|h| index.find(h, |i| i == slot as u32));
                    assert_eq!(
                        found.is_some(),
                        hash.is_some(),
                        "slot {slot} at step {step}"
                    );
                }
                assert_eq!(index.len, model.iter().flatten().count());
            }
        }
    }

    #[test]
    fn structured_ipv4_keys_spread_over_the_index_whatever_the_seed() {
        // The keyed hash of one word is `fold(word ^ seed, multiplier)`; with this seed and
        // multiplier (found by simulation) it piles the bench's 100k peers (consecutive
        // addresses, 16 ports each) into probe runs ~100 long.
        let fold = |x: u64, y: u64| {
            let p = u128::from(x) * u128::from(y);
            p as u64 ^ (p >> 64) as u64
        };
        let keyed = |word: u64| fold(word ^ 0x27e9_e06f_59b4_4e92, 0x8c5c_715f_8c74_fc1f);
        let local = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 53);
        let words: Vec<u64> = (0..100_000u32)
            .map(|i| {
                let remote = SocketAddrV4::new(
                    Ipv4Addr::from(0x0a00_0000 + (i >> 4)),
                    4000 + (i & 15) as u16,
                );
                v4_word(&local, &remote)
            })
            .collect();
        // Mean distance of an entry from its home bucket: the probes a lookup takes beyond one.
        let displacement = |hash: &dyn Fn(u64) -> u64| {
            let mut index = Index::default();
            for (slot, &word) in words.iter().enumerate() {
                index.insert(hash(word), slot as u32);
            }
            let mask = index.mask();
            let total: usize = (0..index.buckets.len())
                .filter(|&i| index.buckets[i] != Index::EMPTY)
                .map(|i| i.wrapping_sub(index.home(index.buckets[i])) & mask)
                .sum();
            total as f64 / words.len() as f64
        };
        let clustered = displacement(&keyed);
        let spread = displacement(&|word| spread(keyed(word)));
        assert!(clustered > 10.0, "the seed clusters: {clustered}");
        // As random at this load (0.76): about 1.6.
        assert!(spread < 2.0, "spread: {spread}");
    }

    #[test]
    fn stateless_framers_are_made_once_and_a_peer_that_replaces_one_gets_its_own() {
        use crate::{LengthPrefixed, Line};
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;

        /// Echoes; "switch" makes this peer's receive framer a line framer.
        struct Switcher;
        impl Application for Switcher {
            fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
                if &frame[..] == b"switch" {
                    t.set_recv_framer(Line::lf());
                }
                t.send_frame(frame)?;
                Ok(())
            }
        }
        let run = |stateless: bool| {
            let made = Arc::new(AtomicUsize::new(0));
            let counter = made.clone();
            let mut tracker = Tracker::new(
                Proto::UDP,
                TrackerConfig {
                    stateless_framers: stateless,
                    ..TrackerConfig::default()
                },
                move || {
                    counter.fetch_add(1, Ordering::Relaxed);
                    (Identity::new().boxed(), LengthPrefixed::u8().boxed())
                },
                |_: &mut Tendril| Ok(Switcher),
            );
            let script: [(u16, &[u8]); 8] = [
                (1, b"a"),
                (2, b"b"),
                (1, b"switch"),
                (1, b"x\ny\n"),
                (2, b"c\nd\n"),
                (3, b"e"),
                (1, b"z\n"),
                (3, b"f\ng"),
            ];
            let mut sent = Vec::new();
            for (port, data) in script {
                tracker.handle_datagram(Duration::ZERO, addr(53), addr(port), data, false);
                sent.extend(
                    core::iter::from_fn(|| tracker.poll_transmit()).map(|t| (t.remote, t.data)),
                );
            }
            let ids: Vec<ConnId> = tracker.ids().collect();
            assert!(ids.iter().all(|&id| is_parked(&tracker, id)));
            let stats: Vec<Stats> = ids
                .iter()
                .map(|&id| tracker.get(id).unwrap().stats())
                .collect();
            (sent, stats, made.load(Ordering::Relaxed))
        };
        let (own, own_stats, own_made) = run(false);
        let (shared, shared_stats, shared_made) = run(true);
        assert_eq!(shared, own, "the same replies either way");
        assert_eq!(shared_stats, own_stats);
        assert_eq!(own_made, 3, "one pair per peer");
        // Once for the peers that share them; peer 1's receive framer became its own, and it
        // kept the shared send framer, so a second pair was made for the others.
        assert_eq!(shared_made, 2);
        // Peer 1 frames lines, the others whole datagrams.
        assert_eq!(shared[3].1, Bytes::from_static(b"\x01x"));
        assert_eq!(shared[5].1, Bytes::from_static(b"\x04c\nd\n"));
    }

    #[test]
    fn an_ipv4_peer_is_the_same_however_its_datagrams_reach_the_tracker() {
        // IPv4 pairs are looked up on their own path (no `Addr` key made): a peer first seen
        // through IPv4-mapped addresses (canonicalised on the general path) is found by it, one
        // by one and in batches, and the other way round.
        let mut tracker = tracker(TrackerConfig::default());
        let mapped = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let (local, a, b) = (addr(53), addr(4000), addr(4001));
        tracker.handle_datagram(
            Duration::ZERO,
            mapped("[::ffff:127.0.0.1]:53"),
            mapped("[::ffff:127.0.0.1]:4000"),
            b"1",
            false,
        );
        tracker.handle_datagram(Duration::ZERO, local, a, b"2", false);
        tracker.handle_datagram(Duration::ZERO, local, b, b"3", false);
        tracker.handle_datagrams(
            Duration::ZERO,
            [
                Datagram::new(local, a, b"4"),
                Datagram::new(mapped("[::ffff:127.0.0.1]:53"), v6_mapped(b), b"5"),
            ],
        );
        assert_eq!(tracker.len(), 2);
        let id = tracker.lookup(&local.into(), &a.into()).unwrap();
        assert_eq!(tracker.get(id).unwrap().stats().frames_received, 3);
        let id = tracker.lookup(&local.into(), &b.into()).unwrap();
        assert_eq!(tracker.get(id).unwrap().stats().frames_received, 2);
        assert_eq!(replies(&mut tracker), ["1", "2", "3", "4", "5"]);
    }

    #[test]
    fn the_application_sees_each_peers_addresses_whatever_the_peer_before() {
        // The spare tendril's addresses are overwritten in place for an IPv4 peer: after an
        // IPv6 peer, and the other way round, each peer's application sees its own.
        struct Whoami;
        impl Application for Whoami {
            fn recv_frame(&mut self, t: &mut Tendril, _: Bytes) -> Result<(), AppError> {
                let me = alloc::format!("{} {}", t.local_addr(), t.remote_addr());
                t.send_frame(Bytes::from(me))?;
                Ok(())
            }
        }
        for stateless_framers in [false, true] {
            let mut tracker = Tracker::new(
                Proto::UDP,
                TrackerConfig {
                    stateless_framers,
                    ..TrackerConfig::default()
                },
                || (Identity::new().boxed(), Identity::new().boxed()),
                |_: &mut Tendril| Ok(Whoami),
            );
            let v6 = |s: &str| -> SocketAddr { s.parse().unwrap() };
            let peers = [
                (addr(53), addr(4000)),
                (v6("[::1]:53"), v6("[2001:db8::1]:4000")),
                (addr(53), addr(4001)),
                (addr(53), addr(4000)),
                (v6("[::1]:53"), v6("[2001:db8::1]:4000")),
                (v6("[::1]:53"), v6("[2001:db8::2]:4000")),
                (addr(54), addr(4001)),
            ];
            for round in 0..2 {
                for (local, remote) in peers {
                    tracker.handle_datagram(Duration::ZERO, local, remote, b"?", false);
                    let reply = tracker.poll_transmit().unwrap();
                    let expected = alloc::format!("{local} {remote}");
                    assert_eq!(reply.data, expected.as_bytes(), "round {round}");
                    assert_eq!(reply.remote, Addr::from(remote));
                }
            }
            assert_eq!(tracker.len(), 5);
        }
    }

    /// `addr` as an IPv4-mapped IPv6 address.
    fn v6_mapped(addr: SocketAddr) -> SocketAddr {
        let SocketAddr::V4(v4) = addr else {
            return addr;
        };
        SocketAddr::from((v4.ip().to_ipv6_mapped(), v4.port()))
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
