//! The one error policy of a UDP socket, shown through a runtime that can break its sockets:
//! when the socket itself fails, every peer on it closes with the error as its reason and the
//! socket's task ends; errors that are one peer's trouble leave everyone else served.

use bytes::Bytes;
use futures::future::BoxFuture;
use std::io;
use std::net::UdpSocket;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tendril_core::{AppError, Application, CloseReason, Tendril};
use tendril_net::runtime::{Interest, Listener, Manager, Readiness, Runtime, StreamIo, Timer};

/// The mio loop, with UDP receives that fail with `error` while `broken` is set; each failure
/// is reported on `failed`.
struct Breakable {
    inner: tendril_mio::Mio,
    broken: Arc<AtomicBool>,
    error: io::ErrorKind,
    failed: Sender<()>,
}

struct BreakableUdp {
    inner: Box<dyn Readiness>,
    broken: Arc<AtomicBool>,
    error: io::ErrorKind,
    failed: Sender<()>,
}

impl Readiness for BreakableUdp {
    fn fd(&self) -> BorrowedFd<'_> {
        self.inner.fd()
    }

    fn poll_ready(&self, cx: &mut Context<'_>, interest: Interest) -> Poll<io::Result<()>> {
        self.inner.poll_ready(cx, interest)
    }

    /// A receive that got datagrams fails instead (one shot: `broken` is cleared).
    fn try_io(&self, interest: Interest, op: &mut dyn FnMut() -> io::Result<()>) -> io::Result<()> {
        let result = self.inner.try_io(interest, op);
        if interest == Interest::Read && result.is_ok() && self.broken.swap(false, Ordering::AcqRel)
        {
            let _ = self.failed.send(());
            return Err(io::Error::new(self.error, "injected"));
        }
        result
    }
}

impl Runtime for Breakable {
    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.inner.spawn(task)
    }
    fn timer(&self) -> Box<dyn Timer> {
        self.inner.timer()
    }
    fn listener(&self, socket: socket2::Socket) -> io::Result<Box<dyn Listener>> {
        self.inner.listener(socket)
    }
    fn udp(&self, socket: UdpSocket) -> io::Result<Box<dyn Readiness>> {
        Ok(Box::new(BreakableUdp {
            inner: self.inner.udp(socket)?,
            broken: self.broken.clone(),
            error: self.error,
            failed: self.failed.clone(),
        }))
    }
    fn stream(&self, socket: socket2::Socket) -> io::Result<Box<dyn StreamIo>> {
        self.inner.stream(socket)
    }
}

/// Echoes, and reports its close reason.
struct Echo(Sender<String>);

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
    fn closed(&mut self, _: &Tendril, reason: &CloseReason) {
        let _ = self.0.send(reason.to_string());
    }
}

/// What a test holds: the manager, the switch, two peers that were answered, the closes and
/// the injected failures.
struct Setup {
    manager: Manager,
    broken: Arc<AtomicBool>,
    peers: [UdpSocket; 2],
    closes: Receiver<String>,
    failed: Receiver<()>,
}

/// A UDP echo manager on a runtime whose next receive fails with `error` once broken.
fn two_answered_peers(error: io::ErrorKind) -> Setup {
    let broken = Arc::new(AtomicBool::new(false));
    let (failed_tx, failed) = mpsc::channel();
    let runtime = Breakable {
        inner: tendril_mio::runtime().unwrap(),
        broken: broken.clone(),
        error,
        failed: failed_tx,
    };
    let manager = Manager::new(Arc::new(runtime), "udp", "127.0.0.1:0").unwrap();
    let (tx, closes) = mpsc::channel();
    futures::executor::block_on(manager.start(
        move |_: &mut Tendril| Ok(Echo(tx.clone())),
        Default::default(),
    ))
    .unwrap();
    let server = match manager.local_addr() {
        Some(tendril_core::Addr::Ip(addr)) => addr,
        other => panic!("bound to {other:?}"),
    };
    let peers = [(), ()].map(|()| {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        peer.connect(server).unwrap();
        peer.send(b"hello").unwrap();
        let mut buf = [0; 16];
        assert_eq!(peer.recv(&mut buf).unwrap(), 5);
        peer
    });
    Setup {
        manager,
        broken,
        peers,
        closes,
        failed,
    }
}

#[test]
fn a_failing_socket_closes_every_peer_with_the_error_and_its_task_ends() {
    let Setup {
        manager,
        broken,
        peers,
        closes,
        ..
    } = two_answered_peers(io::ErrorKind::InvalidInput);
    broken.store(true, Ordering::Release);
    peers[0].send(b"the last one").unwrap();
    for _ in 0..2 {
        let reason = closes.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(reason, "I/O error: the UDP socket failed: injected");
    }
    // The socket's task has ended: stop has nothing left to wait for.
    let started = std::time::Instant::now();
    futures::executor::block_on(manager.stop());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(manager.tendrils().is_empty());
}

#[test]
fn one_peers_trouble_leaves_the_socket_serving_everyone() {
    let Setup {
        manager,
        broken,
        peers,
        closes,
        failed,
    } = two_answered_peers(io::ErrorKind::ConnectionRefused);
    broken.store(true, Ordering::Release);
    peers[0].send(b"lost with the error").unwrap();
    failed.recv_timeout(Duration::from_secs(10)).unwrap();
    for peer in &peers {
        peer.send(b"still here").unwrap();
        let mut buf = [0; 16];
        assert_eq!(peer.recv(&mut buf).unwrap(), 10);
    }
    assert!(closes.try_recv().is_err(), "nobody was closed");
    futures::executor::block_on(manager.stop());
}
