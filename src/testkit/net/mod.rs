//! A seeded, faulty, simulated network: many connections and UDP sockets on virtual time.
//!
//! [`Net`] holds your [`Application`]s the way a driver would, but moves their bytes over an
//! in-memory network that misbehaves on purpose, decided by one seed:
//!
//! - **streams** split writes at random points ("short writes"), hand some of them to the
//!   reader one byte per read, delay them, reset connections mid-frame and hang up one end, as
//!   a process that exits would;
//! - **datagrams** are lost, duplicated and reordered on their way to a [`Tracker`];
//! - **time** is virtual: [`Net::run`] jumps straight to the next deadline, so an idle
//!   timeout of five minutes costs nothing to test.
//!
//! The [`Faults`] presets are [`perfect`](Faults::perfect), [`lossy`](Faults::lossy) and
//! [`hostile`](Faults::hostile). [`check`] runs a test over many seeds. When one fails, it
//! prints the seed, the last things that happened on the network (the [`Trace`]) and how to
//! replay that seed alone: `TENDRIL_SIM_SEED=<seed> cargo test <test>`.
//!
//! Every run checks the core's own promise as it goes: `closed` reaches an application exactly
//! once. What your protocol promises, your test asserts.
//!
//! # A bug hunt
//!
//! A server that treats every read as a whole command works on a perfect link. A few hostile
//! seeds show it is wrong:
//!
//! ```
//! use bytes::Bytes;
//! use std::net::SocketAddr;
//! use tendril_core::testkit::net::{check, Faults};
//! use tendril_core::{AppError, Application, Identity, Line, Proto, Tendril};
//!
//! /// Answers `PING\n` with `PONG\n`. The bug: it takes each read as one command.
//! struct Pong;
//! impl Application for Pong {
//!     fn recv_frame(&mut self, t: &mut Tendril, read: Bytes) -> Result<(), AppError> {
//!         for _ in read.split(|&b| b == b'\n').filter(|c| *c == b"PING") {
//!             t.send_frame(Bytes::from_static(b"PONG\n"))?;
//!         }
//!         Ok(())
//!     }
//! }
//! /// Counts the replies.
//! #[derive(Default)]
//! struct Client(usize);
//! impl Application for Client {
//!     fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
//!         self.0 += 1;
//!         Ok(())
//!     }
//! }
//!
//! let hunt = |faults: Faults| {
//!     std::panic::catch_unwind(|| {
//!         check(faults, 20, |net| {
//!             let addr: SocketAddr = "10.0.0.1:7".parse().unwrap();
//!             let raw = || Tendril::new(Proto::TCP, Identity::new(), Identity::new());
//!             let server = net.listen(addr, raw, |_| Ok(Pong));
//!             let mut client = Tendril::new(Proto::TCP, Line::lf(), Line::lf());
//!             for _ in 0..10 {
//!                 client.send_frame(Bytes::from_static(b"PING")).unwrap();
//!             }
//!             let link = net.connect(&server, client, Client::default());
//!             net.run();
//!             assert_eq!(net.get(link.client).1 .0, 10, "every PING gets its PONG");
//!         })
//!     })
//! };
//! assert!(hunt(Faults::perfect()).is_ok());
//! let report = hunt(Faults::lossy()).unwrap_err();
//! let report = report.downcast_ref::<String>().unwrap();
//! assert!(report.contains("every PING gets its PONG") && report.contains("TENDRIL_SIM_SEED="));
//! ```
//!
//! The fix is one line: `Line::lf()` as the server's receive framer, after which every seed
//! passes.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use bytes::Bytes;
use core::fmt;
use core::marker::PhantomData;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use core::time::Duration;

use crate::tracker::{Tracker, TrackerEvent};
use crate::{Application, Reject, Tendril};

mod check;
mod ends;
mod faults;
mod trace;

pub use check::{check, SEEDS_VAR, SEED_VAR};
pub use faults::{Faults, SimRng};
pub use trace::Trace;

use ends::{Accept, Acceptor, DatagramEnd, StreamEnd};
use trace::{Entry, SIDES};

/// The clock's step: [`Net::step`] advances virtual time by this much.
pub const TICK: Duration = Duration::from_millis(1);

/// The most bytes one direction of a stream holds in flight and unread, like a socket's send
/// and receive buffers together: past it, a writer's queue fills and back-pressure starts.
pub const WINDOW: usize = 256 * 1024;

/// A typed handle to something on a [`Net`]: a connection end `(Tendril<In, Out>, App)` or a
/// UDP socket's [`Tracker`]. Look it up with [`Net::get`] and [`Net::get_mut`].
pub struct Handle<T> {
    index: usize,
    _kind: PhantomData<fn() -> T>,
}

impl<T> Handle<T> {
    fn new(index: usize) -> Self {
        Handle {
            index,
            _kind: PhantomData,
        }
    }
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for Handle<T> {}

impl<T> fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.index)
    }
}

