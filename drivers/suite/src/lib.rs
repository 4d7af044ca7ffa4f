//! One driver-agnostic test suite, run against every Tendril driver.
//!
//! A driver crate implements [`Driver`] (start a manager, report its address, count its
//! tendrils, stop it) and calls [`driver_suite!`] in one of its test files; every scenario then
//! runs as a `#[test]` of that crate, over loopback (127.0.0.1 and ::1), with plain blocking
//! `std` clients on the other end — the same clients and the same assertions for every driver.

use bytes::Bytes;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tendril_core::tracker::TrackerConfig;
use tendril_core::{
    Addr, AppError, Application, Chunk, CloseReason, Config, LengthPrefixed, Line, Reject, Tendril,
};
use tendril_net::runtime::TendrilHandle;
use tendril_net::{acceptor, SharedAcceptor, WrapperChain};

mod glue;
pub use glue::{Glue, Glued};

/// Manager settings a scenario asks for; `None` leaves the manager's defaults.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Settings {
    /// For the manager's `set_config`.
    pub config: Option<Config>,
    /// For the manager's `set_udp_config`.
    pub udp: Option<TrackerConfig>,
    /// A sharded manager with this many shards, for a driver that can shard; others ignore
    /// it ([`Server::shards`] says what the manager has).
    pub shards: Option<usize>,
}

impl Settings {
    /// Hand each setting that is there to the manager's setter.
    pub fn apply(
        self,
        set_config: impl FnOnce(Config),
        set_udp_config: impl FnOnce(TrackerConfig),
    ) {
        if let Some(config) = self.config {
            set_config(config);
        }
        if let Some(udp) = self.udp {
            set_udp_config(udp);
        }
    }
}

/// A driver under test.
pub trait Driver {
    /// Start a manager for `proto` on `endpoint` with `acceptor`, after applying `settings`.
    fn start_with(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
        settings: Settings,
    ) -> io::Result<Box<dyn Server>>;

    /// Start a manager with the default settings.
    fn start(
        &self,
        proto: &str,
        endpoint: &str,
        acceptor: SharedAcceptor,
        wrapper: WrapperChain,
    ) -> io::Result<Box<dyn Server>> {
        self.start_with(proto, endpoint, acceptor, wrapper, Settings::default())
    }

    /// Connect over TCP to `target` from a new manager (endpoint `""`) whose connect timeout
    /// is `timeout`, with [`Silent`]; on success, close the connection again.
    fn connect_within(&self, target: &str, timeout: Duration) -> io::Result<()>;
    /// A manager for `proto` that only connects out (endpoint `""`), not started.
    fn connector(&self, proto: &str) -> io::Result<Box<dyn Server>>;
}

/// A running manager.
pub trait Server {
    /// The bound address.
    fn local_addr(&self) -> Addr;
    /// Live tendrils.
    fn tendril_count(&self) -> usize;
    /// Stop, returning once every application's `closed` has run.
    fn stop(self: Box<Self>);
    /// Stop, then try to `start` the manager again (with [`Silent`]) and to `connect` from it
    /// to `target`: the two results, in that order.
    fn stop_then_try_again(self: Box<Self>, target: &str) -> [io::Result<()>; 2];
    /// Connect out from this manager to `target`, with `acceptor` making the application: the
    /// new tendril's handle.
    fn connect(&self, target: &str, acceptor: SharedAcceptor) -> io::Result<TendrilHandle>;
    /// `true` when `find(local, remote)` knows a live tendril there.
    fn finds(&self, local: &Addr, remote: &Addr) -> bool;
    /// How many shards the running manager really has.
    fn shards(&self) -> usize {
        1
    }
}

/// An application that ignores its frames.
#[derive(Debug, Default)]
pub struct Silent;

impl Application for Silent {
    fn recv_frame(&mut self, _: &mut Tendril, _: Bytes) -> Result<(), AppError> {
        Ok(())
    }
}

const WAIT: Duration = Duration::from_secs(10);

/// Close reasons, delivered as they happen.
type Closes = mpsc::Receiver<String>;

/// Echoes frames (QUIT closes, PANIC panics), reports closes; `switch` makes DATA switch to `Chunk(5)`.
struct Echo {
    closes: mpsc::Sender<String>,
    switch: bool,
    after_data: bool,
}

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        if frame == "QUIT" {
            t.close();
            return Ok(());
        }
        if frame == "PANIC" {
            panic!("told to panic");
        }
        if self.switch && frame == "DATA" {
            t.set_recv_framer(Chunk::new(5));
            self.after_data = true;
        } else if self.after_data {
            t.set_recv_framer(Line::crlf());
            self.after_data = false;
        }
        t.send_frame(frame)?;
        Ok(())
    }

    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        let _ = self.closes.send(reason.to_string());
    }
}

/// An echo acceptor with the framers `setup` picks.
fn echo(setup: impl Fn(&mut Tendril) + Send + 'static, switch: bool) -> (SharedAcceptor, Closes) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let acceptor = acceptor(move |t: &mut Tendril| {
        setup(t);
        let closes = tendril_net::lock(&tx).clone();
        Ok::<_, Reject>(Echo {
            closes,
            switch,
            after_data: false,
        })
    });
    (acceptor, rx)
}

fn lines(t: &mut Tendril) {
    t.set_recv_framer(Line::crlf());
    t.set_send_framer(Line::crlf());
}

fn ip(server: &dyn Server) -> SocketAddr {
    server.local_addr().ip().expect("an IP listener")
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
}

/// A client to `addr` whose receive buffer (and send buffer, with `small_send`) is 4 KiB, so
/// that what it does not read backs up into the server quickly.
fn connect_with_small_buffers(addr: SocketAddr, small_send: bool) -> TcpStream {
    use tendril_net::socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    if small_send {
        socket.set_send_buffer_size(4096).unwrap();
    }
    socket.connect(&addr.into()).unwrap();
    socket.into()
}

