//! The `echo` and `tendril` binaries, started for real on loopback and driven by real clients.

mod clients;

use clients::{OPENSSL, SOCAT};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A running binary; killed when dropped.
struct Running {
    child: Child,
    addr: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bin` with `args` and wait (at most 30 s) for its `listening on ADDR` line.
fn start(bin: &str, args: &[&str]) -> Running {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the server printed no 'listening on' line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Running { child, addr }
}

const ECHO: &str = env!("CARGO_BIN_EXE_echo");
const TENDRIL: &str = env!("CARGO_BIN_EXE_tendril");

fn timeouts(stream: &TcpStream) {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
}

#[test]
fn echo_over_tcp_with_line_and_length_framers() {
    let server = start(ECHO, &["--listen", "tcp://127.0.0.1:0", "--framer", "line"]);
    let mut client = TcpStream::connect(&server.addr).unwrap();
    timeouts(&client);
    client.write_all(b"hello\r\nworld\r\n").unwrap();
    let mut buf = [0; 14];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello\r\nworld\r\n");

    let server = start(
        ECHO,
        &["--listen", "tcp://[::1]:0", "--framer", "length:u16be"],
    );
    let mut client = TcpStream::connect(&server.addr).unwrap();
    timeouts(&client);
    client.write_all(b"\x00\x03abc\x00\x00").unwrap();
    let mut buf = [0; 7];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"\x00\x03abc\x00\x00");
}

/// Clients on their own connections (spread by the kernel over the server's shards), each
/// sending lines and reading every one back.
fn lines_come_back_on_each_connection(addr: &str) {
    let clients: Vec<TcpStream> = (0..8)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            timeouts(&c);
            c
        })
        .collect();
    for (i, mut client) in clients.into_iter().enumerate() {
        let lines = format!("hello {i}\r\nworld {i}\r\n");
        client.write_all(lines.as_bytes()).unwrap();
        let mut buf = vec![0; lines.len()];
        client.read_exact(&mut buf).unwrap();
        assert_eq!(buf, lines.as_bytes());
    }
}

#[test]
fn echo_on_the_uring_driver_with_two_shards_echoes_lines() {
    if let Err(reason) = tendril_uring::available() {
        println!("skipped: {reason}");
        return;
    }
    let server = start(
        ECHO,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--driver",
            "uring",
            "--shards",
            "2",
        ],
    );
    lines_come_back_on_each_connection(&server.addr);
}

#[test]
fn echo_on_the_tokio_driver_with_two_shards_echoes_lines() {
    let server = start(
        ECHO,
        &[
            "--listen",
            "tcp://127.0.0.1:0",
            "--driver",
            "tokio",
            "--shards",
            "2",
        ],
    );
    lines_come_back_on_each_connection(&server.addr);
}

#[test]
fn echo_over_udp_returns_each_datagram() {
    let server = start(
        ECHO,
        &["--listen", "udp://127.0.0.1:0", "--framer", "identity"],
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.connect(&server.addr).unwrap();
    for msg in [&b"one"[..], b"two", &[7u8; 30_000]] {
        client.send(msg).unwrap();
        let mut buf = vec![0; 65_536];
        let n = client.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], msg);
    }
}

/// Run `socat` with `args`, feed it `input`, return what it printed (10 s at most).
fn socat(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("socat")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat runs (checked by the test)");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(Duration::from_secs(10));
    let _ = child.kill();
    let _ = child.wait();
    out.expect("socat did not finish")
}

#[test]
fn socat_gets_a_udp_datagram_echoed() {
    if !SOCAT.available("socat_gets_a_udp_datagram_echoed") {
        return;
    }
    let server = start(
        ECHO,
        &["--listen", "udp://127.0.0.1:0", "--framer", "identity"],
    );
    // -t: wait that long for the reply after stdin ends.
    let target = format!("UDP4:{}", server.addr);
    let out = socat(&["-t", "2", "-", &target], b"a datagram via socat\n");
    assert_eq!(out, b"a datagram via socat\n");
}

#[cfg(unix)]
#[test]
fn socat_talks_to_echo_over_a_unix_socket() {
    if !SOCAT.available("socat_talks_to_echo_over_a_unix_socket") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tendril-socat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let url = format!("unix://{}", path.display());
    let _server = start(ECHO, &["--listen", &url, "--framer", "line:lf"]);
    let target = format!("UNIX-CONNECT:{}", path.display());
    let out = socat(&["-t", "2", "-", &target], b"one\ntwo\n");
    assert_eq!(out, b"one\ntwo\n");
}

#[cfg(unix)]
#[test]
fn echo_over_a_unix_socket() {
    let dir = std::env::temp_dir().join(format!("tendril-echo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("echo.sock");
    let url = format!("unix://{}", path.display());
    let _server = start(ECHO, &["--listen", &url, "--framer", "netstring"]);
    let mut client = std::os::unix::net::UnixStream::connect(&path).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    client.write_all(b"5:hello,").unwrap();
    let mut buf = [0; 8];
    client.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"5:hello,");
}

/// A self-signed certificate for localhost, written to PEM files.
fn cert_files(name: &str) -> (PathBuf, PathBuf) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tendril-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (cert_path, key_path)
}

#[test]
fn the_tendril_cli_talks_to_echo_over_tls() {
    let (cert, key) = cert_files("cli-tls");
    let server = start(
        ECHO,
        &[
            "--listen",
            "tls://127.0.0.1:0",
            "--framer",
            "line",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let port = server.addr.rsplit(':').next().unwrap();
    let mut cli = Command::new(TENDRIL)
        .args([
            "connect",
            &format!("tls://localhost:{port}"),
            "--framer",
            "line",
        ])
        .args(["--tls-ca", cert.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cli.stdin
        .take()
        .unwrap()
        .write_all(b"over tls\nsecond\n")
        .unwrap();
    // stdin closed: the CLI sends, closes gracefully and exits once the server closed too.
    let output = wait_with_timeout(cli, Duration::from_secs(20));
    assert_eq!(output, "over tls\nsecond\n");
}

/// The reliability issue's reproduction: TLS clients that send nothing, or half a ClientHello,
/// and hang up are closed at once (before, every socket stayed in CLOSE-WAIT until the server
/// stopped). The handshake timeout is off, so nothing but the hang-up can close them.
#[test]
fn tls_clients_hanging_up_mid_handshake_are_closed_at_once() {
    const HALF_A_HELLO: &[u8] = &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc];
    let server = start(
        ECHO,
        &[
            "--listen",
            "tls://127.0.0.1:0",
            "--handshake-timeout",
            "off",
        ],
    );
    let clients: Vec<TcpStream> = (0..100)
        .map(|i| {
            let mut c = TcpStream::connect(&server.addr).unwrap();
            timeouts(&c);
            if i % 2 == 1 {
                c.write_all(HALF_A_HELLO).unwrap();
            }
            c
        })
        .collect();
    for mut c in clients {
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.read_to_end(&mut rest)
            .expect("the server closes the connection (EOF within 10 s)");
    }
}

#[test]
fn openssl_s_client_gets_its_lines_echoed_over_tls() {
    if !OPENSSL.available("openssl_s_client_gets_its_lines_echoed_over_tls") {
        return;
    }
    let (cert, key) = cert_files("openssl");
    let server = start(
        ECHO,
        &[
            "--listen",
            "tls://127.0.0.1:0",
            "--framer",
            "line",
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let mut client = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect", &server.addr])
        .args(["-CAfile", cert.to_str().unwrap(), "-verify_return_error"])
        .args(["-servername", "localhost", "-verify_hostname", "localhost"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = client.stdin.take().unwrap();
    stdin.write_all(b"ping over openssl\r\n").unwrap();
    let stdout = client.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(Duration::from_secs(20)).expect("no echo");
    assert_eq!(line, "ping over openssl\r\n");
    drop(stdin);
    let _ = client.kill();
    let _ = client.wait();
}

/// Wait for a child's exit and return its stdout; kill it and fail after `limit`.
fn wait_with_timeout(mut child: Child, limit: Duration) -> String {
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    match rx.recv_timeout(limit) {
        Ok(out) => {
            let status = child.wait().unwrap();
            assert!(status.success(), "exit status {status}");
            out
        }
        Err(_) => {
            let _ = child.kill();
            panic!("the process did not finish within {limit:?}");
        }
    }
}

#[cfg(unix)]
#[test]
fn echo_exits_cleanly_on_ctrl_c() {
    let server = start(ECHO, &["--listen", "tcp://127.0.0.1:0"]);
    let pid = server.child.id().to_string();
    let status = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(status.success());
    let mut server = server;
    let (tx, rx) = mpsc::channel();
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().unwrap());
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("echo did not exit after SIGINT")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}
