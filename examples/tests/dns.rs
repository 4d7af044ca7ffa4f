//! The `dns` binary, started for real on loopback and asked by `dig` (when installed) and by
//! queries built with hickory-proto over std sockets; and the zone loader.

mod clients;

use clients::DIG;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc;
use std::time::Duration;
use tendril_examples::dns::{respond, Transport, Zone};

const DNS: &str = env!("CARGO_BIN_EXE_dns");
const ZONE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/zones/example.test.zone");
/// How long any single wait (a startup line, a response, a client process) may take.
const WAIT: Duration = Duration::from_secs(20);

/// A running server; killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `dns` with `args` and wait for its `listening on ADDR` line.
fn start(args: &[&str]) -> Running {
    let mut child = Command::new(DNS)
        .args(args)
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
    let line = match rx.recv_timeout(WAIT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("the server printed no 'listening on' line");
        }
    };
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .parse()
        .unwrap_or_else(|e| panic!("{line:?}: {e}"));
    Running { child, addr }
}

fn start_default() -> Running {
    start(&["--listen", "127.0.0.1:0"])
}

// ---- queries over std sockets ----------------------------------------------------------------

fn next_id() -> u16 {
    static ID: AtomicU16 = AtomicU16::new(0x1000);
    ID.fetch_add(1, Ordering::Relaxed)
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

/// A query without recursion desired and without EDNS.
fn query(qname: &str, qtype: RecordType) -> Message {
    let mut message = Message::new();
    message
        .set_id(next_id())
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(false)
        .add_query(Query::query(name(qname), qtype));
    message
}

/// The same query with an OPT record.
fn with_edns(mut message: Message, payload: u16, version: u8) -> Message {
    let mut edns = Edns::new();
    edns.set_max_payload(payload).set_version(version);
    message.set_edns(edns);
    message
}

fn udp_client(server: &Running) -> UdpSocket {
    let bind = if server.addr.is_ipv4() {
        "127.0.0.1:0"
    } else {
        "[::1]:0"
    };
    let socket = UdpSocket::bind(bind).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    socket.connect(server.addr).unwrap();
    socket
}

/// Receive one datagram; returns its raw bytes.
fn recv_datagram(socket: &UdpSocket) -> Vec<u8> {
    let mut buf = vec![0; 65_536];
    let n = socket
        .recv(&mut buf)
        .expect("no UDP response within the timeout");
    buf.truncate(n);
    buf
}

/// Send `message` over UDP; the raw response and its parse.
fn udp_ask(server: &Running, message: &Message) -> (Vec<u8>, Message) {
    let socket = udp_client(server);
    socket.send(&message.to_vec().unwrap()).unwrap();
    let wire = recv_datagram(&socket);
    let response = Message::from_vec(&wire).unwrap();
    assert_eq!(response.id(), message.id());
    (wire, response)
}

fn tcp_client(server: &Running) -> TcpStream {
    let stream = TcpStream::connect_timeout(&server.addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.set_write_timeout(Some(WAIT)).unwrap();
    stream
}

/// One 2-byte length-prefixed message (RFC 1035 §4.2.2).
fn tcp_frame(body: &[u8]) -> Vec<u8> {
    let mut frame = u16::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    frame
}

fn tcp_read(stream: &mut TcpStream) -> Message {
    let mut len = [0; 2];
    stream
        .read_exact(&mut len)
        .expect("no TCP response within the timeout");
    let mut body = vec![0; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut body).unwrap();
    Message::from_vec(&body).unwrap()
}

fn rdata(message: &Message) -> Vec<String> {
    message
        .answers()
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data()))
        .collect()
}

/// The number of TXT records at `big` in the shipped zone file.
fn big_txt_count() -> usize {
    std::fs::read_to_string(ZONE)
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("big ") && l.contains(" TXT "))
        .count()
}

// ---- over std sockets: UDP -------------------------------------------------------------------

#[test]
fn udp_answers_an_a_query_authoritatively() {
    let server = start_default();
    let q = query("www.example.test.", RecordType::A);
    let (_, r) = udp_ask(&server, &q);
    assert_eq!(r.message_type(), MessageType::Response);
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert!(r.authoritative());
    assert!(!r.truncated());
    assert!(!r.recursion_available());
    assert_eq!(r.queries(), q.queries());
    assert_eq!(rdata(&r), ["A 192.0.2.10"]);
    assert!(r.extensions().is_none(), "no OPT without one in the query");
}