fn read_n(stream: &mut impl Read, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).expect("reply within 10 s");
    buf
}

fn next_close(closes: &Closes) -> String {
    closes.recv_timeout(WAIT).expect("a close within 10 s")
}

/// TCP echo with CRLF lines over 127.0.0.1 and ::1.
pub fn tcp_echo(driver: &dyn Driver) {
    for endpoint in ["127.0.0.1:0", "[::1]:0"] {
        let (acceptor, closes) = echo(lines, false);
        let server = driver
            .start("tcp", endpoint, acceptor, WrapperChain::new())
            .unwrap();
        let mut client = connect(ip(&*server));
        client.write_all(b"hello\r\nworld\r\n").unwrap();
        assert_eq!(read_n(&mut client, 14), b"hello\r\nworld\r\n");
        drop(client);
        assert_eq!(next_close(&closes), "closed by the peer");
        server.stop();
    }
}

/// UDP echo over 127.0.0.1 and ::1, with a datagram of 60,000 bytes.
pub fn udp_echo(driver: &dyn Driver) {
    for (endpoint, local) in [("127.0.0.1:0", "127.0.0.1:0"), ("[::1]:0", "[::1]:0")] {
        let (acceptor, _closes) = echo(|_| {}, false);
        let server = driver
            .start("udp", endpoint, acceptor, WrapperChain::new())
            .unwrap();
        let client = UdpSocket::bind(local).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.connect(ip(&*server)).unwrap();
        for msg in [&b"one"[..], b"two", &[9u8; 60_000]] {
            client.send(msg).unwrap();
            let mut buf = vec![0; 65_536];
            let n = client.recv(&mut buf).expect("a reply datagram");
            assert_eq!(&buf[..n], msg);
        }
        assert_eq!(server.tendril_count(), 1);
        server.stop();
    }
}

/// The manager's settings reach its UDP peers: a peer that goes quiet is closed after the idle
/// timeout of `set_config` (the connection settings) and, when one is set, of `set_udp_config`
/// (the peer table's own), not after the table's default minute.
pub fn udp_peers_take_the_managers_settings(driver: &dyn Driver) {
    let short = Duration::from_millis(200);
    let mut config = Config::default();
    config.idle_timeout = Some(short);
    let mut udp = TrackerConfig::default();
    udp.idle_timeout = short;
    let by_config = Settings {
        config: Some(config),
        ..Settings::default()
    };
    let by_udp_config = Settings {
        udp: Some(udp),
        ..Settings::default()
    };
    for (name, settings) in [("set_config", by_config), ("set_udp_config", by_udp_config)] {
        let (acceptor, closes) = echo(|_| {}, false);
        let server = driver
            .start_with(
                "udp",
                "127.0.0.1:0",
                acceptor,
                WrapperChain::new(),
                settings,
            )
            .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.connect(ip(&*server)).unwrap();
        client.send(b"ping").unwrap();
        let mut buf = [0; 16];
        let n = client.recv(&mut buf).expect("a reply datagram");
        assert_eq!(&buf[..n], b"ping");
        assert_eq!(next_close(&closes), "idle timeout", "through {name}");
        server.stop();
    }
}

/// A stopped manager stays stopped: `start` and `connect` after `stop` are refused with an error
/// that says so, since nothing would stop what they began.
pub fn start_or_connect_after_stop_is_refused(driver: &dyn Driver) {
    let tcp_peer = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let udp_peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let targets = [
        ("tcp", tcp_peer.local_addr().unwrap()),
        ("udp", udp_peer.local_addr().unwrap()),
    ];
    for (proto, target) in targets {
        let (acceptor, _closes) = echo(lines, false);
        let server = driver
            .start(proto, "127.0.0.1:0", acceptor, WrapperChain::new())
            .unwrap();
        let [start, connect] = server.stop_then_try_again(&target.to_string());
        for (call, result) in [("start", start), ("connect", connect)] {
            let error = match result {
                Ok(()) => panic!("{proto}: {call} after stop was not refused"),
                Err(e) => e.to_string(),
            };
            assert!(error.contains("stopped"), "{proto}: {call}: {error}");
        }
    }
}

/// An application that panics ends only its own tendril, with a close reason that carries the
/// panic's message: over TCP the peer is disconnected while a second connection goes on; over
/// UDP a second peer of the same socket goes on, and so does the panicking peer's next
/// datagram, which meets a fresh application.
pub fn a_panicking_application_ends_only_its_tendril(driver: &dyn Driver) {
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let (mut fragile, mut steady) = (connect(ip(&*server)), connect(ip(&*server)));
    steady.write_all(b"before\r\n").unwrap();
    assert_eq!(read_n(&mut steady, 8), b"before\r\n");
    fragile.write_all(b"PANIC\r\n").unwrap();
    assert_eq!(
        next_close(&closes),
        "the application panicked: told to panic"
    );
    let mut rest = Vec::new();
    let _ = fragile.read_to_end(&mut rest);
    assert!(rest.is_empty(), "nothing after the panic: {rest:?}");
    steady.write_all(b"after\r\n").unwrap();
    assert_eq!(read_n(&mut steady, 7), b"after\r\n");
    server.stop();

    let (acceptor, closes) = echo(|_| {}, false);
    let server = driver
        .start("udp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let peer = || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(WAIT)).unwrap();
        socket.connect(ip(&*server)).unwrap();
        socket
    };
    let (fragile, steady) = (peer(), peer());
    let mut buf = [0; 64];
    fragile.send(b"PANIC").unwrap();
    assert_eq!(
        next_close(&closes),
        "the application panicked: told to panic"
    );
    for socket in [&steady, &fragile] {
        socket.send(b"still here").unwrap();
        let n = socket.recv(&mut buf).expect("a reply datagram");
        assert_eq!(&buf[..n], b"still here");
    }
    server.stop();
}

