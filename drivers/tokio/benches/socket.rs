//! Socket benchmarks over loopback, bounded in time (about 45 s): Tendril's drivers against
//! plain Tokio.
//!
//! `cargo bench -p tendril-tokio --bench socket` prints a Markdown table:
//! - TCP pipelined echo of 64-byte lines, 1 and 64 connections: `tendril-tokio`,
//!   `tendril-async-std` and `tendril-blocking` (Line framers) each against
//!   `Framed<TcpStream, LinesCodec>` forwarding its stream into its sink;
//! - UDP echo from 1 and 1,000 client sockets: `tendril-tokio` vs a plain `UdpSocket` loop that
//!   keeps a `HashMap` of peers (both with a 4 MiB receive buffer);
//! - the same two echoes against the physical limits, in the same run: a hand-written Tokio TCP
//!   echo that finds line ends with `memchr` in its read buffer and writes the same bytes back
//!   (no framing library, nothing allocated per line), and a UDP echo that receives batches
//!   with `recvmmsg` through `quinn-udp` and answers them in one `sendmmsg` (`rustix`), each
//!   GRO batch in one GSO send, with no per-peer state. `tendril-tokio` and plain Tokio are
//!   each given as a share of the limit;
//! - the drivers side by side (`drivers`): `tendril-tokio`, `tendril-tokio` on 2 shards,
//!   `tendril-uring` on 1 and 2 shards, each server in a child process of its own, on TCP with
//!   1, 64 and 1,000 connections and UDP with 1 and 1,000 client sockets; with frames/s, the
//!   server's CPU seconds per million frames (its `getrusage` counters, from `/proc/PID/stat`),
//!   which do not depend on how the two cores are shared. `TENDRIL_SOCKET_DRIVERS=
//!   tendril-uring,tcp-64` picks drivers and scenarios;
//! - resident memory per idle TCP connection, 10,000 connections, for plain Tokio,
//!   `tendril-tokio` and `tendril-uring`: each server runs in a child process of its own and
//!   the clients in another (client and server in one process would need more than the 20,000
//!   descriptors allowed here), so the figure is the server's alone.
//!
//! The load generator is Tokio on 2 worker threads, in the same process as the TCP and UDP
//! servers of the first two groups: the figures compare servers under identical load on a
//! shared machine, they do not measure a ceiling. `TENDRIL_SOCKET_BENCH=tcp,udp,drivers,idle`
//! picks scenarios (default: all).

use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tendril_core::{AppError, Application, Line, Tendril};
use tendril_tokio::{get_manager, options, WrapperChain};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::codec::{Framed, LinesCodec};

const RUN: Duration = Duration::from_secs(3);

/// Idle connections for the memory figure.
const IDLE: usize = 10_000;

/// Receive buffer of both UDP servers (this machine's `rmem_max`): 1,000 clients keep a few
/// thousand datagrams in flight, more than the 208 KiB default holds.
const UDP_RECV_BUFFER: usize = 4 << 20;

/// Selects what a child process of this benchmark does.
const ROLE: &str = "TENDRIL_SOCKET_BENCH_ROLE";

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

fn lines(t: &mut Tendril) -> Result<Echo, tendril_core::Reject> {
    t.set_recv_framer(Line::lf());
    t.set_send_framer(Line::lf());
    Ok(Echo)
}

/// A TCP echo server under test; `stop` ends it.
enum Server {
    Tokio(tendril_tokio::Manager),
    AsyncStd(tendril_async_std::Manager),
    Blocking(tendril_blocking::Manager),
    Mio(tendril_net::runtime::Manager),
    Plain,
}

impl Server {
    async fn stop(self) {
        match self {
            Server::Tokio(m) => m.stop().await,
            Server::AsyncStd(m) | Server::Mio(m) => m.stop().await,
            Server::Blocking(m) => tokio::task::spawn_blocking(move || m.stop()).await.unwrap(),
            Server::Plain => {}
        }
    }
}

fn nodelay() -> WrapperChain {
    WrapperChain::new().chain(options::nodelay(true))
}