#[test]
fn names_are_case_insensitive_and_the_question_is_echoed() {
    let server = start_default();
    let q = query("WwW.ExAmPlE.TeSt.", RecordType::AAAA);
    let (_, r) = udp_ask(&server, &q);
    assert_eq!(rdata(&r), ["AAAA 2001:db8::10"]);
    assert!(r.queries()[0].name().eq_case(&name("WwW.ExAmPlE.TeSt.")));
}

#[test]
fn mx_ns_and_cname_chains_carry_their_targets() {
    let server = start_default();
    let (_, r) = udp_ask(&server, &query("example.test.", RecordType::MX));
    assert_eq!(rdata(&r), ["MX 10 mail.example.test."]);
    let extra: Vec<String> = r.additionals().iter().map(|a| a.to_string()).collect();
    assert!(
        extra.iter().any(|a| a.contains("192.0.2.25")),
        "the mail host's address as additional data: {extra:?}"
    );

    let (_, r) = udp_ask(&server, &query("example.test.", RecordType::NS));
    assert_eq!(r.answers().len(), 2);
    assert_eq!(r.additionals().len(), 2, "glue for ns1 and ns2");

    let (_, r) = udp_ask(&server, &query("chain.example.test.", RecordType::A));
    assert_eq!(
        rdata(&r),
        [
            "CNAME alias.example.test.",
            "CNAME www.example.test.",
            "A 192.0.2.10"
        ]
    );
    let (_, r) = udp_ask(&server, &query("alias.example.test.", RecordType::CNAME));
    assert_eq!(rdata(&r), ["CNAME www.example.test."]);

    let (_, r) = udp_ask(&server, &query("multi.example.test.", RecordType::TXT));
    match r.answers()[0].data() {
        RData::TXT(txt) => assert_eq!(
            txt.txt_data(),
            [&b"first string"[..], b"second string"].map(Box::from)
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn negative_answers_nxdomain_nodata_and_refused() {
    let server = start_default();
    let (_, r) = udp_ask(&server, &query("nope.example.test.", RecordType::A));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert!(r.authoritative());
    assert!(r.answers().is_empty());
    assert_eq!(r.name_servers().len(), 1);
    let soa = &r.name_servers()[0];
    assert_eq!(soa.record_type(), RecordType::SOA);
    assert_eq!(soa.ttl(), 300, "the SOA MINIMUM (RFC 2308)");

    // A name that exists with other types, and an empty non-terminal: NODATA.
    for (qname, qtype) in [
        ("mail.example.test.", RecordType::AAAA),
        ("lab.example.test.", RecordType::A),
    ] {
        let (_, r) = udp_ask(&server, &query(qname, qtype));
        assert_eq!(r.response_code(), ResponseCode::NoError, "{qname}");
        assert!(r.answers().is_empty(), "{qname}");
        assert_eq!(r.name_servers()[0].record_type(), RecordType::SOA);
    }

    let (_, r) = udp_ask(&server, &query("example.com.", RecordType::A));
    assert_eq!(r.response_code(), ResponseCode::Refused);
    assert!(!r.authoritative());

    let mut chaos = query("version.bind.", RecordType::TXT);
    chaos.queries_mut()[0].set_query_class(DNSClass::CH);
    let (_, r) = udp_ask(&server, &chaos);
    assert_eq!(r.response_code(), ResponseCode::Refused);
}

#[test]
fn udp_truncates_to_512_bytes_or_the_edns_size() {
    let server = start_default();
    let count = big_txt_count();
    assert!(count >= 10, "the zone file has {count} big TXT records");

    // No EDNS: 512 bytes.
    let (wire, r) = udp_ask(&server, &query("big.example.test.", RecordType::TXT));
    assert!(r.truncated());
    assert!(wire.len() <= 512, "{} bytes", wire.len());
    assert!(r.answers().len() < count);

    // EDNS 1232 (dig's default): still too big; our OPT comes back.
    let q = with_edns(query("big.example.test.", RecordType::TXT), 1232, 0);
    let (wire, r) = udp_ask(&server, &q);
    assert!(r.truncated());
    assert!(wire.len() <= 1232, "{} bytes", wire.len());
    let edns = r.extensions().as_ref().expect("an OPT in the response");
    assert_eq!((edns.max_payload(), edns.version()), (1232, 0));

    // The client's larger size is respected: the whole set fits in 4096.
    let q = with_edns(query("big.example.test.", RecordType::TXT), 4096, 0);
    let (wire, r) = udp_ask(&server, &q);
    assert!(!r.truncated());
    assert!(wire.len() > 1500, "the set is {} bytes", wire.len());
    assert_eq!(r.answers().len(), count);

    // A small answer is not truncated.
    let (_, r) = udp_ask(&server, &query("www.example.test.", RecordType::A));
    assert!(!r.truncated());
}

#[test]
fn edns_versions_above_zero_get_badvers() {
    let server = start_default();
    let q = with_edns(query("www.example.test.", RecordType::A), 1232, 1);
    let (_, r) = udp_ask(&server, &q);
    // 16 is both BADVERS and BADSIG; hickory reads it back as the latter.
    assert_eq!(
        u16::from(r.response_code()),
        u16::from(ResponseCode::BADVERS)
    );
    assert!(r.answers().is_empty());
    let edns = r.extensions().as_ref().expect("BADVERS comes with an OPT");
    assert_eq!(edns.version(), 0);
}

#[test]
fn other_opcodes_and_question_counts_are_refused_properly() {
    let server = start_default();
    let mut status = query("www.example.test.", RecordType::A);
    status.set_op_code(OpCode::Status);
    let (_, r) = udp_ask(&server, &status);
    assert_eq!(r.response_code(), ResponseCode::NotImp);

    let mut two = query("www.example.test.", RecordType::A);
    two.add_query(Query::query(name("mail.example.test."), RecordType::A));
    let (_, r) = udp_ask(&server, &two);
    assert_eq!(r.response_code(), ResponseCode::FormErr);
}

#[test]
fn udp_garbage_is_dropped_or_formerr_and_the_server_keeps_answering() {
    let server = start_default();
    let socket = udp_client(&server);
    // Too short for a header: dropped.
    socket.send(b"\x01\x02\x03").unwrap();
    // A response, not a query: dropped.
    let mut response = query("www.example.test.", RecordType::A);
    response.set_message_type(MessageType::Response);
    socket.send(&response.to_vec().unwrap()).unwrap();
    // A header claiming one question, then junk: FORMERR with the same id.
    let mut garbage = vec![
        0xbe, 0xef, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    garbage.extend_from_slice(b"\x07garb");
    socket.send(&garbage).unwrap();
    let q = query("www.example.test.", RecordType::A);
    socket.send(&q.to_vec().unwrap()).unwrap();

    // The peer's datagrams are answered in order, so the first reply is the FORMERR: nothing
    // came back for the two dropped ones.
    let first = Message::from_vec(&recv_datagram(&socket)).unwrap();
    assert_eq!(first.id(), 0xbeef);
    assert_eq!(first.response_code(), ResponseCode::FormErr);
    assert!(first.recursion_desired(), "RD is copied");
    let second = Message::from_vec(&recv_datagram(&socket)).unwrap();
    assert_eq!(second.id(), q.id());
    assert_eq!(rdata(&second), ["A 192.0.2.10"]);

    // And from a fresh socket too.
    let (_, r) = udp_ask(&server, &query("mail.example.test.", RecordType::A));
    assert_eq!(rdata(&r), ["A 192.0.2.25"]);
}

// ---- over std sockets: TCP -------------------------------------------------------------------

#[test]
fn tcp_answers_pipelined_queries_in_order_on_one_connection() {
    let server = start_default();
    let mut stream = tcp_client(&server);
    let a = query("www.example.test.", RecordType::A);
    let mx = query("EXAMPLE.test.", RecordType::MX);
    let mut bytes = tcp_frame(&a.to_vec().unwrap());
    bytes.extend(tcp_frame(&mx.to_vec().unwrap()));
    stream.write_all(&bytes).unwrap();
    let first = tcp_read(&mut stream);
    let second = tcp_read(&mut stream);
    assert_eq!(first.id(), a.id());
    assert_eq!(rdata(&first), ["A 192.0.2.10"]);
    assert_eq!(second.id(), mx.id());
    assert_eq!(rdata(&second), ["MX 10 mail.example.test."]);

    // The same connection goes on: the big set comes whole, never truncated.
    let big = query("big.example.test.", RecordType::TXT);
    stream
        .write_all(&tcp_frame(&big.to_vec().unwrap()))
        .unwrap();
    let r = tcp_read(&mut stream);
    assert!(!r.truncated());
    assert_eq!(r.answers().len(), big_txt_count());
}

#[test]
fn tcp_listens_on_the_same_port_as_udp() {
    let server = start_default();
    assert_ne!(server.addr.port(), 0);
    let mut stream = tcp_client(&server);
    let q = query("alias.example.test.", RecordType::AAAA);
    stream.write_all(&tcp_frame(&q.to_vec().unwrap())).unwrap();
    let r = tcp_read(&mut stream);
    assert_eq!(rdata(&r), ["CNAME www.example.test.", "AAAA 2001:db8::10"]);
}

#[test]
fn tcp_garbage_gets_formerr_and_the_connection_keeps_serving() {
    let server = start_default();
    let mut stream = tcp_client(&server);
    let mut garbage = vec![
        0x12, 0x34, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    garbage.extend_from_slice(&[0xff; 9]);
    let q = query("www.example.test.", RecordType::A);
    let mut bytes = tcp_frame(b""); // an empty message: dropped
    bytes.extend(tcp_frame(b"\x00")); // too short for a header: dropped
    bytes.extend(tcp_frame(&garbage));
    bytes.extend(tcp_frame(&q.to_vec().unwrap()));
    stream.write_all(&bytes).unwrap();
    let first = tcp_read(&mut stream);
    assert_eq!(first.id(), 0x1234);
    assert_eq!(first.response_code(), ResponseCode::FormErr);
    let second = tcp_read(&mut stream);
    assert_eq!(second.id(), q.id());
    assert_eq!(rdata(&second), ["A 192.0.2.10"]);
}

#[test]
fn serves_ipv6_loopback_too() {
    if UdpSocket::bind("[::1]:0").is_err() {
        eprintln!("skipping: no IPv6 loopback here");
        return;
    }
    let server = start(&["--listen", "[::1]:0"]);
    assert!(server.addr.is_ipv6());
    let (_, r) = udp_ask(&server, &query("www.example.test.", RecordType::A));
    assert_eq!(rdata(&r), ["A 192.0.2.10"]);
    let mut stream = tcp_client(&server);
    let q = query("www.example.test.", RecordType::AAAA);
    stream.write_all(&tcp_frame(&q.to_vec().unwrap())).unwrap();
    assert_eq!(rdata(&tcp_read(&mut stream)), ["AAAA 2001:db8::10"]);
}

// ---- the process ---------------------------------------------------------------------------

/// Run a process to its end; kill it and fail after `WAIT`.
fn run_to_end(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(WAIT) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("{command:?} did not finish within {WAIT:?}");
        }
    }
}

#[test]
fn a_bad_zone_file_stops_the_server_with_its_line() {
    let dir = std::env::temp_dir().join(format!("tendril-dns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.zone");
    std::fs::write(
        &path,
        "$ORIGIN bad.test.\n$TTL 60\n@ NS ns1\nns1 A 192.0.2.1\nwww A 192.0.2.300\n",
    )
    .unwrap();
    let mut command = Command::new(DNS);
    command.args(["--listen", "127.0.0.1:0", "--zone", path.to_str().unwrap()]);
    let output = run_to_end(command);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no 'listening on' line");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.zone:5:"), "{stderr}");
}

#[cfg(unix)]
#[test]
fn exits_cleanly_on_ctrl_c() {
    let mut server = start_default();
    let pid = server.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let mut child = std::mem::replace(&mut server.child, Command::new("true").spawn().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = rx
        .recv_timeout(WAIT)
        .expect("dns did not exit after SIGINT")
        .unwrap();
    assert!(status.success(), "exit status {status}");
}

// ---- dig -----------------------------------------------------------------------------------

/// Ask the server with dig (no recursion, a short retry budget); its standard output.
fn dig(server: &Running, args: &[&str]) -> String {
    let mut command = Command::new("dig");
    command
        .arg(format!("@{}", server.addr.ip()))
        .args(["-p", &server.addr.port().to_string()])
        .args(["+norec", "+time=3", "+tries=2"])
        .args(args);
    let output = run_to_end(command);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "dig {args:?} failed: {stdout}");
    stdout
}

/// The answer section as (owner, type, rdata) from `+noall +answer` output.
fn answers(output: &str) -> Vec<(String, String, String)> {
    output
        .lines()
        .filter(|l| !l.starts_with(';') && !l.trim().is_empty())
        .map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            assert!(fields.len() >= 5, "unexpected answer line {l:?}");
            (
                fields[0].to_ascii_lowercase(),
                fields[3].to_owned(),
                fields[4..].join(" "),
            )
        })
        .collect()
}