/// Bursts of datagrams from several peers to a wildcard-bound socket (IPv4 and IPv6), each
/// burst sent before the server answers: every datagram is answered on its own, whole and in
/// order, from the address it was sent to (IP_PKTINFO), whether the server reads them in batches
/// and sends the replies in runs (GSO) or one by one.
pub fn udp_bursts_from_several_peers(driver: &dyn Driver) {
    const BURST: usize = 30;
    // Runs of one size, then a shorter last datagram: 10 × 100, 10 × 400, 9 × 700, 1 × 7 bytes.
    let datagram = |peer: usize, i: usize| -> Vec<u8> {
        let len = if i + 1 == BURST {
            7
        } else {
            100 + 300 * (i / 10)
        };
        vec![(peer * BURST + i) as u8; len]
    };
    for (endpoint, loopback) in [("0.0.0.0:0", "127.0.0.1"), ("[::]:0", "::1")] {
        let (acceptor, _closes) = echo(|_| {}, false);
        let server = driver
            .start("udp", endpoint, acceptor, WrapperChain::new())
            .unwrap();
        let to = SocketAddr::new(loopback.parse().unwrap(), ip(&*server).port());
        let peers: Vec<UdpSocket> = (0..3)
            .map(|_| {
                let peer = UdpSocket::bind((loopback, 0)).unwrap();
                peer.set_read_timeout(Some(WAIT)).unwrap();
                peer
            })
            .collect();
        for (p, peer) in peers.iter().enumerate() {
            for i in 0..BURST {
                peer.send_to(&datagram(p, i), to).unwrap();
            }
        }
        let mut buf = vec![0; 65_536];
        for (p, peer) in peers.iter().enumerate() {
            for i in 0..BURST {
                let (n, from) = peer.recv_from(&mut buf).expect("a reply datagram");
                assert_eq!(
                    from, to,
                    "peer {p}, reply {i}: from the address it was sent to"
                );
                assert_eq!(&buf[..n], datagram(p, i), "peer {p}, reply {i}");
            }
        }
        assert_eq!(server.tendril_count(), peers.len());
        server.stop();
    }
}

/// Echoes frames and records the largest read size its connection had.
struct ReadSizes(Arc<std::sync::atomic::AtomicUsize>);

impl Application for ReadSizes {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.0
            .fetch_max(t.config().read_size, std::sync::atomic::Ordering::Relaxed);
        t.send_frame(frame)?;
        Ok(())
    }
}

/// A peer that pipelines faster than one read takes: its connection reads more at a time than
/// the configured read size, and every byte comes back in order.
pub fn busy_connection_reads_more_at_a_time(driver: &dyn Driver) {
    let largest = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = largest.clone();
    let acceptor = acceptor(move |t: &mut Tendril| {
        lines(t);
        Ok::<_, Reject>(ReadSizes(seen.clone()))
    });
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let data: Vec<u8> = (0..8192)
        .flat_map(|i| format!("line {i:05} {}\r\n", "x".repeat(50)).into_bytes())
        .collect();
    let mut client = connect(ip(&*server));
    let mut writer = client.try_clone().unwrap();
    let sent = data.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    assert!(read_n(&mut client, data.len()) == data, "the echo differs");
    writing.join().unwrap();
    let largest = largest.load(std::sync::atomic::Ordering::Relaxed);
    let configured = tendril_core::Config::default().read_size;
    assert!(largest > configured, "reads stayed at {largest} bytes");
    server.stop();
}

/// Unix-socket echo through the "unix" protocol; `stop` removes the socket file.
#[cfg(unix)]
pub fn unix_echo(driver: &dyn Driver, tag: &str) {
    let dir = std::env::temp_dir().join(format!("tendril-suite-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start(
            "unix",
            path.to_str().unwrap(),
            acceptor,
            WrapperChain::new(),
        )
        .unwrap();
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"over unix\r\n").unwrap();
    assert_eq!(read_n(&mut client, 11), b"over unix\r\n");
    drop(client);
    assert_eq!(next_close(&closes), "closed by the peer");
    server.stop();
    assert!(!path.exists(), "the socket file is removed on stop");
}

/// Socket wrappers run on Unix sockets too: the listening socket's wrapper runs before it
/// binds (a failing one fails `start` with its error), and sees a Unix-domain socket.
#[cfg(unix)]
pub fn unix_listeners_run_their_wrappers(driver: &dyn Driver, tag: &str) {
    let dir = std::env::temp_dir().join(format!("tendril-wrap-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("wrapped.sock");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let wrapper = WrapperChain::new().chain(move |socket: &socket2::Socket| {
        record.lock().unwrap().push(socket.domain()?);
        Ok(())
    });
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start("unix", path.to_str().unwrap(), acceptor, wrapper)
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), [socket2::Domain::UNIX]);
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    client.write_all(b"wrapped\r\n").unwrap();
    assert_eq!(read_n(&mut client, 9), b"wrapped\r\n");
    drop(client);
    assert_eq!(next_close(&closes), "closed by the peer");
    server.stop();

    let refusing =
        WrapperChain::new().chain(|_: &socket2::Socket| Err(io::Error::other("wrapper says no")));
    let (acceptor, _) = echo(lines, false);
    let failed = driver.start(
        "unix",
        dir.join("refused.sock").to_str().unwrap(),
        acceptor,
        refusing,
    );
    let error = failed.err().expect("a failing wrapper fails start");
    assert!(error.to_string().contains("wrapper says no"), "{error}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A connect that gets no answer fails with `TimedOut` once the manager's connect timeout has
/// passed, not after the system's minutes of SYN retries. The peer is a loopback listener whose
/// accept queue is full, so the kernel drops further SYNs.
pub fn a_connect_that_gets_no_answer_times_out(driver: &dyn Driver) {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    // Fill the accept queue (nobody accepts): backlog 0 takes one or two, depending on the kernel.
    let mut filling = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            filling.push(s);
        }
    }
    let started = std::time::Instant::now();
    let result = driver.connect_within(&addr.to_string(), Duration::from_millis(300));
    let error = result.expect_err("nobody answers, so the connect fails");
    assert_eq!(error.kind(), io::ErrorKind::TimedOut, "{error}");
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
    drop(filling);
}

