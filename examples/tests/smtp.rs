//! The `smtp` binary, started for real on loopback and driven by real clients: Python's
//! smtplib, raw TCP (pipelining, the STARTTLS injection), rustls, and swaks.
//!
//! A missing client (python3, swaks) skips its test with a notice, unless
//! `TENDRIL_REQUIRE_CLIENTS=1` (as in CI), which makes it fail.

mod clients;

use clients::{PYTHON3, SWAKS};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const SMTP: &str = env!("CARGO_BIN_EXE_smtp");
/// The longest any one wait may take.
const LIMIT: Duration = Duration::from_secs(30);

/// A scratch directory for one test (mail, certificates, the server's log); removed on drop.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tendril-smtp-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("mail")).unwrap();
        TestDir(dir)
    }

    fn mail(&self) -> PathBuf {
        self.0.join("mail")
    }

    /// A self-signed certificate for localhost: (certificate, key) PEM files.
    fn cert(&self) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let (cert_path, key_path) = (self.0.join("cert.pem"), self.0.join("key.pem"));
        fs::write(&cert_path, cert.pem()).unwrap();
        fs::write(&key_path, key.serialize_pem()).unwrap();
        (path(&cert_path), path(&key_path))
    }

    /// What the server logged so far.
    fn log(&self) -> String {
        fs::read_to_string(self.0.join("server.log")).unwrap_or_default()
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

/// The running server; killed when dropped.
struct Running {
    child: Child,
    addr: String,
    port: u16,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `smtp` on 127.0.0.1 with its mail in `dir` and `extra` arguments; wait for its
/// `listening on ADDR` line. It logs at debug level to `server.log` in `dir`.
fn start(dir: &TestDir, extra: &[&str]) -> Running {
    let log = fs::File::create(dir.0.join("server.log")).unwrap();
    let mut child = Command::new(SMTP)
        .args(["--listen", "127.0.0.1:0", "--maildir", &path(&dir.mail())])
        .args(extra)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
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
        .recv_timeout(LIMIT)
        .expect("the server printed no 'listening on' line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}; log:\n{}", dir.log()))
        .to_owned();
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    Running { child, addr, port }
}

/// The stored messages, oldest first, once there are `n` of them (waits at most `LIMIT`).
fn messages(dir: &TestDir, n: usize) -> Vec<String> {
    let deadline = Instant::now() + LIMIT;
    loop {
        let mut names: Vec<String> = fs::read_dir(dir.mail())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".eml"))
            .collect();
        if names.len() >= n {
            assert_eq!(names.len(), n, "too many messages: {names:?}");
            // <unix-millis>.<pid>.<counter>.eml
            names.sort_by_key(|name| {
                let parts: Vec<u64> = name
                    .split('.')
                    .take(3)
                    .map(|p| p.parse().unwrap())
                    .collect();
                (parts[0], parts[2])
            });
            return names
                .iter()
                .map(|name| fs::read_to_string(dir.mail().join(name)).unwrap())
                .collect();
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages stored; log:\n{}",
            names.len(),
            dir.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The message as the client sent it, without the envelope headers on top.
fn body(stored: &str) -> &str {
    // The Received header comes last of them and ends with the date.
    stored.split_once(" +0000\r\n").unwrap().1
}

/// Run a child to its end; kill it and fail after `LIMIT`.
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(LIMIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &id.to_string()])
                .status();
            panic!("{command:?} did not finish within {LIMIT:?}");
        }
    }
}

/// Run a Python script (`python3 -c`) with arguments; it must exit 0. Returns its stdout.
fn python(dir: &TestDir, script: &str, args: &[&str]) -> String {
    let mut command = Command::new("python3");
    command.arg("-c").arg(script).arg("--").args(args);
    let output = run(command);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "python failed ({}):\n{stdout}\n{}\nserver log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        dir.log()
    );
    stdout
}

