//! An authoritative DNS server for one zone, over UDP and TCP on the same port, with one
//! [`Application`] type: the story of the original Tendril's README, for real.
//!
//! The acceptor picks the framing by the tendril's protocol: on UDP each datagram is one
//! message ([`Identity`]); on TCP messages carry a 2-byte length prefix
//! ([`LengthPrefixed::u16_be`], RFC 1035 §4.2.2) and several may be pipelined on one
//! connection (RFC 7766). Everything else — zone lookups, EDNS(0), truncation — is the same
//! code for both, in [`respond`], which needs no socket:
//!
//! ```
//! use tendril_examples::dns::{respond, Transport, Zone};
//! use hickory_proto::op::{Message, Query};
//! use hickory_proto::rr::{Name, RecordType};
//!
//! let zone = Zone::parse("$ORIGIN example.test.\n$TTL 60\nwww A 192.0.2.1\n", None).unwrap();
//! let qname = Name::from_ascii("WWW.example.test.").unwrap();
//! let mut query = Message::new();
//! query.set_id(7).add_query(Query::query(qname, RecordType::A));
//! let wire = respond(&zone, &query.to_vec().unwrap(), Transport::Udp).unwrap();
//! let response = Message::from_vec(&wire).unwrap();
//! assert!(response.authoritative());
//! assert_eq!(response.answers()[0].data().to_string(), "192.0.2.1");
//! ```
//!
//! Served: A, AAAA, TXT, MX, NS, SOA and any other type the zone holds, CNAME chains within
//! the zone, NXDOMAIN and NODATA with the SOA for negative caching, referrals for delegated
//! names, EDNS(0). Not served: wildcards (RFC 4592), DNSSEC, zone transfers, recursion.

use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tendril_core::{
    AppError, Application, Config, Identity, LengthPrefixed, Reject, SendError, Tendril,
};
use tendril_net::{options, WrapperChain};
use tendril_tokio::Manager;

mod answer;
mod answers;
mod zone;

pub use answer::{respond, Transport, UDP_LIMIT_PLAIN, UDP_PAYLOAD};
pub use answers::Answers;
pub use zone::{Zone, ZoneError};

/// TCP connections that send nothing for this long are closed, by default (RFC 7766 §6.2.3 asks
/// servers for an idle timeout of a few seconds).
pub const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The per-connection application: one per TCP connection or UDP peer, answering each frame
/// (one DNS message) from the shared zone.
///
/// It never fails a connection: a message it cannot parse is answered with FORMERR or dropped,
/// so neither the connection (TCP) nor the peer (UDP) is closed by a bad query.
#[derive(Debug, Clone)]
pub struct DnsServer {
    zone: Arc<Zone>,
    transport: Transport,
    /// Shared by every tendril of one acceptor.
    answers: Arc<Answers>,
}

impl DnsServer {
    /// A server for `zone`, for messages arriving over `transport`.
    pub fn new(zone: Arc<Zone>, transport: Transport) -> Self {
        DnsServer {
            zone,
            transport,
            answers: Arc::default(),
        }
    }

    /// Set the framers `tendril` needs for its protocol and make its application: identity
    /// for datagram protocols, a 2-byte big-endian length prefix for streams.
    pub fn accept(zone: Arc<Zone>, tendril: &mut Tendril) -> Self {
        Self::accept_with(zone, Arc::default(), tendril)
    }

    /// [`accept`](Self::accept), remembering answers in `answers`.
    fn accept_with(zone: Arc<Zone>, answers: Arc<Answers>, tendril: &mut Tendril) -> Self {
        let transport = if tendril.proto().is_datagram() {
            tendril.set_recv_framer(Identity::new());
            tendril.set_send_framer(Identity::new());
            Transport::Udp
        } else {
            tendril.set_recv_framer(LengthPrefixed::u16_be());
            tendril.set_send_framer(LengthPrefixed::u16_be());
            Transport::Tcp
        };
        tracing::debug!(peer = %tendril.remote_addr(), proto = %tendril.proto(), "accepted");
        DnsServer {
            zone,
            transport,
            answers,
        }
    }
}

impl Application for DnsServer {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        let Some(response) = self.answers.respond(&self.zone, &frame, self.transport) else {
            tracing::debug!(peer = %t.remote_addr(), len = frame.len(), "dropped a message that is not a query");
            return Ok(());
        };
        match t.send_frame(Bytes::from(response)) {
            Ok(()) => {}
            Err(SendError::Full(_)) => {
                // The client pipelines faster than it reads: end the connection rather than
                // buffer without bound or skip an answer it waits for.
                tracing::info!(peer = %t.remote_addr(), "client does not read its answers; closing");
                t.close();
            }
            Err(e) => tracing::debug!(peer = %t.remote_addr(), error = %e, "answer not sent"),
        }
        Ok(())
    }
}

/// The acceptor for both managers: a [`DnsServer`] per tendril, framed by its protocol, all of
/// them sharing one cache of [`Answers`].
pub fn acceptor(
    zone: Arc<Zone>,
) -> impl FnMut(&mut Tendril) -> Result<DnsServer, Reject> + Send + 'static {
    let answers = Arc::new(Answers::default());
    move |t: &mut Tendril| Ok(DnsServer::accept_with(zone.clone(), answers.clone(), t))
}

/// The two running managers of a server.
#[derive(Debug)]
pub struct Listening {
    /// The UDP manager.
    pub udp: Manager,
    /// The TCP manager, on the UDP manager's IP address and port.
    pub tcp: Manager,
    /// The address both are bound to.
    pub addr: SocketAddr,
}

impl Listening {
    /// Stop both managers (in-flight TCP answers are still written).
    pub async fn stop(self) {
        self.tcp.stop().await;
        self.udp.stop().await;
    }
}

/// Serve `zone` on `listen` (`host:port`): the UDP manager binds first, then the TCP manager
/// binds the same IP address and the port UDP got, so port 0 picks one free port for both.
/// With port 0 a TCP port already taken is retried with a new UDP port, a few times. TCP
/// connections silent for `tcp_idle_timeout` are closed ([`TCP_IDLE_TIMEOUT`] by default in the
/// `dns` binary).
pub async fn listen(
    listen: &str,
    zone: Arc<Zone>,
    tcp_idle_timeout: Option<Duration>,
) -> Result<Listening, String> {
    const ATTEMPTS: usize = 8;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let udp = tendril_tokio::get_manager("udp", listen).map_err(|e| e.to_string())?;
        udp.start(acceptor(zone.clone()), WrapperChain::new())
            .await
            .map_err(|e| format!("cannot listen on udp {listen}: {e}"))?;
        let addr = udp
            .local_addr()
            .and_then(|a| a.ip())
            .ok_or("the UDP manager did not report its address")?;
        let tcp =
            tendril_tokio::get_manager("tcp", &addr.to_string()).map_err(|e| e.to_string())?;
        let mut config = Config::default();
        config.idle_timeout = tcp_idle_timeout;
        tcp.set_config(config);
        let wrapper = WrapperChain::new().chain(options::nodelay(true));
        match tcp.start(acceptor(zone.clone()), wrapper).await {
            Ok(()) => return Ok(Listening { udp, tcp, addr }),
            Err(e) => {
                udp.stop().await;
                let any_port = listen.rsplit_once(':').is_some_and(|(_, port)| port == "0");
                if !(any_port && e.kind() == std::io::ErrorKind::AddrInUse && attempt < ATTEMPTS) {
                    return Err(format!("cannot listen on tcp {addr}: {e}"));
                }
                tracing::debug!(%addr, "TCP port taken; trying another UDP port");
            }
        }
    }
}