/// An acceptor that rejects a connection closes only that one: its peer sees the end at once,
/// the manager lists nothing for it, and the next connection is served.
pub fn a_rejecting_acceptor_closes_only_that_connection(driver: &dyn Driver) {
    let (tx, closes) = mpsc::channel();
    let tx = Mutex::new(tx);
    let mut first = true;
    let acceptor = acceptor(move |t: &mut Tendril| {
        if std::mem::take(&mut first) {
            return Err(Reject::new("not today"));
        }
        lines(t);
        let closes = tendril_net::lock(&tx).clone();
        Ok(Echo {
            closes,
            switch: false,
            after_data: false,
        })
    });
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut rejected = connect(ip(&*server));
    let mut rest = Vec::new();
    assert_eq!(rejected.read_to_end(&mut rest).unwrap_or(0), 0);
    assert_eq!(server.tendril_count(), 0);
    let mut served = connect(ip(&*server));
    served.write_all(b"welcome\r\n").unwrap();
    assert_eq!(read_n(&mut served, 9), b"welcome\r\n");
    assert_eq!(server.tendril_count(), 1);
    drop(served);
    assert_eq!(next_close(&closes), "closed by the peer");
    server.stop();
}

/// TCP under another name, restricted to IPv6: a transport built only from the kit's public
/// API, so it runs on whichever runtime the manager has.
struct Tcp6;

impl tendril_net::runtime::Transport for Tcp6 {
    fn proto(&self) -> tendril_core::Proto {
        tendril_core::Proto::stream("tcp6")
    }

    fn listen(
        &self,
        shared: Arc<tendril_net::runtime::Shared>,
        endpoint: String,
        _wrapper: WrapperChain,
        acceptor: SharedAcceptor,
    ) -> futures::future::BoxFuture<'static, io::Result<Addr>> {
        Box::pin(async move {
            let listener = std::net::TcpListener::bind(&endpoint)?;
            listener.set_nonblocking(true)?; // what `Runtime::listener` takes
            let local = listener.local_addr()?;
            if !local.is_ipv6() {
                return Err(io::Error::other("tcp6 needs an IPv6 endpoint"));
            }
            let mut listener = shared.runtime().listener(listener.into())?;
            let (task, cancel) = (shared.clone(), shared.cancelled());
            shared.spawn(async move {
                loop {
                    let accept = std::future::poll_fn(|cx| listener.poll_accept(cx));
                    let Some(Ok(io)) = cancel.run_until_cancelled(accept).await else {
                        break;
                    };
                    let remote = io.socket().peer_addr().ok().and_then(|a| a.as_socket());
                    let remote = remote.map_or(Addr::Unnamed, Addr::from);
                    let _ = tendril_net::runtime::spawn_stream(
                        &task,
                        io,
                        local.into(),
                        remote,
                        &acceptor,
                    );
                }
            });
            Ok(local.into())
        })
    }

    fn connect(
        &self,
        _shared: Arc<tendril_net::runtime::Shared>,
        _local: String,
        _target: String,
        _wrapper: WrapperChain,
        _acceptor: SharedAcceptor,
    ) -> futures::future::BoxFuture<'static, io::Result<tendril_net::runtime::TendrilHandle>> {
        Box::pin(async { Err(io::Error::other("listen only")) })
    }
}

/// A protocol registered by name (a transport of the user's own) is found by `get_manager` and
/// serves like a built-in one; an unknown name is an error.
pub fn a_registered_protocol_is_found_by_name(driver: &dyn Driver) {
    tendril_net::runtime::register("tcp6", Arc::new(Tcp6));
    assert!(tendril_net::runtime::protocols().contains(&"tcp6".to_string()));
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start("tcp6", "[::1]:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut client = connect(ip(&*server));
    client.write_all(b"six\r\n").unwrap();
    assert_eq!(read_n(&mut client, 5), b"six\r\n");
    drop(client);
    assert_eq!(next_close(&closes), "closed by the peer");
    server.stop();
    let (acceptor, _) = echo(lines, false);
    assert!(driver
        .start("nope", "127.0.0.1:0", acceptor, WrapperChain::new())
        .is_err());
}

/// Forwards every frame it receives to a channel.
struct Client(Mutex<mpsc::Sender<Bytes>>);

impl Application for Client {
    fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let _ = tendril_net::lock(&self.0).send(frame);
        Ok(())
    }
}

/// A [`Client`] acceptor with the framers `setup` picks, and where its frames arrive.
fn client(setup: fn(&mut Tendril)) -> (SharedAcceptor, mpsc::Receiver<Bytes>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let acceptor = acceptor(move |t: &mut Tendril| {
        setup(t);
        Ok::<_, Reject>(Client(Mutex::new(tendril_net::lock(&tx).clone())))
    });
    (acceptor, rx)
}