/// A listening address on a [`Net`], with what accepts connections on it; from
/// [`Net::listen`]. `S` is the server end's type, `(Tendril<In, Out>, App)`.
pub struct Listener<S> {
    index: usize,
    addr: SocketAddr,
    _kind: PhantomData<fn() -> S>,
}

impl<S> Listener<S> {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl<S> fmt::Debug for Listener<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Listener({})", self.addr)
    }
}

/// Both ends of one stream connection, from [`Net::connect`].
pub struct Link<C, S> {
    /// The connecting end.
    pub client: Handle<C>,
    /// The accepting end, or `None` if the listener's acceptor rejected the connection (the
    /// client then reads an EOF).
    pub server: Option<Handle<S>>,
}

impl<C, S> Clone for Link<C, S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C, S> Copy for Link<C, S> {}

impl<C, S> fmt::Debug for Link<C, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("client", &self.client)
            .field("server", &self.server)
            .finish()
    }
}

/// A seeded simulated network. See the [module docs](self) for streams and [`check`].
///
/// A UDP echo, asked from a bare address through a lossy network:
///
/// ```
/// use bytes::Bytes;
/// use std::net::SocketAddr;
/// use tendril_core::testkit::net::{Faults, Net};
/// use tendril_core::tracker::{Tracker, TrackerConfig};
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
/// let mut net = Net::new(42, Faults::lossy());
/// let (server, client): (SocketAddr, SocketAddr) =
///     ("10.0.0.1:7".parse().unwrap(), "192.0.2.1:4000".parse().unwrap());
/// let framers = || (Identity::new().boxed(), Identity::new().boxed());
/// let echo = |_: &mut Tendril| Ok(Echo);
/// let tracker = Tracker::new(Proto::UDP, TrackerConfig::default(), framers, echo);
/// let socket = net.udp(server, tracker);
/// for i in 0..100 {
///     net.send_datagram(client, server, format!("ping {i}"));
/// }
/// net.run(); // until the peer idles out of the table, on virtual time
/// let replies = net.inbox(client);
/// assert!(replies.len() > 70 && replies.len() < 100, "{} came back", replies.len());
/// assert!(net.get(socket).is_empty());
/// ```
pub struct Net {
    seed: u64,
    rng: SimRng,
    faults: Faults,
    now: Duration,
    nodes: Vec<Node>,
    links: Vec<LinkState>,
    listeners: Vec<Box<dyn Accept>>,
    /// Bound UDP addresses: the node of each socket.
    sockets: BTreeMap<SocketAddr, usize>,
    datagrams: Vec<InFlight>,
    /// Datagrams that reached an address with no socket, for [`Net::inbox`].
    inboxes: BTreeMap<SocketAddr, VecDeque<(SocketAddr, Bytes)>>,
    trace: Trace,
}

impl fmt::Debug for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Net")
            .field("seed", &self.seed)
            .field("now", &self.now)
            .field("faults", &self.faults)
            .field("links", &self.links.len())
            .field("sockets", &self.sockets.len())
            .finish_non_exhaustive()
    }
}

/// One thing on the network.
enum Node {
    Stream(StreamNode),
    Socket(SocketNode),
}

struct StreamNode {
    end: Box<dyn StreamEnd>,
    link: usize,
    /// 0 for the client, 1 for the server: also the index of the wire it writes to.
    side: usize,
    /// The reason it closed with, once it has.
    closed: Option<String>,
    /// Bytes in the last read handed to it.
    last_read: usize,
}

struct SocketNode {
    tracker: Box<dyn DatagramEnd>,
    addr: SocketAddr,
}

/// What travels on one direction of a stream.
enum Packet {
    Data(Bytes),
    Fin,
    Reset,
}

struct LinkState {
    /// The node of each end: client, server (none if the acceptor refused).
    ends: [Option<usize>; 2],
    /// In-flight packets from each end, with their arrival times; delivered in order.
    wires: [VecDeque<(Duration, Packet)>; 2],
    /// Data bytes on each wire, at most [`WINDOW`].
    in_flight: [usize; 2],
    fin_sent: [bool; 2],
    /// A reset or hang-up still to come: when, which end, and whether it is a reset.
    fault: Option<(Duration, usize, bool)>,
    /// Whether a reset or a hang-up happened.
    disrupted: bool,
}

impl LinkState {
    /// Put `packet` on the wire from `side`, to arrive at `at`, or later: a stream keeps its
    /// order, so nothing arrives before what was written earlier.
    fn send(&mut self, side: usize, at: Duration, packet: Packet) {
        let wire = &mut self.wires[side];
        let at = wire.back().map_or(at, |p| p.0.max(at));
        if let Packet::Data(data) = &packet {
            self.in_flight[side] += data.len();
        }
        wire.push_back((at, packet));
    }

