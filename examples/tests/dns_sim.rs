//! The `dns` example on the test kit's hostile network ([`tendril_core::testkit::net`]): one
//! zone served over UDP and TCP on the same address, asked by a stub resolver whose datagrams
//! are lost, doubled and reordered, whose truncated answers send it to TCP, and whose TCP
//! connections are split, reset and hung up on.
//!
//! Every lookup ends with the zone's own answer (checked byte for byte against [`respond`]), or
//! with an error the resolver saw because the network cut its TCP connection. When it is over, no TCP connection and no UDP peer is left open on the server.
//!
//! `TENDRIL_SIM_SEEDS` sets how many seeds run (default 200); a failure prints its seed, and
//! `TENDRIL_SIM_SEED=<seed> cargo test -p tendril-examples --test dns_sim` replays it.

use bytes::Bytes;
use core::time::Duration;
use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tendril_core::testkit::net::{check, Faults, Handle, Net};
use tendril_core::tracker::{Tracker, TrackerConfig};
use tendril_core::{
    AppError, Application, Config, Framer, Identity, LengthPrefixed, Proto, Tendril,
};
use tendril_examples::dns::{acceptor, respond, Transport, Zone, TCP_IDLE_TIMEOUT};

const SERVER: &str = "10.0.0.53:53";
const RESOLVER: &str = "192.0.2.7:5353";
/// A UDP query unanswered for this long is sent again, up to [`TRIES`] times in all.
const RETRY: Duration = Duration::from_millis(100);
/// With a tenth of datagrams lost each way, a try fails about one time in five, so all eight
/// fail about twice in a million lookups: none of the seeds CI runs. A lookup that runs out
/// of tries is taken as the server's fault.
const TRIES: u32 = 8;

/// The questions: answers of every kind, and `big`, too large for UDP.
const QUESTIONS: &[(&str, RecordType)] = &[
    ("www.example.test.", RecordType::A),
    ("www.example.test.", RecordType::AAAA),
    ("nowhere.example.test.", RecordType::A),
    ("example.test.", RecordType::MX),
    ("chain.example.test.", RecordType::A),
    ("multi.example.test.", RecordType::TXT),
    ("host.lab.example.test.", RecordType::TXT),
    ("big.example.test.", RecordType::TXT),
];

/// A TCP client: keeps the answers it reads.
#[derive(Default)]
struct TcpClient(Vec<Bytes>);

impl Application for TcpClient {
    fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        self.0.push(frame);
        Ok(())
    }
}

type TcpEnd = Handle<(Tendril, TcpClient)>;

enum State {
    /// Asked over UDP `tries` times, the last at `sent_at`.
    Udp {
        sent_at: Duration,
        tries: u32,
    },
    /// Truncated over UDP; asked again over TCP.
    Tcp(TcpEnd),
    Answered,
    Failed(String),
}

struct Lookup {
    query: Vec<u8>,
    over_udp: Vec<u8>,
    over_tcp: Vec<u8>,
    state: State,
}

fn is_truncated(answer: &[u8]) -> bool {
    answer.get(2).is_some_and(|flags| flags & 0x02 != 0)
}

static ANSWERED_OVER_TCP: AtomicU64 = AtomicU64::new(0);
static FAILED: AtomicU64 = AtomicU64::new(0);
static ANSWERED: AtomicU64 = AtomicU64::new(0);