/// A manager that listens also connects out (from its own address, on an ephemeral port, so no
/// `EADDRINUSE`), its handle reaches the tendril from any thread, and two managers that only
/// connect out each get a port of their own.
pub fn a_listener_also_connects_out_and_its_handles_work_from_any_thread(driver: &dyn Driver) {
    let (echoing, _) = echo(lines, false);
    let a = driver
        .start("tcp", "127.0.0.1:0", echoing, WrapperChain::new())
        .unwrap();
    let (echoing, _) = echo(lines, false);
    let b = driver
        .start("tcp", "127.0.0.1:0", echoing, WrapperChain::new())
        .unwrap();
    assert_ne!(ip(&*a), ip(&*b));
    let (acceptor, replies) = client(lines);
    let handle = b
        .connect(&format!("localhost:{}", ip(&*a).port()), acceptor)
        .unwrap();
    handle.send_frame_blocking(Bytes::from("from b")).unwrap();
    assert_eq!(replies.recv_timeout(WAIT).unwrap(), "from b");
    assert!(b.finds(handle.local_addr(), handle.remote_addr()));
    assert_eq!(
        handle.local_addr().ip().map(|a| a.ip()),
        Some(ip(&*b).ip()),
        "connects out from the manager's address"
    );
    let other = handle.clone();
    let sent = std::thread::spawn(move || other.send_frame_nowait(Bytes::from("from a thread")));
    assert!(sent.join().unwrap());
    assert_eq!(replies.recv_timeout(WAIT).unwrap(), "from a thread");
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            let connector = driver.connector("tcp").unwrap();
            let (acceptor, _) = client(lines);
            let handle = connector.connect(&ip(&*a).to_string(), acceptor).unwrap();
            let port = handle.local_addr().ip().map(|a| a.port());
            connector.stop();
            port.unwrap_or_default()
        })
        .collect();
    assert!(ports.iter().all(|p| *p != 0));
    handle.close();
    a.stop();
    b.stop();
    assert!(handle.is_closed());
}

/// A UDP manager that only connects out gets the replies of the peer it sent to.
pub fn a_connect_only_udp_manager_gets_its_replies(driver: &dyn Driver) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let connector = driver.connector("udp").unwrap();
    let (acceptor, replies) = client(|_| {});
    let handle = connector
        .connect(&peer.local_addr().unwrap().to_string(), acceptor)
        .unwrap();
    handle.send_frame_blocking(Bytes::from("ping")).unwrap();
    let mut buf = [0; 16];
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"ping");
    peer.send_to(b"pong", from).unwrap();
    assert_eq!(replies.recv_timeout(WAIT).unwrap(), "pong");
    assert_eq!(connector.tendril_count(), 1);
    connector.stop();
    assert!(handle.is_closed());
}

/// The original's switching case over a real socket, all in one write.
pub fn switching_with_pipelined_input(driver: &dyn Driver) {
    let (acceptor, _closes) = echo(
        |t| {
            t.set_recv_framer(Line::crlf());
            t.set_send_framer(LengthPrefixed::u8());
        },
        true,
    );
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut client = connect(ip(&*server));
    client.write_all(b"DATA\r\n12345rest\r\nnext\r\n").unwrap();
    assert_eq!(
        read_n(&mut client, 21),
        b"\x04DATA\x0512345\x04rest\x04next"
    );
    server.stop();
}

/// `closed` once each on peer EOF, reset and local close; none after stop.
pub fn closed_once_on_every_path(driver: &dyn Driver) {
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let addr = ip(&*server);

    drop(connect(addr));
    assert_eq!(next_close(&closes), "closed by the peer");

    let client = connect(addr);
    tendril_net::socket2::SockRef::from(&client)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(client);
    let reason = next_close(&closes);
    assert!(
        reason.starts_with("I/O error") || reason == "closed by the peer",
        "{reason}"
    );

    let mut client = connect(addr);
    client.write_all(b"QUIT\r\n").unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    assert_eq!(next_close(&closes), "closed locally");

    server.stop();
    assert!(closes.try_recv().is_err(), "a second close");
}

/// A peer that leaves in the middle of a frame: the close reason says so.
pub fn disconnect_mid_frame(driver: &dyn Driver) {
    let (acceptor, closes) = echo(|t| t.set_recv_framer(LengthPrefixed::u16_be()), false);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut client = connect(ip(&*server));
    client.write_all(&[0, 100, b'a']).unwrap();
    drop(client);
    let reason = next_close(&closes);
    assert!(
        reason.starts_with("framing error: input ended inside a length-prefixed frame"),
        "{reason}"
    );
    server.stop();
}

/// stop(): every tendril closed once, clients see EOF, the listener is gone.
pub fn stop_semantics(driver: &dyn Driver) {
    let (acceptor, closes) = echo(lines, false);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let addr = ip(&*server);
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut c = connect(addr);
        c.write_all(b"hi\r\n").unwrap();
        read_n(&mut c, 4);
        clients.push(c);
    }
    assert_eq!(server.tendril_count(), 5);
    server.stop();
    let reasons: Vec<String> = closes.try_iter().collect();
    assert_eq!(reasons, vec!["closed locally".to_string(); 5]);
    for mut c in clients {
        let mut rest = Vec::new();
        assert_eq!(c.read_to_end(&mut rest).unwrap(), 0);
    }
    assert!(
        TcpStream::connect(addr).is_err(),
        "the listener still accepts"
    );
}

/// 1,000 clients connected at once, each echoed.
pub fn thousand_connections(driver: &dyn Driver) {
    let (acceptor, _closes) = echo(lines, false);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let addr = ip(&*server);
    let clients: Vec<TcpStream> = (0..1000)
        .map(|i| {
            let mut c = connect(addr);
            c.write_all(format!("client {i}\r\n").as_bytes()).unwrap();
            c
        })
        .collect();
    for (i, mut c) in clients.iter().enumerate() {
        let line = format!("client {i}\r\n");
        assert_eq!(read_n(&mut c, line.len()), line.as_bytes());
    }
    assert_eq!(server.tendril_count(), 1000);
    drop(clients);
    server.stop();
}