/// The header flags dig prints (`qr aa tc` …).
fn flags(output: &str) -> Vec<String> {
    let line = output
        .lines()
        .find_map(|l| l.strip_prefix(";; flags: "))
        .unwrap_or_else(|| panic!("no flags line in {output}"));
    let flags = line.split(';').next().unwrap_or("");
    flags.split_whitespace().map(str::to_owned).collect()
}

fn status(output: &str) -> String {
    let at = output
        .find("status: ")
        .unwrap_or_else(|| panic!("no status in {output}"));
    output[at + 8..].split(',').next().unwrap_or("").to_owned()
}

fn a(owner: &str, rtype: &str, rdata: &str) -> (String, String, String) {
    (owner.into(), rtype.into(), rdata.into())
}

#[test]
fn dig_gets_a_records_over_udp_and_tcp() {
    if !DIG.available("dig_gets_a_records_over_udp_and_tcp") {
        return;
    }
    let server = start_default();
    for transport in ["+notcp", "+tcp"] {
        let out = dig(&server, &["www.example.test", "A", transport]);
        assert_eq!(status(&out), "NOERROR", "{out}");
        assert!(flags(&out).contains(&"aa".to_owned()), "{out}");
        let proto = if transport == "+tcp" {
            "(TCP)"
        } else {
            "(UDP)"
        };
        assert!(out.contains(proto), "{out}");
        let out = dig(
            &server,
            &["www.example.test", "A", transport, "+noall", "+answer"],
        );
        assert_eq!(
            answers(&out),
            [a("www.example.test.", "A", "192.0.2.10")],
            "{transport}"
        );
    }
}

