//! Receive buffers are shared by a shard's connections. Peers that send without ever reading the
//! replies must not take them all: a connection the kit has stopped reading gives its buffers
//! back, and everyone else goes on being served.

use socket2::{Domain, Socket, Type};
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::Duration;
use tendril_core::{AppError, Application, Config, Line, Tendril};
use tendril_net::{options, WrapperChain};

/// Stalled connections: at the eight buffers each may hold, more than a shard's 1,024.
const STALLED: usize = 400;

struct Echo;

impl Application for Echo {
    fn recv_frame(&mut self, t: &mut Tendril, frame: bytes::Bytes) -> Result<(), AppError> {
        t.send_frame(frame)?;
        Ok(())
    }
}

/// Write lines to `addr` and never read the replies, with small socket buffers so that the
/// replies back up quickly; reports the connection once a write has made no progress for a
/// while (the server stopped reading it), and goes on writing until the test shuts it down.
fn stall(addr: SocketAddr, stalled: mpsc::Sender<TcpStream>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.set_send_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    let mut stream = TcpStream::from(socket);
    stream
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let block = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde\n".repeat(64);
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
                    let _ = stalled.send(stream.try_clone().unwrap());
                }
            }
            Err(_) => return, // shut down by the test
        }
    }
}

#[test]
fn peers_that_never_read_do_not_starve_the_others() {
    if let Err(why) = tendril_uring::available() {
        eprintln!("skipped: {why}");
        return;
    }
    let manager = tendril_uring::get_manager("tcp", "127.0.0.1:0").unwrap();
    let mut config = Config::default();
    // Small queues and socket buffers on both sides, so that the replies back up quickly.
    config.high_watermark = 16 * 1024;
    config.low_watermark = 4 * 1024;
    manager.set_config(config);
    let lines = |t: &mut Tendril| {
        t.set_recv_framer(Line::lf());
        t.set_send_framer(Line::lf());
        Ok(Echo)
    };
    let small = WrapperChain::new()
        .chain(options::recv_buffer_size(4096))
        .chain(options::send_buffer_size(4096));
    futures::executor::block_on(manager.start(lines, small)).unwrap();
    let addr = manager.local_addr().unwrap().ip().unwrap();

    let (tx, rx) = mpsc::channel();
    for _ in 0..STALLED {
        let tx = tx.clone();
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || stall(addr, tx))
            .unwrap();
    }
    let stalled: Vec<TcpStream> = (0..STALLED)
        .map(|_| rx.recv_timeout(Duration::from_secs(300)).unwrap())
        .collect();

    // Every one of them is stalled now; a newcomer is still answered.
    let fresh = TcpStream::connect(addr).unwrap();
    fresh
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    (&fresh).write_all(b"still there?\n").unwrap();
    let mut reply = String::new();
    BufReader::new(&fresh)
        .read_line(&mut reply)
        .expect("the newcomer is answered while 400 peers hold their replies unread");
    assert_eq!(reply, "still there?\n");

    for stream in stalled {
        let _ = stream.shutdown(std::net::Shutdown::Both);
    }
    futures::executor::block_on(manager.stop());
}