/// A client that writes requests and reads nothing: the server stops reading it instead of
/// queueing without bound; once the client reads, every reply arrives.
pub fn back_pressure_against_a_slow_reader(driver: &dyn Driver) {
    let biggest = Arc::new(Mutex::new(0usize));
    let seen = biggest.clone();
    struct Big(Arc<Mutex<usize>>);
    impl Application for Big {
        fn recv_frame(&mut self, t: &mut Tendril, _: Bytes) -> Result<(), AppError> {
            t.send_frame(Bytes::from(vec![b'x'; 1024]))?;
            let mut most = tendril_net::lock(&self.0);
            *most = (*most).max(t.outgoing_len());
            Ok(())
        }
    }
    let acceptor = acceptor(move |t: &mut Tendril| {
        let mut config = *t.config();
        config.high_watermark = 64 * 1024;
        config.low_watermark = 16 * 1024;
        t.set_config(config);
        lines(t);
        Ok::<_, Reject>(Big(seen.clone()))
    });
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut client = connect_with_small_buffers(ip(&*server), false);
    client
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let requests = b"r\r\n".repeat(20_000);
    // The write stalls once both socket buffers are full; the timeout ends it.
    let written = client.write(&requests).unwrap_or_default();
    let _ = client.write_all(&requests[written..]);
    let most = *tendril_net::lock(&biggest);
    assert!(most < 64 * 1024 + 2048, "the queue grew to {most} bytes");
    let mut reader = BufReader::new(client);
    let mut line = String::new();
    for _ in 0..1000 {
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.len(), 1026);
    }
    server.stop();
}

/// Peers that send without ever reading their replies are held back by TCP, and hold back no
/// one else: 400 of them, each stalled (its writes have made no progress for 2 s), and a
/// newcomer is still answered. (On io_uring, whose connections share a shard's receive
/// buffers, such peers once took all of them.)
pub fn peers_that_never_read_do_not_starve_the_others(driver: &dyn Driver) {
    const STALLED: usize = 400;
    let (acceptor, _closes) = echo(
        |t: &mut Tendril| {
            let mut config = *t.config();
            config.high_watermark = 16 * 1024;
            config.low_watermark = 4 * 1024;
            t.set_config(config);
            lines(t);
        },
        false,
    );
    // Small socket buffers on both sides, so that the replies back up quickly.
    let small = WrapperChain::new()
        .chain(tendril_net::options::recv_buffer_size(4096))
        .chain(tendril_net::options::send_buffer_size(4096));
    let server = driver.start("tcp", "127.0.0.1:0", acceptor, small).unwrap();
    let addr = ip(&*server);
    let (stalled_tx, stalled_rx) = mpsc::channel();
    for _ in 0..STALLED {
        let stalled_tx = stalled_tx.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let mut stream = connect_with_small_buffers(addr, true);
                stream
                    .set_write_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let block =
                    b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abc\r\n".repeat(64);
                let mut reported = false;
                loop {
                    match stream.write(&block) {
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                            ) =>
                        {
                            if !reported {
                                reported = true;
                                let _ = stalled_tx.send(stream.try_clone().unwrap());
                            }
                        }
                        Err(_) => return, // shut down at the end
                    }
                }
            })
            .unwrap();
    }
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| stalled_rx.recv_timeout(Duration::from_secs(300)).unwrap())
        .collect();
    let mut fresh = connect(addr);
    fresh.write_all(b"still there?\r\n").unwrap();
    assert_eq!(
        read_n(&mut fresh, 14),
        b"still there?\r\n",
        "the newcomer is answered while {STALLED} peers hold their replies unread"
    );
    for stream in stalled {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    server.stop();
}

/// A line server that answers `STARTTLS` with `220 go ahead` and wraps itself in TLS, and
/// `250 <line>` to anything else. Reports the lines it saw and its closes.
fn starttls(
    config: Arc<rustls::ServerConfig>,
    setup: impl Fn(&mut Tendril) + Send + 'static,
) -> (SharedAcceptor, mpsc::Receiver<String>, Closes) {
    use tendril_core::tls::TlsLayer;
    struct Upgrade {
        config: Arc<rustls::ServerConfig>,
        seen: mpsc::Sender<String>,
        closes: mpsc::Sender<String>,
    }
    impl Application for Upgrade {
        fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            let text = String::from_utf8_lossy(&frame).into_owned();
            let _ = self.seen.send(text.clone());
            if text == "STARTTLS" {
                t.send_frame("220 go ahead".into())?;
                t.wrap(TlsLayer::server(self.config.clone())?);
            } else {
                t.send_frame(Bytes::from(format!("250 {text}")))?;
            }
            Ok(())
        }

        fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
            let _ = self.closes.send(reason.to_string());
        }
    }
    let (seen_tx, seen) = mpsc::channel();
    let (closes_tx, closes) = mpsc::channel();
    let senders = Mutex::new((seen_tx, closes_tx));
    let acceptor = acceptor(move |t: &mut Tendril| {
        lines(t);
        setup(t);
        let (seen, closes) = tendril_net::lock(&senders).clone();
        Ok::<_, Reject>(Upgrade {
            config: config.clone(),
            seen,
            closes,
        })
    });
    (acceptor, seen, closes)
}

/// TLS from the first byte, and STARTTLS with injected plaintext, with a rustls client.
pub fn tls_and_starttls(driver: &dyn Driver) {
    use tendril_core::tls::TlsLayer;
    let (server_config, client_config) = tendril_core::testkit::tls::pair(0);
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();

    // TLS from the first byte.
    let config = server_config.clone();
    let (tls_echo, _closes) = echo(
        move |t| {
            lines(t);
            t.wrap(TlsLayer::server(config.clone()).unwrap());
        },
        false,
    );
    let server = driver
        .start("tcp", "127.0.0.1:0", tls_echo, WrapperChain::new())
        .unwrap();
    let conn = rustls::ClientConnection::new(client_config.clone(), name.clone()).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(ip(&*server)));
    tls.write_all(b"secret\r\n").unwrap();
    assert_eq!(read_n(&mut tls, 8), b"secret\r\n");
    server.stop();

    // STARTTLS: the command injected behind it is dropped, the upgraded stream works.
    let config = server_config;
    let (acceptor, seen, _closes) = starttls(config, |_| {});
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let mut client = connect(ip(&*server));
    client
        .write_all(b"STARTTLS\r\nRCPT TO:<victim@example.com>\r\n")
        .unwrap();
    assert_eq!(read_n(&mut client, 14), b"220 go ahead\r\n");
    let conn = rustls::ClientConnection::new(client_config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, client);
    tls.write_all(b"after tls\r\n").unwrap();
    assert_eq!(read_n(&mut tls, 15), b"250 after tls\r\n");
    let frames: Vec<String> = seen.try_iter().collect();
    assert_eq!(frames, ["STARTTLS", "after tls"]);
    server.stop();
}