    /// The end on `side` sends its FIN, if it has not yet (nor a reset instead).
    fn send_fin(&mut self, side: usize, now: Duration) {
        if !self.fin_sent[side] {
            self.fin_sent[side] = true;
            self.send(side, now, Packet::Fin);
        }
    }
}

struct InFlight {
    at: Duration,
    from: SocketAddr,
    to: SocketAddr,
    data: Bytes,
}

impl Net {
    /// An empty network whose every random choice comes from `seed`.
    pub fn new(seed: u64, faults: Faults) -> Self {
        Net {
            seed,
            rng: SimRng::new(seed),
            faults,
            now: Duration::ZERO,
            nodes: Vec::new(),
            links: Vec::new(),
            listeners: Vec::new(),
            sockets: BTreeMap::new(),
            datagrams: Vec::new(),
            inboxes: BTreeMap::new(),
            trace: Trace::default(),
        }
    }

    /// The seed. Derive anything else that must replay from it, such as
    /// [`testkit::tls::pair`](crate::testkit::tls::pair)`(net.seed())`.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The network's random numbers, for a test's own choices (so they replay with the seed).
    pub fn rng(&mut self) -> &mut SimRng {
        &mut self.rng
    }

    /// The faults it injects.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Change the faults from now on. A connection draws its reset or hang-up when it
    /// connects.
    pub fn faults_mut(&mut self) -> &mut Faults {
        &mut self.faults
    }

    /// Virtual time: zero at the start, passed to every call into a tendril or a tracker.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// What happened lately.
    pub fn trace(&self) -> &Trace {
        &self.trace
    }

    /// Add a line of your own to the trace.
    pub fn note(&mut self, line: impl Into<String>) {
        self.trace.note(self.now, line.into());
    }

    /// Accept stream connections on `addr`. Each one gets a tendril from `tendril` (its
    /// framers, config and layers), with its addresses set, then `acceptor` makes its
    /// application or rejects it, as a driver's acceptor does.
    pub fn listen<In, Out, A>(
        &mut self,
        addr: SocketAddr,
        tendril: impl FnMut() -> Tendril<In, Out> + 'static,
        acceptor: impl FnMut(&mut Tendril<In, Out>) -> Result<A, Reject> + 'static,
    ) -> Listener<(Tendril<In, Out>, A)>
    where
        In: 'static,
        Out: 'static,
        A: Application<In, Out> + 'static,
    {
        self.listeners
            .push(Box::new(Acceptor { tendril, acceptor }));
        Listener {
            index: self.listeners.len() - 1,
            addr,
            _kind: PhantomData,
        }
    }

    /// Connect `client` to `listener`, now. The client's tendril gets its addresses (a
    /// documentation address of the listener's family, a port of its own), then the
    /// listener's acceptor runs. Under [`Faults::resets`] and [`Faults::hang_ups`] the
    /// connection may draw a fault for later.
    pub fn connect<In, Out, A, S>(
        &mut self,
        listener: &Listener<S>,
        client: Tendril<In, Out>,
        app: A,
    ) -> Link<(Tendril<In, Out>, A), S>
    where
        In: 'static,
        Out: 'static,
        A: Application<In, Out> + 'static,
        S: 'static,
    {
        let link = self.links.len();
        let remote = listener.addr;
        let local = client_addr(remote.ip(), link);
        let client = client
            .with_addrs(local.into(), remote.into())
            .started_at(self.now);
        let client_node = self.add_stream(Box::new((client, app)), link, 0);
        let mut state = LinkState {
            ends: [Some(client_node), None],
            wires: [VecDeque::new(), VecDeque::new()],
            in_flight: [0; 2],
            fin_sent: [false; 2],
            fault: None,
            disrupted: false,
        };
        let accepted = self.listeners[listener.index].accept(self.now, remote, local);
        match accepted {
            Ok(server) => {
                state.ends[1] = Some(self.add_stream(server, link, 1));
                let line = format!("#{link} {local} → {remote} connected");
                self.trace.note(self.now, line);
            }
            Err(reason) => {
                let line = format!("#{link} {local} → {remote} rejected: {reason}");
                self.trace.note(self.now, line);
                state.send_fin(1, self.now);
            }
        }
        if state.ends[1].is_some() {
            let reset = self.rng.chance(self.faults.resets);
            let hang_up = !reset && self.rng.chance(self.faults.hang_ups);
            if reset || hang_up {
                let at = self.now + self.rng.up_to(self.faults.fault_window);
                let victim = self.rng.below(2) as usize;
                state.fault = Some((at, victim, reset));
            }
        }
        self.links.push(state);
        Link {
            client: Handle::new(client_node),
            server: self.links[link].ends[1].map(Handle::new),
        }
    }