async fn tendril_tcp() -> (Server, SocketAddr) {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    manager.start(lines, nodelay()).await.unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (Server::Tokio(manager), addr)
}

async fn async_std_tcp() -> (Server, SocketAddr) {
    let manager = tendril_async_std::get_manager("tcp", "127.0.0.1:0").unwrap();
    manager.start(lines, nodelay()).await.unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (Server::AsyncStd(manager), addr)
}

async fn blocking_tcp() -> (Server, SocketAddr) {
    let manager = tendril_blocking::get_manager("tcp", "127.0.0.1:0").unwrap();
    manager.start(lines, nodelay()).unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (Server::Blocking(manager), addr)
}

async fn mio_tcp() -> (Server, SocketAddr) {
    let manager = tendril_mio::get_manager("tcp", "127.0.0.1:0").unwrap();
    manager.start(lines, nodelay()).await.unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (Server::Mio(manager), addr)
}

async fn tokio_tcp() -> (Server, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let (sink, stream) = Framed::new(stream, LinesCodec::new()).split();
                let _ = stream.forward(sink).await;
            });
        }
    });
    (Server::Plain, addr)
}

/// The TCP limit: read into a buffer, write back everything up to its last `\n`, keep the rest.
async fn limit_tcp() -> (Server, SocketAddr) {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let mut buf = bytes::BytesMut::with_capacity(64 * 1024);
                loop {
                    buf.reserve(16 * 1024);
                    match stream.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if let Some(end) = memchr::memrchr(b'\n', &buf) {
                        let lines = buf.split_to(end + 1);
                        if stream.write_all(&lines).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (Server::Plain, addr)
}

/// The UDP limit: batches in (`recvmmsg`, GRO), each batch from one peer back out in one send
/// (GSO), no state per peer.
async fn limit_udp() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(UDP_RECV_BUFFER)
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    let state = quinn_udp::UdpSocketState::new((&socket).into()).unwrap();
    let socket = UdpSocket::from_std(socket).unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        const SLOT: usize = 64 * 1024;
        let mut buf = vec![0u8; SLOT * quinn_udp::BATCH_SIZE];
        let mut meta = [quinn_udp::RecvMeta::default(); quinn_udp::BATCH_SIZE];
        let max_segments = state.max_gso_segments();
        loop {
            let received = {
                let mut chunks = buf.chunks_mut(SLOT);
                let mut slots: [std::io::IoSliceMut<'_>; quinn_udp::BATCH_SIZE] =
                    std::array::from_fn(|_| {
                        std::io::IoSliceMut::new(chunks.next().unwrap_or_default())
                    });
                socket.try_io(tokio::io::Interest::READABLE, || {
                    state.recv((&socket).into(), &mut slots, &mut meta)
                })
            };
            let n = match received {
                Ok(n) => n,
                // Drained: wait for more (the readiness was cleared by `try_io`).
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if socket.readable().await.is_err() {
                        return;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            // Single datagrams, whoever sent them, go back in one `sendmmsg`; a GRO batch from
            // one peer in GSO sends. A send failing (the socket's buffer full) drops replies,
            // as UDP may.
            send_singles(&socket, &buf, SLOT, &meta[..n]);
            for (slot, meta) in meta[..n].iter().enumerate() {
                let data = &buf[slot * SLOT..slot * SLOT + meta.len];
                let stride = meta.stride.clamp(1, meta.len.max(1));
                if data.len() <= stride {
                    continue;
                }
                for run in data.chunks(stride * max_segments.max(1)) {
                    let transmit = quinn_udp::Transmit {
                        destination: meta.addr,
                        ecn: None,
                        contents: run,
                        segment_size: (run.len() > stride).then_some(stride),
                        src_ip: None,
                    };
                    let _ = state.try_send((&socket).into(), &transmit);
                }
            }
        }
    });
    addr
}

/// The UDP limit's batched send: every datagram of `received` that is no GRO batch, back to its
/// sender, in one `sendmmsg`.
fn send_singles(socket: &UdpSocket, buf: &[u8], slot: usize, received: &[quinn_udp::RecvMeta]) {
    use rustix::net::{addr::SocketAddrArg, MMsgHdr, SendAncillaryBuffer, SendFlags};
    let singles = || {
        received
            .iter()
            .enumerate()
            .filter(|(_, meta)| meta.len <= meta.stride.max(1))
    };
    let addrs: Vec<_> = singles().map(|(_, meta)| meta.addr.as_any()).collect();
    let iovs: Vec<_> = singles()
        .map(|(i, meta)| [std::io::IoSlice::new(&buf[i * slot..i * slot + meta.len])])
        .collect();
    let mut controls: Vec<_> = addrs
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut messages: Vec<_> = addrs
        .iter()
        .zip(&iovs)
        .zip(&mut controls)
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    let mut sent = 0;
    while sent < messages.len() {
        match rustix::net::sendmmsg(socket, &mut messages[sent..], SendFlags::empty()) {
            Ok(n) => sent += n,
            Err(_) => sent += 1,
        }
    }
}

/// Lines a TCP client keeps in flight: it writes them in batches of 256 and sends the next
/// batch once no more than `TCP_WINDOW - 256` are unanswered.
const TCP_WINDOW: u64 = 1024;

/// `connections` clients, all connected before the clock starts, each keeping `TCP_WINDOW`
/// lines in flight for `RUN`; returns lines echoed per second. (Without a window, the data in
/// flight is bounded only by the kernel's socket buffers, and with 1,000 connections the
/// figure swings by 4× from run to run as the kernel's TCP memory limits are reached.)
async fn tcp_load(addr: SocketAddr, connections: usize) -> f64 {
    const BATCH: u64 = 256;
    let line: Vec<u8> = [vec![b'x'; 63], vec![b'\n']].concat();
    let batch: Arc<Vec<u8>> = Arc::new(line.repeat(BATCH as usize));
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        streams.push(stream);
    }
    let start = Instant::now();
    let deadline = start + RUN;
    let mut tasks = Vec::new();
    for stream in streams {
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            let (rd, mut wr) = stream.into_split();
            let answered = Arc::new(tokio::sync::watch::Sender::new(0u64));
            let mut progress = answered.subscribe();
            let counter = answered.clone();
            let reader = tokio::spawn(async move {
                let mut rd = BufReader::with_capacity(64 * 1024, rd);
                let mut buf = Vec::with_capacity(64);
                let mut n = 0u64;
                loop {
                    buf.clear();
                    match rd.read_until(b'\n', &mut buf).await {
                        Ok(0) | Err(_) => return n,
                        Ok(_) => n += 1,
                    }
                    if n % BATCH == 0 {
                        counter.send_replace(n);
                    }
                }
            });
            let mut sent = 0u64;
            while Instant::now() < deadline {
                if progress
                    .wait_for(|answered| sent - answered <= TCP_WINDOW - BATCH)
                    .await
                    .is_err()
                {
                    break;
                }
                if wr.write_all(&batch).await.is_err() {
                    break;
                }
                sent += BATCH;
            }
            let _ = wr.shutdown().await;
            drop(answered);
            reader.await.unwrap_or(0)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn tendril_udp() -> (tendril_tokio::Manager, SocketAddr) {
    let manager = get_manager("udp", "127.0.0.1:0").unwrap();
    let wrapper = WrapperChain::new().chain(options::recv_buffer_size(UDP_RECV_BUFFER));
    manager
        .start(|_t: &mut Tendril| Ok(Echo), wrapper)
        .await
        .unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (manager, addr)
}

async fn tokio_udp() -> SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(UDP_RECV_BUFFER)
        .unwrap();
    socket.set_nonblocking(true).unwrap();
    let socket = UdpSocket::from_std(socket).unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut peers: HashMap<SocketAddr, u64> = HashMap::new();
        let mut buf = vec![0u8; 65_536];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            *peers.entry(from).or_default() += 1;
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// `clients` sockets, each keeping `window` datagrams in flight for `RUN`; replies per second.
/// A socket that hears nothing for 50 ms takes its datagrams as lost and sends a new window.
async fn udp_load(addr: SocketAddr, clients: usize, window: usize) -> f64 {
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            let payload = [7u8; 64];
            let mut buf = [0u8; 128];
            let mut replies = 0u64;
            let mut send = window;
            while Instant::now() < deadline {
                for _ in 0..send {
                    let _ = socket.send(&payload).await;
                }
                let reply = tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut buf));
                send = match reply.await {
                    Ok(Ok(_)) => {
                        replies += 1;
                        1
                    }
                    _ => window,
                };
            }
            replies
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

/// Raise the soft descriptor limit to the hard one (10,000 sockets in one process).
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Child role `server:KIND`: serve line echo on `plain` Tokio (`Framed<LinesCodec>`) or on a
/// driver ([`driver_manager`]), print the address, run until stdin closes.
fn idle_server(kind: &str) {
    if kind != "plain" {
        return serve("tcp", kind);
    }
    raise_fd_limit();
    let runtime = runtime();
    let (server, addr) = runtime.block_on(tokio_tcp());
    println!("{addr}");
    let _ = std::io::stdin().read_line(&mut String::new());
    runtime.block_on(server.stop());
}

/// A driver's manager for the comparison of drivers, each in a process of its own: `KIND` is
/// `tendril-tokio`, `tendril-uring`, or either with `-shards-N`.
fn driver_manager(proto: &str, kind: &str) -> tendril_net::runtime::Manager {
    let (driver, shards) = match kind.split_once("-shards-") {
        Some((driver, n)) => (driver, n.parse().unwrap()),
        None => (kind, 1),
    };
    match (driver, shards) {
        ("tendril-tokio", 1) => get_manager(proto, "127.0.0.1:0").unwrap(),
        ("tendril-tokio", n) => {
            tendril_tokio::get_sharded_manager(proto, "127.0.0.1:0", n).unwrap()
        }
        ("tendril-uring", n) => {
            tendril_uring::get_sharded_manager(proto, "127.0.0.1:0", n).unwrap()
        }
        _ => panic!("unknown driver {kind}"),
    }
}

/// Child role `serve:PROTO:KIND`: a line echo (TCP) or datagram echo (UDP) on the driver
/// `KIND`; prints its address, runs until stdin closes.
fn serve(proto: &str, kind: &str) {
    raise_fd_limit();
    let runtime = runtime();
    let manager = driver_manager(proto, kind);
    runtime
        .block_on(async {
            if proto == "udp" {
                let wrapper = WrapperChain::new().chain(options::recv_buffer_size(UDP_RECV_BUFFER));
                manager.start(|_t: &mut Tendril| Ok(Echo), wrapper).await
            } else {
                manager.start(lines, nodelay()).await
            }
        })
        .unwrap();
    println!("{}", manager.local_addr().unwrap().ip().unwrap());
    let _ = std::io::stdin().read_line(&mut String::new());
    runtime.block_on(manager.stop());
}

/// A server in a child process, and the CPU time it has used so far (user + system, from
/// `/proc/PID/stat`: the counters `getrusage` reports).
struct Child(std::process::Child);

impl Child {
    fn start(role: String) -> (Child, SocketAddr) {
        let exe = std::env::current_exe().unwrap();
        let mut child = Command::new(exe)
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        (Child(child), line.trim().parse().unwrap())
    }

    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).unwrap();
        // Fields after the command name (which may hold spaces), from field 3 on.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        ticks as f64 / 100.0 // USER_HZ
    }

    fn stop(mut self) {
        drop(self.0.stdin.take());
        self.0.wait().unwrap();
    }
}