/// Peers that hang up in the middle of a TLS handshake (having sent nothing, or half a
/// ClientHello; from the first byte, or right after STARTTLS): each is closed at once as
/// "closed by the peer", and its socket with it, so the client reads EOF. The handshake
/// timeout is off here: nothing but the hang-up can close them.
pub fn tls_peers_hanging_up_mid_handshake_are_closed(driver: &dyn Driver) {
    use tendril_core::tls::TlsLayer;
    const PEERS: usize = 40;
    const HALF_A_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    fn no_handshake_timeout(t: &mut Tendril) {
        let mut config = *t.config();
        config.handshake_timeout = None;
        t.set_config(config);
    }
    /// Each peer half-closes and must then read EOF: the server closed its socket.
    fn hang_up_and_see_eof(clients: Vec<TcpStream>) {
        for mut c in clients {
            c.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest)
                .expect("the server closes the connection (EOF within 10 s)");
        }
    }
    let (server_config, _) = tendril_core::testkit::tls::pair(0);

    let config = server_config.clone();
    let (tls_echo, closes) = echo(
        move |t| {
            lines(t);
            no_handshake_timeout(t);
            t.wrap(TlsLayer::server(config.clone()).unwrap());
        },
        false,
    );
    let server = driver
        .start("tcp", "127.0.0.1:0", tls_echo, WrapperChain::new())
        .unwrap();
    let addr = ip(&*server);
    let clients = (0..PEERS)
        .map(|i| {
            let mut c = connect(addr);
            if i % 2 == 1 {
                c.write_all(HALF_A_HELLO).unwrap();
            }
            c
        })
        .collect();
    hang_up_and_see_eof(clients);
    for _ in 0..PEERS {
        assert_eq!(next_close(&closes), "closed by the peer");
    }
    server.stop();

    let (acceptor, _seen, closes) = starttls(server_config, no_handshake_timeout);
    let server = driver
        .start("tcp", "127.0.0.1:0", acceptor, WrapperChain::new())
        .unwrap();
    let addr = ip(&*server);
    let clients = (0..PEERS)
        .map(|_| {
            let mut c = connect(addr);
            c.write_all(b"STARTTLS\r\n").unwrap();
            assert_eq!(read_n(&mut c, 14), b"220 go ahead\r\n");
            c
        })
        .collect();
    hang_up_and_see_eof(clients);
    for _ in 0..PEERS {
        assert_eq!(next_close(&closes), "closed by the peer");
    }
    server.stop();
}

/// Answers each frame with who answered: the number of its application (one per tendril, in
/// the order they were accepted) and the thread it ran on.
struct WhoAmI(usize);

impl Application for WhoAmI {
    fn recv_frame(&mut self, t: &mut Tendril, _: Bytes) -> Result<(), AppError> {
        let thread = std::thread::current().id();
        t.send_frame(Bytes::from(format!("{} {thread:?}", self.0)))?;
        Ok(())
    }
}

/// A [`WhoAmI`] acceptor with the framers `setup` picks.
fn who_am_i(setup: fn(&mut Tendril)) -> SharedAcceptor {
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    acceptor(move |t: &mut Tendril| {
        setup(t);
        let number = accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok::<_, Reject>(WhoAmI(number))
    })
}

/// A `proto` manager on 127.0.0.1 with `acceptor`, asked for two shards.
fn start_on_two_shards(
    driver: &dyn Driver,
    proto: &str,
    acceptor: SharedAcceptor,
) -> Box<dyn Server> {
    let settings = Settings {
        shards: Some(2),
        ..Settings::default()
    };
    driver
        .start_with(
            proto,
            "127.0.0.1:0",
            acceptor,
            WrapperChain::new(),
            settings,
        )
        .unwrap()
}

/// Each peer's answers (`"<application> <thread>"`) came from one application and, on a sharded
/// manager, from one thread (a shard's); and with two shards or more, the peers were spread
/// over at least two threads. Without shards a runtime may poll a task on any of its threads,
/// so only the application is compared.
fn assert_one_answerer_each_and_spread(server: &dyn Server, answers: &[Vec<String>]) {
    let sharded = server.shards() >= 2;
    let answerer = |answer: &String| match sharded {
        true => answer.clone(),
        false => answer.split(' ').next().unwrap_or_default().to_owned(),
    };
    for (peer, seen) in answers.iter().enumerate() {
        let first = answerer(&seen[0]);
        assert!(
            seen.iter().all(|a| answerer(a) == first),
            "peer {peer} was answered by more than one: {seen:?}"
        );
    }
    if sharded {
        let threads: std::collections::HashSet<&str> = answers
            .iter()
            .filter_map(|seen| seen[0].split_once(' ').map(|(_, thread)| thread))
            .collect();
        // 32 peers all on one of two shards: a chance of 2^-31.
        assert!(threads.len() >= 2, "every peer on one thread: {threads:?}");
    }
}

/// Four rounds of asking each of `peers` once (`ask(peer)` gives its answer): the answers,
/// by peer.
fn ask_each_four_times(peers: usize, mut ask: impl FnMut(usize) -> String) -> Vec<Vec<String>> {
    let mut answers = vec![Vec::new(); peers];
    for _ in 0..4 {
        for (peer, seen) in answers.iter_mut().enumerate() {
            seen.push(ask(peer));
        }
    }
    answers
}