    fn add_stream(&mut self, end: Box<dyn StreamEnd>, link: usize, side: usize) -> usize {
        self.nodes.push(Node::Stream(StreamNode {
            end,
            link,
            side,
            closed: None,
            last_read: 0,
        }));
        self.nodes.len() - 1
    }

    /// Bind a UDP socket at `local`, served by `tracker`. Datagrams sent to `local` reach
    /// it; what it transmits goes to the socket (or [`inbox`](Self::inbox)) at the reply's
    /// address.
    ///
    /// # Panics
    /// If a socket is already bound at `local`.
    pub fn udp<In, Out, A>(
        &mut self,
        local: SocketAddr,
        tracker: Tracker<In, Out, A>,
    ) -> Handle<Tracker<In, Out, A>>
    where
        In: 'static,
        Out: 'static,
        A: Application<In, Out> + 'static,
    {
        assert!(
            !self.sockets.contains_key(&local),
            "a UDP socket is already bound at {local}"
        );
        self.nodes.push(Node::Socket(SocketNode {
            tracker: Box::new(tracker),
            addr: local,
        }));
        self.sockets.insert(local, self.nodes.len() - 1);
        Handle::new(self.nodes.len() - 1)
    }

    /// Send a datagram from `from` (any address: a socket of the test's own) to `to`, through
    /// the network's loss, duplication and delay.
    pub fn send_datagram(&mut self, from: SocketAddr, to: SocketAddr, data: impl Into<Bytes>) {
        self.transmit(from, to, data.into());
    }

    /// Take the datagrams that arrived at `addr`, an address with no socket bound, each with its
    /// sender, oldest first.
    pub fn inbox(&mut self, addr: SocketAddr) -> Vec<(SocketAddr, Bytes)> {
        self.inboxes
            .remove(&addr)
            .map(Vec::from)
            .unwrap_or_default()
    }