#[test]
fn dig_gets_aaaa_mx_and_cname_answers() {
    if !DIG.available("dig_gets_aaaa_mx_and_cname_answers") {
        return;
    }
    let server = start_default();
    let out = dig(&server, &["www.example.test", "AAAA", "+noall", "+answer"]);
    assert_eq!(
        answers(&out),
        [a("www.example.test.", "AAAA", "2001:db8::10")]
    );
    let out = dig(&server, &["example.test", "MX", "+noall", "+answer"]);
    assert_eq!(
        answers(&out),
        [a("example.test.", "MX", "10 mail.example.test.")]
    );
    let out = dig(&server, &["alias.example.test", "A", "+noall", "+answer"]);
    assert_eq!(
        answers(&out),
        [
            a("alias.example.test.", "CNAME", "www.example.test."),
            a("www.example.test.", "A", "192.0.2.10"),
        ]
    );
}

#[test]
fn dig_sees_nxdomain_and_refused() {
    if !DIG.available("dig_sees_nxdomain_and_refused") {
        return;
    }
    let server = start_default();
    let out = dig(&server, &["nope.example.test", "A"]);
    assert_eq!(status(&out), "NXDOMAIN", "{out}");
    assert!(flags(&out).contains(&"aa".to_owned()), "{out}");
    let authority = dig(&server, &["nope.example.test", "A", "+noall", "+authority"]);
    assert!(authority.contains("SOA"), "{authority}");
    let out = dig(&server, &["example.com", "A"]);
    assert_eq!(status(&out), "REFUSED", "{out}");
}