/// The drivers side by side, each server in a process of its own: frames per second under the
/// same load, and the server's CPU seconds per million frames, which does not depend on how
/// the two cores are shared between server and load.
fn compare_drivers(runtime: &tokio::runtime::Runtime) {
    let all = [
        "tendril-tokio",
        "tendril-tokio-shards-2",
        "tendril-uring",
        "tendril-uring-shards-2",
    ];
    // `TENDRIL_SOCKET_DRIVERS=tendril-uring,tcp-1000` picks drivers and scenarios.
    let picked = std::env::var("TENDRIL_SOCKET_DRIVERS").unwrap_or_default();
    let wants = |s: &str| picked.is_empty() || picked.split(',').any(|p| p == s);
    let kinds: Vec<&str> = all
        .into_iter()
        .filter(|k| *k == all[0] || wants(k))
        .collect();
    let scenarios: [(&str, usize, usize); 5] = [
        ("tcp", 1, 0),
        ("tcp", 64, 0),
        ("tcp", 1_000, 0),
        ("udp", 1, 8),
        ("udp", 1_000, 4),
    ];
    for (proto, count, window) in scenarios {
        if !picked.is_empty()
            && !wants(&format!("{proto}-{count}"))
            && scenarios.iter().any(|(p, c, _)| wants(&format!("{p}-{c}")))
        {
            continue;
        }
        let mut baseline = None;
        for &kind in &kinds {
            let (server, addr) = Child::start(format!("serve:{proto}:{kind}"));
            let cpu = server.cpu_seconds();
            let rate = runtime.block_on(async {
                if proto == "tcp" {
                    tcp_load(addr, count).await
                } else {
                    udp_load(addr, count, window).await
                }
            });
            let cpu = server.cpu_seconds() - cpu;
            server.stop();
            let frames = rate * RUN.as_secs_f64();
            let base = *baseline.get_or_insert(rate);
            let what = if proto == "tcp" {
                format!("TCP pipelined echo, 64 B lines, {count} conn")
            } else {
                format!("UDP echo, 64 B, {count} client sockets × {window} in flight")
            };
            println!(
                "| {what}, {kind} (own process) | {:.2} M frames/s, {:.3} CPU s per M frames | {:.2} M frames/s (tendril-tokio) | {:.2}× |",
                rate / 1e6,
                cpu / (frames / 1e6),
                base / 1e6,
                rate / base
            );
        }
    }
}