    /// The connection end or tracker behind `handle`.
    ///
    /// # Panics
    /// If `handle` comes from another `Net`.
    pub fn get<T: 'static>(&self, handle: Handle<T>) -> &T {
        let any = match self.nodes.get(handle.index) {
            Some(Node::Stream(node)) => node.end.as_any(),
            Some(Node::Socket(node)) => node.tracker.as_any(),
            None => panic!("a handle from another Net"),
        };
        any.downcast_ref().expect("a handle from another Net")
    }

    /// The connection end or tracker behind `handle`, to send on, switch framers, close or
    /// connect out. The network picks up what changed on its next step.
    ///
    /// # Panics
    /// If `handle` comes from another `Net`.
    pub fn get_mut<T: 'static>(&mut self, handle: Handle<T>) -> &mut T {
        let any = match self.nodes.get_mut(handle.index) {
            Some(Node::Stream(node)) => node.end.as_any_mut(),
            Some(Node::Socket(node)) => node.tracker.as_any_mut(),
            None => panic!("a handle from another Net"),
        };
        any.downcast_mut().expect("a handle from another Net")
    }

    /// Why the connection end closed (the [`CloseReason`](crate::CloseReason)'s text), or `None` while it is open.
    pub fn close_reason<T>(&self, end: Handle<T>) -> Option<&str> {
        match self.nodes.get(end.index) {
            Some(Node::Stream(node)) => node.closed.as_deref(),
            _ => None,
        }
    }

    /// Bytes in the last read handed to the connection end (0 before the first). With its
    /// framer's longest frame, this bounds what its receive buffer may hold.
    pub fn last_read<T>(&self, end: Handle<T>) -> usize {
        match self.nodes.get(end.index) {
            Some(Node::Stream(node)) => node.last_read,
            _ => 0,
        }
    }

    /// Whether the connection of `end` was reset or hung up on by the network's faults.
    pub fn disrupted<T>(&self, end: Handle<T>) -> bool {
        match self.nodes.get(end.index) {
            Some(Node::Stream(node)) => self.links[node.link].disrupted,
            _ => false,
        }
    }

    /// Nothing is in flight and nothing is waiting to be sent: only deadlines are left.
    pub fn is_quiet(&self) -> bool {
        self.datagrams.is_empty()
            && self
                .links
                .iter()
                .all(|l| l.wires.iter().all(VecDeque::is_empty))
            && self.nodes.iter().all(|node| match node {
                Node::Stream(n) => {
                    n.end.is_closed() || (n.end.queued() == 0 && !n.end.wants_shutdown())
                }
                Node::Socket(_) => true,
            })
    }

    /// Advance virtual time by one [`TICK`] and do one round: dispatch, write, deliver what has
    /// arrived, fire due deadlines and faults.
    pub fn step(&mut self) {
        self.now += TICK;
        self.round();
    }

    /// Run until nothing is in flight and no deadline is left, jumping over idle time to the
    /// next deadline. A connection nobody closes and with no timeout stays open.
    ///
    /// # Panics
    /// If it never goes quiet (10 million rounds), with the trace in the message.
    pub fn run(&mut self) {
        self.run_until(Duration::MAX);
    }

    /// Run for `duration` of virtual time, or until nothing is left to do.
    pub fn run_for(&mut self, duration: Duration) {
        self.run_until(self.now.saturating_add(duration));
    }

    /// Run until virtual time `deadline`, or until nothing is left to do.
    pub fn run_until(&mut self, deadline: Duration) {
        for _ in 0..10_000_000u32 {
            self.round();
            let next = if self.can_move() {
                self.now + TICK
            } else {
                match self.next_event() {
                    Some(at) => at.max(self.now + TICK),
                    None => return,
                }
            };
            if next > deadline {
                self.now = self.now.max(deadline);
                return;
            }
            self.now = next;
        }
        panic!("the network never went quiet:\n{}", self.trace);
    }

    /// Something can happen without time passing: bytes to write into a wire with room, a FIN
    /// to send, an arrival its reader would take, a datagram due.
    fn can_move(&self) -> bool {
        let now = self.now;
        let streams = self.links.iter().any(|link| {
            (0..2).any(|side| {
                let writer = link.ends[side].map(|n| &self.stream(n).end);
                let writes = writer.is_some_and(|end| {
                    !end.is_closed()
                        && (end.queued() > 0 && link.in_flight[side] < WINDOW
                            || end.wants_shutdown() && !link.fin_sent[side])
                });
                let arrives = link.wires[side].front().is_some_and(|p| p.0 <= now)
                    && link.ends[1 - side].is_none_or(|n| {
                        let end = &self.stream(n).end;
                        end.is_closed() || end.wants_read()
                    });
                writes || arrives
            })
        });
        streams || self.datagrams.iter().any(|d| d.at <= now)
    }

    /// The earliest time something is due: an arrival, a tendril's or tracker's deadline, a
    /// scheduled fault. An arrival its reader will not take yet waits for the reader's own
    /// deadline instead.
    fn next_event(&self) -> Option<Duration> {
        let now = self.now;
        let arrivals = self
            .links
            .iter()
            .flat_map(|l| l.wires.iter().filter_map(|w| w.front().map(|p| p.0)))
            .filter(|&at| at > now)
            .chain(self.datagrams.iter().map(|d| d.at));
        let faults = self.links.iter().filter_map(|l| {
            let open = l
                .ends
                .iter()
                .flatten()
                .any(|&n| !self.stream(n).end.is_closed());
            l.fault.filter(|_| open).map(|f| f.0)
        });
        let timers = self.nodes.iter().filter_map(|node| match node {
            Node::Stream(n) => n.end.deadline(),
            Node::Socket(n) => n.tracker.deadline(),
        });
        arrivals.chain(faults).chain(timers).min()
    }

    fn stream(&self, index: usize) -> &StreamNode {
        match &self.nodes[index] {
            Node::Stream(node) => node,
            Node::Socket(_) => unreachable!("links hold stream nodes"),
        }
    }

    fn stream_mut(&mut self, index: usize) -> &mut StreamNode {
        match &mut self.nodes[index] {
            Node::Stream(node) => node,
            Node::Socket(_) => unreachable!("links hold stream nodes"),
        }
    }

    fn round(&mut self) {
        for link in 0..self.links.len() {
            self.fault(link);
            for side in 0..2 {
                self.write(link, side);
            }
            for side in 0..2 {
                self.deliver(link, side);
            }
        }
        self.datagram_round();
    }

    /// Fire the link's reset or hang-up if it is due.
    fn fault(&mut self, link: usize) {
        let Some((at, victim, reset)) = self.links[link].fault else {
            return;
        };
        if at > self.now {
            return;
        }
        self.links[link].fault = None;
        let Some(node) = self.links[link].ends[victim] else {
            return;
        };
        if self.stream(node).end.is_closed() {
            return;
        }
        let now = self.now;
        let what = if reset { "resets" } else { "hangs up" };
        self.trace
            .note(now, format!("#{link} {} {what}", SIDES[victim]));
        let state = &mut self.links[link];
        state.disrupted = true;
        if reset {
            // A reset socket sends nothing after it, not even the FIN its close would.
            state.fin_sent[victim] = true;
            state.send(victim, now, Packet::Reset);
        }
        // The abort closes the end; a hung-up end's FIN goes out as it closes.
        self.stream_mut(node).end.abort();
        self.dispatch(node);
    }

    /// One end's turn: dispatch, write part of its queue, send its FIN, fire its deadline.
    fn write(&mut self, link: usize, side: usize) {
        let Some(node) = self.links[link].ends[side] else {
            return;
        };
        let now = self.now;
        // Also when closed: an abort from outside still owes the application its `closed`.
        self.dispatch(node);
        if self.stream(node).end.is_closed() {
            return;
        }
        let room = WINDOW - self.links[link].in_flight[side];
        let queued = self.stream(node).end.queued().min(room);
        if queued > 0 && !self.stream(node).end.is_closed() {
            let n = if self.rng.chance(self.faults.short_writes) {
                1 + self.rng.below(queued as u64) as usize
            } else {
                queued
            };
            let data = self.stream_mut(node).end.take(n);
            let delay = self.rng.up_to(self.faults.max_delay);
            self.links[link].send(side, now + delay, Packet::Data(data));
        }
        if self.stream(node).end.wants_shutdown() && !self.links[link].fin_sent[side] {
            self.stream_mut(node).end.shutdown(now);
            self.links[link].send_fin(side, now);
        }
        if self.stream(node).end.deadline().is_some_and(|at| at <= now) {
            self.stream_mut(node).end.timeout(now);
        }
        self.dispatch(node);
    }

    /// Hand what has arrived on the wire from `side` to the other end, while it reads. An end
    /// that closed swallows what it is sent, as a kernel would.
    fn deliver(&mut self, link: usize, from: usize) {
        let now = self.now;
        let to = self.links[link].ends[1 - from];
        loop {
            let wire = &self.links[link].wires[from];
            let Some((at, _)) = wire.front() else {
                return;
            };
            if *at > now {
                return;
            }
            let reading = to.is_none_or(|n| {
                let end = &self.stream(n).end;
                end.is_closed() || end.wants_read()
            });
            if !reading {
                return;
            }
            let Some((_, packet)) = self.links[link].wires[from].pop_front() else {
                return;
            };
            if let Packet::Data(data) = &packet {
                self.links[link].in_flight[from] -= data.len();
            }
            let Some(node) = to else {
                continue;
            };
            if self.stream(node).end.is_closed() {
                continue;
            }
            let side = 1 - from;
            match packet {
                Packet::Data(data) => {
                    self.stream_mut(node).last_read = data.len();
                    let one_byte = self.rng.chance(self.faults.one_byte_reads);
                    self.trace
                        .push(now, Entry::read(link, side, &data, one_byte));
                    if one_byte {
                        for byte in data.chunks(1) {
                            self.stream_mut(node).end.deliver(now, byte);
                        }
                    } else {
                        self.stream_mut(node).end.deliver(now, &data);
                    }
                }
                Packet::Fin => {
                    self.trace.push(now, Entry::Eof { link, side });
                    self.stream_mut(node).end.eof(now);
                }
                Packet::Reset => {
                    self.trace.push(now, Entry::Reset { link, side });
                    self.stream_mut(node)
                        .end
                        .error(now, "connection reset by peer")
                }
            }
            self.dispatch(node);
        }
    }

    /// Deliver callbacks to the end's application, noting a close in the trace.
    fn dispatch(&mut self, index: usize) {
        let Node::Stream(node) = &mut self.nodes[index] else {
            return;
        };
        let mut closed = None;
        node.end.dispatch(&mut closed);
        if let Some(reason) = closed {
            let (link, side) = (node.link, node.side);
            assert!(
                node.closed.is_none(),
                "#{link} {} closed twice: {:?}, then {reason:?}",
                SIDES[side],
                node.closed
            );
            let line = format!("#{link} {} closed: {reason}", SIDES[side]);
            node.closed = Some(reason);
            self.trace.note(self.now, line);
            // The driver drops a closed connection's socket: its peer reads an EOF.
            self.links[link].send_fin(side, self.now);
        }
    }

    fn datagram_round(&mut self) {
        let now = self.now;
        // Deliver what is due, in a shuffled order.
        let mut due = Vec::new();
        let mut i = 0;
        while i < self.datagrams.len() {
            if self.datagrams[i].at <= now {
                due.push(self.datagrams.swap_remove(i));
            } else {
                i += 1;
            }
        }
        while !due.is_empty() {
            let pick = self.rng.below(due.len() as u64) as usize;
            let datagram = due.swap_remove(pick);
            let entry = Entry::datagram(datagram.from, datagram.to, &datagram.data);
            self.trace.push(now, entry);
            match self.sockets.get(&datagram.to) {
                Some(&index) => {
                    if let Node::Socket(node) = &mut self.nodes[index] {
                        let local = node.addr;
                        node.tracker
                            .receive(now, local, datagram.from, &datagram.data);
                    }
                }
                None => self
                    .inboxes
                    .entry(datagram.to)
                    .or_default()
                    .push_back((datagram.from, datagram.data)),
            }
        }
        for index in 0..self.nodes.len() {
            let Node::Socket(node) = &mut self.nodes[index] else {
                continue;
            };
            if node.tracker.deadline().is_some_and(|at| at <= now) {
                node.tracker.timeout(now);
            }
            let from = node.addr;
            let mut out = Vec::new();
            while let Some((to, data)) = node.tracker.poll_transmit() {
                out.push((to, data));
            }
            let mut events = Vec::new();
            while let Some(event) = node.tracker.poll_event() {
                events.push(match event {
                    TrackerEvent::Accepted { remote, .. } => {
                        format!("udp {from}: {remote} accepted")
                    }
                    TrackerEvent::Rejected { remote, reason } => {
                        format!("udp {from}: {remote} rejected: {}", reason.reason())
                    }
                    TrackerEvent::TableFull { remote } => {
                        format!("udp {from}: {remote} turned away, the table is full")
                    }
                    TrackerEvent::Closed { remote, .. } => format!("udp {from}: {remote} closed"),
                });
            }
            for line in events {
                self.trace.note(now, line);
            }
            for (to, data) in out {
                match to {
                    Some(to) => self.transmit(from, to, data),
                    None => self.trace.note(
                        now,
                        format!("udp {from}: a reply to a non-IP peer, dropped"),
                    ),
                }
            }
        }
    }

    /// Put a datagram on the network, through loss, duplication and delay.
    fn transmit(&mut self, from: SocketAddr, to: SocketAddr, data: Bytes) {
        let now = self.now;
        if self.rng.chance(self.faults.loss) {
            self.trace
                .note(now, format!("udp {from}→{to}: {} bytes lost", data.len()));
            return;
        }
        let copies = if self.rng.chance(self.faults.duplication) {
            self.trace.note(
                now,
                format!("udp {from}→{to}: {} bytes doubled", data.len()),
            );
            2
        } else {
            1
        };
        for _ in 0..copies {
            let at = now + self.rng.up_to(self.faults.max_delay);
            self.datagrams.push(InFlight {
                at,
                from,
                to,
                data: data.clone(),
            });
        }
    }
}