#[test]
fn dig_sees_tc_over_udp_and_retries_over_tcp_for_big_answers() {
    if !DIG.available("dig_sees_tc_over_udp_and_retries_over_tcp_for_big_answers") {
        return;
    }
    let server = start_default();
    let out = dig(&server, &["big.example.test", "TXT", "+ignore", "+noedns"]);
    assert!(flags(&out).contains(&"tc".to_owned()), "{out}");
    assert!(out.contains("(UDP)"), "{out}");

    let out = dig(&server, &["big.example.test", "TXT"]);
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert!(out.contains("(TCP)"), "{out}");
    assert!(!flags(&out).contains(&"tc".to_owned()), "{out}");
    let out = dig(&server, &["big.example.test", "TXT", "+noall", "+answer"]);
    let got = answers(&out);
    assert_eq!(got.len(), big_txt_count(), "{out}");
    assert!(got
        .iter()
        .all(|(owner, t, _)| owner == "big.example.test." && t == "TXT"));
}

#[test]
fn dig_names_are_case_insensitive() {
    if !DIG.available("dig_names_are_case_insensitive") {
        return;
    }
    let server = start_default();
    let out = dig(&server, &["WwW.ExAmPlE.TeSt", "A", "+noall", "+answer"]);
    assert_eq!(answers(&out), [a("www.example.test.", "A", "192.0.2.10")]);
}