#[test]
fn smtplib_sends_to_two_recipients_and_the_file_has_the_envelope_and_unstuffed_lines() {
    if !PYTHON3.available(
        "smtplib_sends_to_two_recipients_and_the_file_has_the_envelope_and_unstuffed_lines",
    ) {
        return;
    }
    let dir = TestDir::new("smtplib");
    let server = start(&dir, &["--hostname", "mx.test"]);
    let script = r#"
import smtplib, sys
port = int(sys.argv[2])
msg = ("From: a@example.com\r\nTo: b@example.com, c@example.com\r\nSubject: test\r\n\r\n"
       "hello\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n")
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    code, _ = s.ehlo("client.example")
    assert code == 250, code
    assert s.has_extn("pipelining") and s.has_extn("size"), s.esmtp_features
    assert s.esmtp_features["size"] == "10485760", s.esmtp_features
    assert not s.has_extn("starttls"), s.esmtp_features
    refused = s.sendmail("a@example.com", ["b@example.com", "c@example.com"], msg)
    assert refused == {}, refused
    assert s.noop()[0] == 250
print("sent")
"#;
    let port = server.port.to_string();
    assert_eq!(python(&dir, script, &[&port]), "sent\n");
    let stored = messages(&dir, 1);
    let m = &stored[0];
    assert!(
        m.starts_with(
            "Return-Path: <a@example.com>\r\n\
             X-Tendril-Rcpt-To: <b@example.com>\r\n\
             X-Tendril-Rcpt-To: <c@example.com>\r\n\
             Received: from client.example ([127.0.0.1])\r\n\tby mx.test (Tendril) with ESMTP id "
        ),
        "{m}"
    );
    assert_eq!(
        body(m),
        "From: a@example.com\r\nTo: b@example.com, c@example.com\r\nSubject: test\r\n\r\n\
         hello\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
    );
    // Only finished messages are visible: no temporary files left.
    assert_eq!(fs::read_dir(dir.mail()).unwrap().count(), 1);
}

#[test]
fn smtplib_starttls_with_a_trusted_certificate_delivers() {
    if !PYTHON3.available("smtplib_starttls_with_a_trusted_certificate_delivers") {
        return;
    }
    let dir = TestDir::new("smtplib-tls");
    let (cert, key) = dir.cert();
    let server = start(&dir, &["--tls-cert", &cert, "--tls-key", &key]);
    let script = r#"
import smtplib, ssl, sys
port, ca = int(sys.argv[2]), sys.argv[3]
context = ssl.create_default_context(cafile=ca)
with smtplib.SMTP("localhost", port, timeout=20) as s:
    s.ehlo("client.example")
    assert s.has_extn("starttls"), s.esmtp_features
    code, _ = s.starttls(context=context)
    assert code == 220, code
    s.ehlo("client.example")
    assert not s.has_extn("starttls"), s.esmtp_features
    s.sendmail("a@example.com", ["b@example.com"], "Subject: tls\r\n\r\nsecret\r\n")
    print(s.sock.version())
"#;
    let port = server.port.to_string();
    let version = python(&dir, script, &[&port, &cert]);
    assert!(version.starts_with("TLSv1."), "{version}");
    let stored = messages(&dir, 1);
    assert!(stored[0].contains(" with ESMTPS id "), "{}", stored[0]);
    assert_eq!(body(&stored[0]), "Subject: tls\r\n\r\nsecret\r\n");
}

