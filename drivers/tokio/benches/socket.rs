//! Socket benchmarks over loopback, bounded in time: `tendril-tokio` against plain Tokio.
//!
//! `cargo bench -p tendril-tokio --bench socket` prints a Markdown table:
//! - TCP pipelined echo of 64-byte lines, 1 and 64 connections: `tendril-tokio` (Line framers)
//!   vs `Framed<TcpStream, LinesCodec>` forwarding its stream into its sink;
//! - UDP echo from 1 and 256 client sockets: `tendril-tokio` vs a plain `UdpSocket` loop that
//!   keeps a `HashMap` of peers;
//! - resident memory per idle TCP connection (9,000 connections: the fd limit here is 20,000).

use bytes::Bytes;
use futures::StreamExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tendril_core::{AppError, Application, Line, Tendril};
use tendril_tokio::{get_manager, options, WrapperChain};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::codec::{Framed, LinesCodec};

const RUN: Duration = Duration::from_secs(3);

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

async fn tendril_tcp() -> (tendril_tokio::Manager, SocketAddr) {
    let manager = get_manager("tcp", "127.0.0.1:0").unwrap();
    manager
        .start(
            |t: &mut Tendril| {
                t.set_recv_framer(Line::lf());
                t.set_send_framer(Line::lf());
                Ok(Echo)
            },
            WrapperChain::new().chain(options::nodelay(true)),
        )
        .await
        .unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (manager, addr)
}

async fn tokio_tcp() -> SocketAddr {
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
    addr
}

/// Each connection keeps `window` lines in flight for `RUN`; returns lines echoed per second.
async fn tcp_load(addr: SocketAddr, connections: usize) -> f64 {
    let line: Arc<Vec<u8>> = Arc::new([vec![b'x'; 63], vec![b'\n']].concat());
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let line = line.clone();
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (rd, mut wr) = stream.into_split();
            let window = 256usize;
            let batch: Vec<u8> = line.repeat(window);
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
                }
            });
            while Instant::now() < deadline {
                if wr.write_all(&batch).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
            reader.await.unwrap_or(0)
        }));
    }
    let start = Instant::now();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total as f64 / start.elapsed().as_secs_f64()
}

async fn tendril_udp() -> (tendril_tokio::Manager, SocketAddr) {
    let manager = get_manager("udp", "127.0.0.1:0").unwrap();
    manager
        .start(|_t: &mut Tendril| Ok(Echo), WrapperChain::new())
        .await
        .unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();
    (manager, addr)
}

async fn tokio_udp() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
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

/// `clients` sockets, each with 8 datagrams in flight, for `RUN`; replies per second.
async fn udp_load(addr: SocketAddr, clients: usize) -> f64 {
    let deadline = Instant::now() + RUN;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            socket.connect(addr).await.unwrap();
            let payload = [7u8; 64];
            let mut buf = [0u8; 128];
            let mut replies = 0u64;
            for _ in 0..8 {
                let _ = socket.send(&payload).await;
            }
            while Instant::now() < deadline {
                // A lost datagram times out; another is sent below either way.
                let reply = tokio::time::timeout(Duration::from_millis(50), socket.recv(&mut buf));
                if let Ok(Ok(_)) = reply.await {
                    replies += 1;
                }
                let _ = socket.send(&payload).await;
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

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Resident bytes per idle connection: `n` clients connect, send one line, get it back, idle.
async fn idle_rss(addr: SocketAddr, n: usize) -> f64 {
    let before = rss_kib();
    let mut clients = Vec::with_capacity(n);
    for _ in 0..n {
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"hi\n").await.unwrap();
        clients.push(c);
    }
    for c in clients.iter_mut() {
        let mut line = String::new();
        let mut r = BufReader::new(c);
        r.read_line(&mut line).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = rss_kib();
    drop(clients);
    (after.saturating_sub(before) * 1024) as f64 / n as f64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        println!("| figure | tendril-tokio | plain tokio | ratio |");
        println!("| --- | --- | --- | --- |");
        for connections in [1, 64] {
            let (manager, addr) = tendril_tcp().await;
            let ours = tcp_load(addr, connections).await;
            manager.stop().await;
            let theirs = tcp_load(tokio_tcp().await, connections).await;
            println!(
                "| TCP pipelined echo, 64 B lines, {connections} conn | {:.2} M lines/s | {:.2} M lines/s (Framed<LinesCodec>) | {:.2}× |",
                ours / 1e6,
                theirs / 1e6,
                ours / theirs
            );
        }
        for clients in [1, 256] {
            let (manager, addr) = tendril_udp().await;
            let ours = udp_load(addr, clients).await;
            manager.stop().await;
            let theirs = udp_load(tokio_udp().await, clients).await;
            println!(
                "| UDP echo, 64 B, {clients} client sockets | {:.0} k replies/s | {:.0} k replies/s (UdpSocket + HashMap) | {:.2}× |",
                ours / 1e3,
                theirs / 1e3,
                ours / theirs
            );
        }
        let (manager, addr) = tendril_tcp().await;
        let per = idle_rss(addr, 9_000).await;
        manager.stop().await;
        let theirs = idle_rss(tokio_tcp().await, 9_000).await;
        println!(
            "| resident memory per idle TCP connection (9,000, client side included) | {:.0} B | {:.0} B | {:.2}× |",
            per,
            theirs,
            per / theirs
        );
    });
}