#[test]
fn dig_sees_our_edns_and_badvers() {
    if !DIG.available("dig_sees_our_edns_and_badvers") {
        return;
    }
    let server = start_default();
    let out = dig(&server, &["www.example.test", "A"]);
    assert!(
        out.contains("EDNS: version: 0") && out.contains("udp: 1232"),
        "{out}"
    );
    let out = dig(&server, &["www.example.test", "A", "+edns=1", "+noednsneg"]);
    assert_eq!(status(&out), "BADVERS", "{out}");
}

// ---- the zone loader -----------------------------------------------------------------------

#[test]
fn the_shipped_zone_loads() {
    let zone = Zone::load(std::path::Path::new(ZONE)).unwrap();
    assert_eq!(zone.origin(), &name("example.test."));
    let soa = zone.soa().expect("an SOA");
    assert_eq!(soa.name(), &name("example.test."));
    let www = zone.records(&name("WWW.example.test."));
    assert_eq!(www.len(), 2);
    assert_eq!(
        zone.records(&name("big.example.test.")).len(),
        big_txt_count()
    );
    assert!(
        zone.exists(&name("lab.example.test.")),
        "an empty non-terminal"
    );
    assert!(!zone.exists(&name("nope.example.test.")));
    assert!(zone.contains(&name("anything.example.test.")));
    assert!(!zone.contains(&name("example.com.")));
}

#[test]
fn zone_syntax_origin_ttl_class_at_and_relative_names() {
    let text = "\
$ORIGIN example.test.
$TTL 1h
@ IN SOA ns hostmaster 1 7200 3600 1209600 300
  NS ns
ns 60 A 192.0.2.1
   IN AAAA 2001:db8::1 ; same owner, a comment
abs.example.test. IN 120 TXT \"one\" \"two words\"
$ORIGIN sub.example.test.
deep CNAME ns.example.test.
";
    let zone = Zone::parse(text, None).unwrap();
    assert_eq!(zone.len(), 6);
    let ns = zone.records(&name("ns.example.test."));
    assert_eq!(ns.len(), 2);
    assert_eq!(ns[0].ttl(), 60);
    let txt = zone.records(&name("abs.example.test."));
    assert_eq!(txt[0].ttl(), 120);
    match txt[0].data() {
        RData::TXT(txt) => assert_eq!(txt.txt_data().len(), 2),
        other => panic!("{other:?}"),
    }
    let deep = zone.records(&name("deep.sub.example.test."));
    assert_eq!(deep[0].data().to_string(), "ns.example.test.");
}

#[test]
fn zone_errors_name_the_line() {
    let cases = [
        (
            "$ORIGIN x.test.\n$TTL 60\nwww A 192.0.2.1\nwww A not-an-address\n",
            Some(4),
        ),
        ("$ORIGIN x.test.\n$TTL 60\n\nwww BOGUS data\n", Some(4)),
        (
            "$ORIGIN x.test.\n$TTL 60\n@ SOA ns hm (\n 1 2 3 4 )\nwww A 192.0.2.1\n",
            Some(4),
        ),
        (
            "$ORIGIN x.test.\n$TTL 60\n@ SOA ns hm (\n 1 2 3 4 5 )\n@ SOA ns hm 2 2 3 4 5\n",
            Some(5),
        ),
        ("$TTL 60\nwww A 192.0.2.1\n", None),
    ];
    for (text, line) in cases {
        let error = Zone::parse(text, None).unwrap_err();
        assert_eq!(error.line, line, "{text:?}: {error}");
        if let Some(line) = line {
            assert!(
                error.to_string().starts_with(&format!("zone:{line}: ")),
                "{error}"
            );
        }
    }
    let error = Zone::parse("$TTL 60\nwww A 192.0.2.1\n", None).unwrap_err();
    assert!(error.message.contains("$ORIGIN"), "{error}");
}