#[test]
fn smtplib_gets_552_for_a_message_too_big_and_the_session_goes_on() {
    if !PYTHON3.available("smtplib_gets_552_for_a_message_too_big_and_the_session_goes_on") {
        return;
    }
    let dir = TestDir::new("smtplib-big");
    let server = start(&dir, &["--max-size", "1000"]);
    let script = r#"
import smtplib, sys
port = int(sys.argv[2])
big = "Subject: big\r\n\r\n" + ("x" * 70 + "\r\n") * 100
with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
    s.ehlo("client.example")
    assert s.esmtp_features["size"] == "1000", s.esmtp_features
    # smtplib announces the size: refused at MAIL FROM.
    try:
        s.sendmail("a@example.com", ["b@example.com"], big)
        raise SystemExit("accepted a message announced too big")
    except smtplib.SMTPSenderRefused as e:
        assert e.smtp_code == 552, e
    # Without the announcement the body itself is refused, after its end.
    del s.esmtp_features["size"]
    try:
        s.sendmail("a@example.com", ["b@example.com"], big)
        raise SystemExit("accepted a body too big")
    except smtplib.SMTPDataError as e:
        assert e.smtp_code == 552, e
    assert s.noop()[0] == 250
    s.sendmail("a@example.com", ["b@example.com"], "Subject: small\r\n\r\nfits\r\n")
print("ok")
"#;
    let port = server.port.to_string();
    assert_eq!(python(&dir, script, &[&port]), "ok\n");
    let stored = messages(&dir, 1);
    assert_eq!(body(&stored[0]), "Subject: small\r\n\r\nfits\r\n");
}

/// A raw SMTP client over any stream.
struct Raw<S> {
    stream: S,
}

impl<S: Read + Write> Raw<S> {
    /// Read one line, byte by byte: nothing past it is taken from the socket.
    fn line(&mut self) -> String {
        let mut line = Vec::new();
        let mut byte = [0];
        while !line.ends_with(b"\r\n") {
            match self.stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                Ok(_) => panic!("EOF after {:?}", String::from_utf8_lossy(&line)),
                Err(e) => panic!(
                    "read failed after {:?}: {e}",
                    String::from_utf8_lossy(&line)
                ),
            }
        }
        String::from_utf8(line).unwrap()
    }

    /// Read one reply (all its lines); returns its code and its lines' texts.
    fn reply(&mut self) -> (u16, Vec<String>) {
        let mut texts = Vec::new();
        loop {
            let line = self.line();
            let code = line[..3].parse().unwrap();
            texts.push(line[4..line.len() - 2].to_owned());
            if line.as_bytes()[3] == b' ' {
                return (code, texts);
            }
        }
    }

    /// The codes of the next `n` replies.
    fn codes(&mut self, n: usize) -> Vec<u16> {
        (0..n).map(|_| self.reply().0).collect()
    }

    fn send(&mut self, data: &[u8]) {
        self.stream.write_all(data).unwrap();
        self.stream.flush().unwrap();
    }
}

fn connect(server: &Running) -> Raw<TcpStream> {
    let stream = TcpStream::connect(&server.addr).unwrap();
    stream.set_read_timeout(Some(LIMIT)).unwrap();
    stream.set_write_timeout(Some(LIMIT)).unwrap();
    Raw { stream }
}