/// The client address of connection number `n`: a documentation address (RFC 5737, RFC 3849)
/// of the server's family, with a port of its own.
fn client_addr(server: IpAddr, n: usize) -> SocketAddr {
    let port = 49152 + (n % 16384) as u16;
    let host = (n / 16384) as u8;
    let ip = match server {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1 + host)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::new(
            0x2001,
            0xdb8,
            0,
            0,
            0,
            0,
            0,
            1 + u16::from(host),
        )),
    };
    SocketAddr::new(ip, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tracker::TrackerConfig;
    use crate::{AppError, Config, Framer, Identity, Line, Proto};
    use alloc::string::ToString;

    struct Echo;
    impl Application for Echo {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            t.send_frame(frame)?;
            Ok(())
        }
    }

    #[derive(Default)]
    struct Collect(Vec<Bytes>);
    impl Application for Collect {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            self.0.push(frame);
            Ok(())
        }
    }

    fn line() -> Tendril {
        Tendril::new(Proto::TCP, Line::lf(), Line::lf())
    }

    fn addr() -> SocketAddr {
        "10.0.0.1:7".parse().unwrap()
    }

    /// An echo of `frames` over `faults` with `seed`; the client's frames and the trace.
    fn echo(seed: u64, faults: Faults, frames: usize) -> (Vec<Bytes>, String) {
        let mut net = Net::new(seed, faults);
        let server = net.listen(addr(), line, |_| Ok(Echo));
        let mut client = line();
        for i in 0..frames {
            client
                .send_frame(Bytes::from(format!("frame {i}")))
                .unwrap();
        }
        let link = net.connect(&server, client, Collect::default());
        net.run();
        (net.get(link.client).1 .0.clone(), net.trace().to_string())
    }

    #[test]
    fn a_perfect_link_delivers_every_write_whole() {
        let (got, trace) = echo(1, Faults::perfect(), 50);
        assert_eq!(got.len(), 50);
        // One read each way: nothing split.
        assert_eq!(trace.matches("reads").count(), 2, "{trace}");
    }

    #[test]
    fn the_same_seed_replays_the_same_run_and_another_seed_does_not() {
        let (a, trace_a) = echo(7, Faults::hostile(), 40);
        let (b, trace_b) = echo(7, Faults::hostile(), 40);
        assert_eq!((a, &trace_a), (b, &trace_b));
        assert_ne!(trace_a, echo(8, Faults::hostile(), 40).1);
    }

    #[test]
    fn lossy_writes_are_split_but_arrive_in_order() {
        let (got, trace) = echo(3, Faults::lossy(), 200);
        let want: Vec<Bytes> = (0..200)
            .map(|i| Bytes::from(format!("frame {i}")))
            .collect();
        assert_eq!(got, want);
        assert!(trace.matches("reads").count() > 2, "{trace}");
    }

    #[test]
    fn idle_time_is_skipped_to_the_next_deadline() {
        let mut net = Net::new(0, Faults::perfect());
        let config = Config {
            idle_timeout: Some(Duration::from_secs(300)),
            ..Config::default()
        };
        let server = net.listen(addr(), move || line().with_config(config), |_| Ok(Echo));
        let link = net.connect(&server, line(), Collect::default());
        net.run();
        let server_end = link.server.unwrap();
        assert_eq!(net.close_reason(server_end), Some("idle timeout"));
        // The server's EOF closed the client too.
        assert_eq!(net.close_reason(link.client), Some("closed by the peer"));
        // Five minutes of virtual time, and the test took no time at all.
        assert!((Duration::from_secs(300)..Duration::from_secs(301)).contains(&net.now()));
    }

    #[test]
    fn a_reset_reaches_the_peer_as_an_error_and_a_hang_up_as_an_eof() {
        for (reset, reason) in [
            (true, "I/O error: connection reset by peer"),
            (false, "closed by the peer"),
        ] {
            let mut faults = Faults::perfect();
            (faults.resets, faults.hang_ups) = if reset { (100, 0) } else { (0, 100) };
            let mut net = Net::new(1, faults);
            let server = net.listen(addr(), line, |_| Ok(Collect::default()));
            let link = net.connect(&server, line(), Collect::default());
            net.run();
            // One end is the victim (it aborted); the other reads what it sent.
            let reasons = [
                net.close_reason(link.client),
                net.close_reason(link.server.unwrap()),
            ];
            assert!(reasons.contains(&Some("aborted")), "{reasons:?}");
            assert!(reasons.contains(&Some(reason)), "{reasons:?}");
        }
    }

    #[test]
    fn a_rejected_connection_reads_an_eof() {
        let mut net = Net::new(0, Faults::perfect());
        let server = net.listen(addr(), line, |_| Err::<Echo, _>(Reject::new("full")));
        let link = net.connect(&server, line(), Collect::default());
        assert!(link.server.is_none());
        net.run();
        assert_eq!(net.close_reason(link.client), Some("closed by the peer"));
        assert!(net
            .trace()
            .to_string()
            .contains("rejected: connection rejected: full"));
    }

    #[test]
    fn a_reader_that_stops_fills_the_window_and_the_writer_feels_it() {
        let mut net = Net::new(0, Faults::perfect());
        let server = net.listen(addr(), line, |_| Ok(Collect::default()));
        let link = net.connect(&server, line(), Collect::default());
        let server_end = link.server.unwrap();
        net.get_mut(server_end).0.pause_recv(true);
        let frame = Bytes::from(vec![b'x'; 1023]);
        let mut sent = 0;
        while net.get_mut(link.client).0.send_frame(frame.clone()).is_ok() {
            sent += 1;
            net.step();
            assert!(sent < 10_000, "the writer never felt the back-pressure");
        }
        assert!(sent * 1024 >= WINDOW, "refused after only {sent} frames");
        net.get_mut(server_end).0.pause_recv(false);
        net.run();
        assert_eq!(net.get(server_end).1 .0.len(), sent);
    }

    #[test]
    fn datagrams_reach_a_tracker_and_replies_reach_the_inbox() {
        let mut net = Net::new(0, Faults::perfect());
        let tracker = Tracker::new(
            Proto::UDP,
            TrackerConfig::default(),
            || (Identity::new().boxed(), Identity::new().boxed()),
            |_: &mut Tendril| Ok(Echo),
        );
        let socket = net.udp(addr(), tracker);
        let peer: SocketAddr = "192.0.2.9:9".parse().unwrap();
        net.send_datagram(peer, addr(), &b"ping"[..]);
        net.run_for(Duration::from_millis(5));
        assert_eq!(net.inbox(peer), [(addr(), Bytes::from_static(b"ping"))]);
        assert!(net.inbox(peer).is_empty());
        // The peer idles out, on virtual time.
        net.run();
        assert!(net.get(socket).is_empty());
    }

    #[test]
    fn a_lossy_network_loses_and_doubles_datagrams() {
        let mut net = Net::new(5, Faults::lossy());
        let peer: SocketAddr = "192.0.2.9:9".parse().unwrap();
        let sink: SocketAddr = "192.0.2.10:9".parse().unwrap();
        for i in 0..1000 {
            net.send_datagram(peer, sink, Bytes::from(i.to_string()));
        }
        net.run();
        let got = net.inbox(sink);
        let mut distinct: Vec<_> = got.iter().map(|(_, d)| d.clone()).collect();
        distinct.sort();
        distinct.dedup();
        assert!(
            (850..950).contains(&distinct.len()),
            "{} arrived",
            distinct.len()
        );
        assert!(got.len() > distinct.len(), "nothing doubled");
        let number = |d: &Bytes| core::str::from_utf8(d).ok()?.parse::<u32>().ok();
        let in_order = got.windows(2).all(|w| number(&w[0].1) <= number(&w[1].1));
        assert!(!in_order, "nothing reordered");
    }
}