#[test]
fn zone_content_checks() {
    let outside = "$ORIGIN x.test.\n$TTL 60\nwww.other.test. A 192.0.2.1\n";
    let error = Zone::parse(outside, None).unwrap_err();
    assert!(error.message.contains("outside the zone"), "{error}");
    let mixed = "$ORIGIN x.test.\n$TTL 60\nwww CNAME a\nwww A 192.0.2.1\n";
    let error = Zone::parse(mixed, None).unwrap_err();
    assert!(error.message.contains("CNAME and other"), "{error}");
    let misplaced = "$ORIGIN x.test.\n$TTL 60\nsub SOA ns hm 1 2 3 4 5\n";
    let error = Zone::parse(misplaced, None).unwrap_err();
    assert!(error.message.contains("not at the origin"), "{error}");
}

// ---- answers without sockets ---------------------------------------------------------------

/// Ask `zone` directly, as the server does for each frame.
fn ask(zone: &Zone, message: &Message) -> Message {
    let wire = respond(zone, &message.to_vec().unwrap(), Transport::Tcp).expect("an answer");
    Message::from_vec(&wire).unwrap()
}

#[test]
fn delegated_names_get_a_referral_with_glue() {
    let text = "\
$ORIGIN x.test.
$TTL 60
@ SOA ns hm 1 2 3 4 5
@ NS ns
ns A 192.0.2.1
child NS ns.child
child NS ns.elsewhere.test.
ns.child A 192.0.2.2
";
    let zone = Zone::parse(text, None).unwrap();
    for qname in ["child.x.test.", "www.deep.child.x.test."] {
        let r = ask(&zone, &query(qname, RecordType::A));
        assert_eq!(r.response_code(), ResponseCode::NoError, "{qname}");
        assert!(!r.authoritative(), "a referral is not authoritative");
        assert!(r.answers().is_empty());
        assert_eq!(r.name_servers().len(), 2);
        assert!(r
            .name_servers()
            .iter()
            .all(|n| n.record_type() == RecordType::NS));
        let glue: Vec<String> = r
            .additionals()
            .iter()
            .map(|a| a.data().to_string())
            .collect();
        assert_eq!(glue, ["192.0.2.2"]);
    }
}

#[test]
fn cname_loops_and_targets_outside_the_zone_end_the_chain() {
    let text = "$ORIGIN x.test.\n$TTL 60\na CNAME b\nb CNAME a\nout CNAME www.example.com.\n";
    let zone = Zone::parse(text, None).unwrap();
    let r = ask(&zone, &query("a.x.test.", RecordType::A));
    assert_eq!(r.response_code(), ResponseCode::NoError);
    assert_eq!(rdata(&r), ["CNAME b.x.test.", "CNAME a.x.test."]);
    let r = ask(&zone, &query("out.x.test.", RecordType::A));
    assert_eq!(rdata(&r), ["CNAME www.example.com."]);
    assert!(r.authoritative());
    // A CNAME to a name the zone does not have: NXDOMAIN for the target (RFC 6604), and no
    // SOA here because this zone has none.
    let zone = Zone::parse("$ORIGIN x.test.\n$TTL 60\na CNAME gone\n", None).unwrap();
    let r = ask(&zone, &query("a.x.test.", RecordType::A));
    assert_eq!(r.response_code(), ResponseCode::NXDomain);
    assert_eq!(rdata(&r), ["CNAME gone.x.test."]);
    assert!(r.name_servers().is_empty());
}

#[test]
fn responses_to_responses_and_short_messages_are_never_sent() {
    let zone = Zone::load(std::path::Path::new(ZONE)).unwrap();
    assert!(respond(&zone, b"", Transport::Udp).is_none());
    assert!(respond(&zone, &[0; 11], Transport::Udp).is_none());
    let mut response = query("www.example.test.", RecordType::A);
    response.set_message_type(MessageType::Response);
    assert!(respond(&zone, &response.to_vec().unwrap(), Transport::Udp).is_none());
    // A header and nothing else is a (questionless) query: FORMERR.
    let r = Message::from_vec(&respond(&zone, &[0; 12], Transport::Udp).unwrap()).unwrap();
    assert_eq!(r.response_code(), ResponseCode::FormErr);
}