/// 32 UDP peers of a manager started with two shards, 4 datagrams each: each peer is answered
/// by one tendril on one shard throughout (the kernel's `SO_REUSEPORT` hash keeps its 4-tuple
/// on one socket), and a sharded manager spreads the peers over its shards.
pub fn a_udp_peer_stays_on_one_shard(driver: &dyn Driver) {
    const PEERS: usize = 32;
    let server = start_on_two_shards(driver, "udp", who_am_i(|_| {}));
    let peers: Vec<UdpSocket> = (0..PEERS)
        .map(|_| {
            let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
            peer.set_read_timeout(Some(WAIT)).unwrap();
            peer.connect(ip(&*server)).unwrap();
            peer
        })
        .collect();
    let mut buf = [0; 128];
    let answers = ask_each_four_times(PEERS, |peer| {
        peers[peer].send(b"who").unwrap();
        let n = peers[peer].recv(&mut buf).expect("a reply datagram");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    assert_one_answerer_each_and_spread(&*server, &answers);
    assert_eq!(server.tendril_count(), PEERS, "each peer tracked once");
    server.stop();
}

/// 32 TCP connections to a manager started with two shards, 4 lines each: each connection's
/// lines are all answered from one shard, and a sharded manager spreads the connections over
/// its shards.
pub fn tcp_connections_spread_over_shards_and_stay_on_one(driver: &dyn Driver) {
    const CONNECTIONS: usize = 32;
    let server = start_on_two_shards(driver, "tcp", who_am_i(lines));
    let mut clients: Vec<BufReader<TcpStream>> = (0..CONNECTIONS)
        .map(|_| BufReader::new(connect(ip(&*server))))
        .collect();
    let answers = ask_each_four_times(CONNECTIONS, |c| {
        clients[c].get_mut().write_all(b"who\r\n").unwrap();
        let mut line = String::new();
        clients[c]
            .read_line(&mut line)
            .expect("an answer within 10 s");
        line.trim_end().to_owned()
    });
    assert_one_answerer_each_and_spread(&*server, &answers);
    assert_eq!(server.tendril_count(), CONNECTIONS);
    drop(clients);
    server.stop();
}

/// A UDP manager that listens also connects out and gets its peer's replies, as the tendril it
/// connected (not as a new peer of its listening socket), also when it is sharded.
pub fn a_listening_udp_manager_connects_out_and_gets_its_replies(driver: &dyn Driver) {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.set_read_timeout(Some(WAIT)).unwrap();
    let (echoing, _) = echo(|_| {}, false);
    let server = start_on_two_shards(driver, "udp", echoing);
    let (acceptor, replies) = client(|_| {});
    let handle = server
        .connect(&peer.local_addr().unwrap().to_string(), acceptor)
        .unwrap();
    let mut buf = [0; 16];
    for round in ["one", "two", "three"] {
        handle.send_frame_blocking(Bytes::from(round)).unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], round.as_bytes());
        peer.send_to(b"pong", from).unwrap();
        assert_eq!(replies.recv_timeout(WAIT).unwrap(), "pong", "round {round}");
    }
    assert_eq!(server.tendril_count(), 1, "the replies made no new peer");
    server.stop();
    assert!(handle.is_closed());
}

/// Generates a module `suite` of one `#[test]` per scenario for a driver:
/// `driver_suite!(MyDriver)` where `MyDriver: Driver + Default`.
///
/// With `skip_unless = check`, where `check: fn() -> io::Result<()>`, each test first calls
/// `check` and, on an error, prints `skipped: {error}` and passes: for a driver that a machine
/// may not offer (io_uring under seccomp, say), whose error names the cause.
///
/// ```
/// # #[derive(Default)] struct MyDriver;
/// fn available() -> std::io::Result<()> {
///     Err(std::io::Error::other("io_uring is disabled (kernel.io_uring_disabled = 2)"))
/// }
/// // In a test file: tendril_driver_suite::driver_suite!(MyDriver, skip_unless = available);
/// # assert!(available().is_err());
/// ```
#[macro_export]
macro_rules! driver_suite {
    ($driver:ty) => {
        $crate::driver_suite!($driver, skip_unless = $crate::always_available);
    };
    ($driver:ty, skip_unless = $available:expr) => {
        $crate::__scenarios!($driver, $available;
            tcp_echo,
            udp_echo,
            busy_connection_reads_more_at_a_time,
            udp_peers_take_the_managers_settings,
            start_or_connect_after_stop_is_refused,
            a_panicking_application_ends_only_its_tendril,
            udp_bursts_from_several_peers,
            a_connect_that_gets_no_answer_times_out,
            a_rejecting_acceptor_closes_only_that_connection,
            a_registered_protocol_is_found_by_name,
            a_listener_also_connects_out_and_its_handles_work_from_any_thread,
            a_connect_only_udp_manager_gets_its_replies,
            switching_with_pipelined_input,
            closed_once_on_every_path,
            disconnect_mid_frame,
            stop_semantics,
            thousand_connections,
            back_pressure_against_a_slow_reader,
            peers_that_never_read_do_not_starve_the_others,
            tls_and_starttls,
            tls_peers_hanging_up_mid_handshake_are_closed,
            a_udp_peer_stays_on_one_shard,
            tcp_connections_spread_over_shards_and_stay_on_one,
            a_listening_udp_manager_connects_out_and_gets_its_replies,
            #[cfg(unix)] unix_echo(stringify!($driver)),
            #[cfg(unix)] unix_listeners_run_their_wrappers(stringify!($driver)),
        );
    };
}

/// The `skip_unless` of a driver every machine offers.
pub fn always_available() -> io::Result<()> {
    Ok(())
}

/// One `#[test]` per scenario name, each calling the scenario of that name (with any extra
/// arguments) on a default driver, unless the check says to skip.
#[doc(hidden)]
#[macro_export]
macro_rules! __scenarios {
    ($driver:ty, $available:expr; $( $(#[$attr:meta])* $name:ident $(($($arg:expr),*))? ),* $(,)?) => {
        mod suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                $(#[$attr])*
                #[test]
                fn $name() {
                    match ($available)() {
                        Ok(()) => $crate::$name(&<$driver>::default() $($(, $arg)*)?),
                        Err(why) => eprintln!("skipped: {why}"),
                    }
                }
            )*
        }
    };
}