fn scenario(net: &mut Net, zone: &Arc<Zone>) {
    let server: SocketAddr = SERVER.parse().unwrap();
    let resolver: SocketAddr = RESOLVER.parse().unwrap();
    let mut config = TrackerConfig::default();
    config.idle_timeout = Duration::from_secs(2);
    let udp = net.udp(
        server,
        Tracker::new(
            Proto::UDP,
            config,
            || (Identity::new().boxed(), Identity::new().boxed()),
            acceptor(zone.clone()),
        ),
    );
    let mut tcp_config = Config::default();
    tcp_config.idle_timeout = Some(TCP_IDLE_TIMEOUT);
    let tcp = net.listen(
        server,
        move || Tendril::new(Proto::TCP, Identity::new(), Identity::new()).with_config(tcp_config),
        acceptor(zone.clone()),
    );
    // The questions in a seeded order, some twice, each with an ID of its own.
    let first_id = net.rng().next_u64() as u16;
    let count = 4 + net.rng().below(12) as usize;
    let mut lookups: Vec<Lookup> = (0..count)
        .map(|i| {
            let (qname, qtype) = QUESTIONS[net.rng().below(QUESTIONS.len() as u64) as usize];
            let mut message = Message::new();
            message
                .set_id(first_id.wrapping_add(i as u16))
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .set_recursion_desired(false)
                .add_query(Query::query(Name::from_ascii(qname).unwrap(), qtype));
            let query = message.to_vec().unwrap();
            Lookup {
                over_udp: respond(zone, &query, Transport::Udp).unwrap(),
                over_tcp: respond(zone, &query, Transport::Tcp).unwrap(),
                query,
                state: State::Udp {
                    sent_at: Duration::ZERO,
                    tries: 0,
                },
            }
        })
        .collect();
    let mut tcp_ends = Vec::new();
    for _ in 0..60_000 {
        let now = net.now();
        for lookup in &mut lookups {
            match &mut lookup.state {
                State::Udp { sent_at, tries } if *tries == 0 || now >= *sent_at + RETRY => {
                    assert!(*tries < TRIES, "no answer in {TRIES} UDP tries");
                    *tries += 1;
                    *sent_at = now;
                    net.send_datagram(resolver, server, lookup.query.clone());
                }
                State::Tcp(end) => {
                    let end = *end;
                    let (tendril, client) = net.get(end);
                    if let Some(answer) = client.0.first() {
                        assert_eq!(answer[..], lookup.over_tcp[..], "a wrong answer over TCP");
                        net.get_mut(end).0.close();
                        lookup.state = State::Answered;
                        ANSWERED_OVER_TCP.fetch_add(1, Ordering::Relaxed);
                    } else if tendril.is_closed() {
                        assert!(
                            net.disrupted(end),
                            "TCP closed with no answer and no fault: {:?}",
                            net.close_reason(end)
                        );
                        let reason = net.close_reason(end).unwrap_or_default().to_owned();
                        lookup.state = State::Failed(reason);
                    }
                }
                _ => {}
            }
        }
        // Answers over UDP, in whatever order and number they come.
        for (from, answer) in net.inbox(resolver) {
            assert_eq!(from, server);
            let id = answer.get(..2).expect("an answer with an ID");
            let lookup = lookups
                .iter_mut()
                .find(|l| l.query[..2] == *id)
                .expect("an answer to a question asked");
            assert_eq!(answer[..], lookup.over_udp[..], "a wrong answer over UDP");
            if !matches!(lookup.state, State::Udp { .. }) {
                continue; // a duplicate, or late: already taken
            }
            if is_truncated(&answer) {
                let mut tendril = Tendril::new(
                    Proto::TCP,
                    LengthPrefixed::u16_be(),
                    LengthPrefixed::u16_be(),
                );
                tendril
                    .send_frame(Bytes::from(lookup.query.clone()))
                    .unwrap();
                let link = net.connect(&tcp, tendril, TcpClient::default());
                tcp_ends.extend(link.server);
                lookup.state = State::Tcp(link.client);
            } else {
                lookup.state = State::Answered;
            }
        }
        let done = lookups
            .iter()
            .all(|l| matches!(l.state, State::Answered | State::Failed(_)));
        if done {
            break;
        }
        net.step();
    }
    for lookup in &lookups {
        match &lookup.state {
            State::Answered => ANSWERED.fetch_add(1, Ordering::Relaxed),
            State::Failed(reason) => {
                net.note(format!("a lookup failed: {reason}"));
                FAILED.fetch_add(1, Ordering::Relaxed)
            }
            _ => panic!("a lookup never ended"),
        };
    }
    // Whatever is left ends by itself, on virtual time: idle timeouts, closes, EOFs.
    net.run();
    for end in tcp_ends {
        assert!(
            net.get(end).0.is_closed(),
            "a TCP connection was left open on the server"
        );
    }
    assert_eq!(net.get(udp).len(), 0, "UDP peers were left in the table");
}

#[test]
fn every_lookup_gets_the_zone_answer_or_an_error_on_a_hostile_network() {
    let text = include_str!("../zones/example.test.zone");
    let zone = Arc::new(Zone::parse(text, None).unwrap());
    check(Faults::hostile(), 200, |net| scenario(net, &zone));
    let (answered, over_tcp, failed) = (
        ANSWERED.load(Ordering::Relaxed),
        ANSWERED_OVER_TCP.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
    );
    eprintln!("{answered} lookups answered ({over_tcp} over TCP after a truncated answer), {failed} failed with an error");
    if std::env::var(tendril_core::testkit::net::SEED_VAR).is_err() {
        assert!(over_tcp > 0, "no lookup went on to TCP");
        assert!(answered > 10 * failed, "too many lookups failed: {failed}");
    }
}