#[test]
fn a_raw_client_pipelines_commands_and_sends_an_empty_body() {
    let dir = TestDir::new("pipelining");
    let server = start(&dir, &[]);
    let mut c = connect(&server);
    assert_eq!(c.reply().0, 220);
    // Four commands in one write; the server takes them one frame at a time.
    c.send(b"EHLO raw.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    let (code, ehlo) = c.reply();
    assert_eq!(code, 250);
    assert!(ehlo.iter().any(|l| l == "PIPELINING"), "{ehlo:?}");
    assert!(ehlo.iter().any(|l| l == "SIZE 10485760"), "{ehlo:?}");
    assert_eq!(c.codes(3), [250, 250, 354]);
    c.send(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n");
    assert_eq!(c.reply().0, 250);

    // An empty message: "." right after the 354, then more commands in the same write.
    c.send(b"MAIL FROM:<>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    assert_eq!(c.codes(3), [250, 250, 354]);
    c.send(b".\r\nNOOP\r\n");
    assert_eq!(c.codes(2), [250, 250]);

    // Even a body in the same write as its DATA (RFC 2920 says to wait for the 354; the framer
    // switch does not need it), and errors keep their places among the replies.
    c.send(
        b"MAIL FROM:<a@example.com>\r\nRCPT TO:<nobody>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n\
          ..dot\r\n.\r\nRCPT TO:<c@example.com>\r\nQUIT\r\n",
    );
    assert_eq!(c.codes(7), [250, 501, 250, 354, 250, 503, 221]);
    let mut rest = Vec::new();
    c.stream.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "{rest:?}");

    let stored = messages(&dir, 3);
    assert_eq!(body(&stored[0]), "Subject: pipelined\r\n\r\nbody\r\n");
    assert!(
        stored[1].starts_with("Return-Path: <>\r\n"),
        "{}",
        stored[1]
    );
    assert_eq!(body(&stored[1]), "");
    assert_eq!(body(&stored[2]), ".dot\r\n");
}

/// The reliability issue's reproduction: clients that send STARTTLS, read the 220 and hang up
/// are closed at once (before, 49 of 50 sessions stayed open, their sockets in CLOSE-WAIT). The
/// handshake timeout is off, so nothing but the hang-up can close them.
#[test]
fn clients_hanging_up_right_after_starttls_are_closed_at_once() {
    let dir = TestDir::new("starttls-hangup");
    let (cert, key) = dir.cert();
    let server = start(
        &dir,
        &[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--handshake-timeout",
            "off",
        ],
    );
    let clients: Vec<Raw<TcpStream>> = (0..50)
        .map(|_| {
            let mut c = connect(&server);
            assert_eq!(c.reply().0, 220);
            c.send(b"STARTTLS\r\n");
            assert_eq!(c.line(), "220 Ready to start TLS\r\n");
            c
        })
        .collect();
    for mut c in clients {
        c.stream.shutdown(std::net::Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        c.stream
            .read_to_end(&mut rest)
            .unwrap_or_else(|e| panic!("the session was not closed: {e}; log:\n{}", dir.log()));
    }
}

#[test]
fn plaintext_pipelined_after_starttls_is_not_executed() {
    let dir = TestDir::new("injection");
    let (cert, key) = dir.cert();
    let server = start(&dir, &["--tls-cert", &cert, "--tls-key", &key]);
    let mut c = connect(&server);
    assert_eq!(c.reply().0, 220);
    c.send(b"EHLO raw.example\r\nMAIL FROM:<a@example.com>\r\n");
    let (_, ehlo) = c.reply();
    assert!(ehlo.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    assert_eq!(c.reply().0, 250);

    // The injection: commands behind STARTTLS in the same packet.
    c.send(b"STARTTLS\r\nRSET\r\nRCPT TO:<victim@example.com>\r\n");
    assert_eq!(c.line(), "220 Ready to start TLS\r\n");
    // Had RSET or RCPT run, their plaintext replies would now arrive where the handshake
    // expects TLS records, and it would fail.
    let config = tendril_examples::client_tls(&cert).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = rustls::ClientConnection::new(config, name).unwrap();
    let mut c = Raw {
        stream: rustls::StreamOwned::new(tls, c.stream),
    };
    c.send(b"RCPT TO:<b@example.com>\r\n");
    assert_eq!(
        c.reply(),
        (503, vec!["Need MAIL before RCPT".to_owned()]),
        "the session was not reset by STARTTLS"
    );
    c.send(b"EHLO again.example\r\n");
    let (code, ehlo) = c.reply();
    assert_eq!(code, 250);
    assert!(!ehlo.iter().any(|l| l == "STARTTLS"), "{ehlo:?}");
    c.send(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n");
    assert_eq!(c.codes(3), [250, 250, 354]);
    c.send(b"Subject: over tls\r\n\r\nhi\r\n.\r\nQUIT\r\n");
    assert_eq!(c.codes(2), [250, 221]);

    let stored = messages(&dir, 1);
    assert!(stored[0].contains("X-Tendril-Rcpt-To: <b@example.com>\r\n"));
    assert!(!stored[0].contains("victim"));
    let log = dir.log();
    assert!(log.contains("command=STARTTLS"), "{log}");
    assert!(!log.contains("command=RSET"), "{log}");
    assert!(
        log.contains("discarded plaintext pipelined after STARTTLS"),
        "{log}"
    );
}

#[test]
fn swaks_delivers_with_pipelining_and_over_starttls() {
    if !SWAKS.available("swaks_delivers_with_pipelining_and_over_starttls") {
        return;
    }
    let dir = TestDir::new("swaks");
    let (cert, key) = dir.cert();
    let server = start(&dir, &["--tls-cert", &cert, "--tls-key", &key]);
    let target = server.addr.clone();
    let swaks = |extra: &[&str]| {
        let mut command = Command::new("swaks");
        command
            .args([
                "--server",
                &target,
                "--timeout",
                "20",
                "--ehlo",
                "swaks.example",
            ])
            .args(["--from", "sender@example.com"])
            .args(extra);
        let output = run(command);
        assert!(
            output.status.success(),
            "swaks failed ({}):\n{}\n{}\nserver log:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            dir.log()
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let transcript = swaks(&[
        "--to",
        "one@example.com,two@example.com",
        "--pipeline",
        "--header",
        "Subject: from swaks",
        "--body",
        "first line\n.a leading dot\nlast line",
    ]);
    assert!(transcript.contains("PIPELINING"), "{transcript}");
    let transcript = swaks(&["--to", "three@example.com", "--tls", "--body", "over tls"]);
    assert!(transcript.contains("STARTTLS"), "{transcript}");

    let stored = messages(&dir, 2);
    assert!(
        stored[0].starts_with(
            "Return-Path: <sender@example.com>\r\n\
             X-Tendril-Rcpt-To: <one@example.com>\r\n\
             X-Tendril-Rcpt-To: <two@example.com>\r\n\
             Received: from swaks.example"
        ),
        "{}",
        stored[0]
    );
    assert!(
        stored[0].contains("Subject: from swaks\r\n"),
        "{}",
        stored[0]
    );
    assert!(
        // swaks adds blank lines of its own after the body.
        body(&stored[0]).contains("\r\n\r\nfirst line\r\n.a leading dot\r\nlast line\r\n"),
        "{}",
        stored[0]
    );
    assert!(stored[1].contains("X-Tendril-Rcpt-To: <three@example.com>\r\n"));
    assert!(stored[1].contains(" with ESMTPS id "), "{}", stored[1]);
    assert!(
        body(&stored[1]).contains("\r\n\r\nover tls\r\n"),
        "{}",
        stored[1]
    );
}

#[cfg(unix)]
#[test]
fn smtp_exits_cleanly_on_ctrl_c() {
    let dir = TestDir::new("sigint");
    let mut server = start(&dir, &[]);
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "smtp did not exit after SIGINT");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
}

#[test]
fn bad_arguments_are_refused() {
    let dir = TestDir::new("args");
    let mail = path(&dir.mail());
    for args in [
        vec![
            "--listen",
            "127.0.0.1:0",
            "--maildir",
            &mail,
            "--max-size",
            "0",
        ],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--maildir",
            &mail,
            "--tls-cert",
            "x.pem",
        ],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--maildir",
            &mail,
            "--require-tls",
        ],
        vec![
            "--listen",
            "127.0.0.1:0",
            "--maildir",
            &mail,
            "--tls-cert",
            "/nonexistent",
            "--tls-key",
            "/nonexistent",
        ],
    ] {
        let mut command = Command::new(SMTP);
        command.args(&args);
        let output = run(command);
        assert!(!output.status.success(), "{args:?} was accepted");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