/// Child role `client:ADDR`: open `IDLE` connections, send a line on each and read it back,
/// print `ready`, hold them until stdin closes.
fn idle_client(addr: SocketAddr) {
    raise_fd_limit();
    let runtime = runtime();
    let _clients = runtime.block_on(async {
        let mut clients = Vec::with_capacity(IDLE);
        for _ in 0..IDLE {
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(b"hi\n").await.unwrap();
            clients.push(BufReader::new(c));
        }
        for c in clients.iter_mut() {
            let mut line = String::new();
            c.read_line(&mut line).await.unwrap();
        }
        clients
    });
    println!("ready");
    let _ = std::io::stdin().read_line(&mut String::new());
}

/// Resident bytes per idle connection of the server `kind`, each side in a process of its own.
fn idle_rss(kind: &str) -> f64 {
    let exe = std::env::current_exe().unwrap();
    let child = |role: String| {
        Command::new(&exe)
            .env(ROLE, role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first_line = |c: &mut std::process::Child| {
        let mut line = String::new();
        std::io::BufReader::new(c.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line.trim().to_string()
    };
    let mut server = child(format!("server:{kind}"));
    let addr = first_line(&mut server);
    let before = rss_kib(server.id());
    let mut client = child(format!("client:{addr}"));
    assert_eq!(first_line(&mut client), "ready");
    // Let the server's tasks settle after their last read.
    std::thread::sleep(Duration::from_millis(200));
    let after = rss_kib(server.id());
    for mut c in [client, server] {
        drop(c.stdin.take());
        c.wait().unwrap();
    }
    (after.saturating_sub(before) * 1024) as f64 / IDLE as f64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    if let Ok(role) = std::env::var(ROLE) {
        match role.split_once(':') {
            Some(("server", kind)) => idle_server(kind),
            Some(("client", addr)) => idle_client(addr.parse().unwrap()),
            // For profiling a server started with `serve:…` by hand.
            Some(("load", what)) => {
                let (count, addr) = what.split_once(':').unwrap();
                let rate =
                    runtime().block_on(tcp_load(addr.parse().unwrap(), count.parse().unwrap()));
                println!("{:.2} M lines/s", rate / 1e6);
            }
            Some(("serve", what)) => {
                let (proto, kind) = what.split_once(':').unwrap();
                serve(proto, kind);
            }
            _ => panic!("unknown role {role}"),
        }
        return;
    }
    let picked = std::env::var("TENDRIL_SOCKET_BENCH").unwrap_or_default();
    let wants = |s: &str| picked.is_empty() || picked.split(',').any(|p| p == s);
    println!("| figure | tendril | plain tokio | ratio |");
    println!("| --- | --- | --- | --- |");
    let runtime = runtime();
    if wants("tcp") {
        runtime.block_on(async {
            for connections in [1, 64] {
                let (server, addr) = tokio_tcp().await;
                let theirs = tcp_load(addr, connections).await;
                server.stop().await;
                let (server, addr) = limit_tcp().await;
                let limit = tcp_load(addr, connections).await;
                server.stop().await;
                println!(
                    "| TCP pipelined echo, 64 B lines, {connections} conn, plain tokio, of the limit | {:.2} M lines/s (Framed<LinesCodec>) | {:.2} M lines/s (memchr echo, no framing) | {:.2}× |",
                    theirs / 1e6,
                    limit / 1e6,
                    theirs / limit
                );
                let mut tendril_tokio = None;
                for (driver, (server, addr)) in [
                    ("tendril-tokio", tendril_tcp().await),
                    ("tendril-async-std", async_std_tcp().await),
                    ("tendril-blocking", blocking_tcp().await),
                    ("tendril-mio", mio_tcp().await),
                ] {
                    let ours = tcp_load(addr, connections).await;
                    server.stop().await;
                    if driver == "tendril-tokio" {
                        tendril_tokio = Some(ours);
                    }
                    println!(
                        "| TCP pipelined echo, 64 B lines, {connections} conn, {driver} | {:.2} M lines/s | {:.2} M lines/s (Framed<LinesCodec>) | {:.2}× |",
                        ours / 1e6,
                        theirs / 1e6,
                        ours / theirs
                    );
                }
                if let Some(ours) = tendril_tokio {
                    println!(
                        "| TCP pipelined echo, 64 B lines, {connections} conn, tendril-tokio, of the limit | {:.2} M lines/s | {:.2} M lines/s (memchr echo, no framing) | {:.2}× |",
                        ours / 1e6,
                        limit / 1e6,
                        ours / limit
                    );
                }
            }
        });
    }
    if wants("udp") {
        runtime.block_on(async {
            for (clients, window) in [(1, 8), (1_000, 4)] {
                let (manager, addr) = tendril_udp().await;
                let ours = udp_load(addr, clients, window).await;
                manager.stop().await;
                let theirs = udp_load(tokio_udp().await, clients, window).await;
                let limit = udp_load(limit_udp().await, clients, window).await;
                for (who, got) in [("tendril-tokio", ours), ("plain tokio", theirs)] {
                    println!(
                        "| UDP echo, 64 B, {clients} client sockets × {window} in flight, {who}, of the limit | {:.0} k replies/s | {:.0} k replies/s (recvmmsg, sendmmsg + GSO, no peer state) | {:.2}× |",
                        got / 1e3,
                        limit / 1e3,
                        got / limit
                    );
                }
                println!(
                    "| UDP echo, 64 B, {clients} client sockets × {window} in flight, tendril-tokio | {:.0} k replies/s | {:.0} k replies/s (UdpSocket + HashMap) | {:.2}× |",
                    ours / 1e3,
                    theirs / 1e3,
                    ours / theirs
                );
            }
        });
    }
    if wants("drivers") {
        compare_drivers(&runtime);
    }
    drop(runtime);
    if wants("idle") {
        let theirs = idle_rss("plain");
        for kind in ["tendril-tokio", "tendril-uring"] {
            let ours = idle_rss(kind);
            println!(
                "| resident memory per idle TCP connection ({IDLE}, server process only), {kind} | {ours:.0} B | {theirs:.0} B (Framed<LinesCodec>) | {:.2}× |",
                ours / theirs
            );
        }
    }
}
