//! The SMTP example on the test kit's hostile network ([`tendril_core::testkit::net`]): clients
//! that pipeline `MAIL`/`RCPT`/`DATA`, send dot-stuffed bodies (the server switches framers
//! for them), and upgrade with STARTTLS in half the seeds, over connections whose bytes are
//! split, read one at a time, reset and hung up on.
//!
//! Every message is delivered exactly once or refused with an error:
//! - a message the server accepted (`250` after its body) is in the store once, byte for byte;
//! - the store holds nothing the clients did not send, and nothing twice;
//! - a message not accepted was on a connection the network cut: the client saw its close;
//! - when it is over, every connection has closed, by itself.
//!
//! `TENDRIL_SIM_SEEDS` sets how many seeds run (default 200); a failure prints its seed, and
//! `TENDRIL_SIM_SEED=<seed> cargo test -p tendril-examples --test smtp_sim` replays it.

use bytes::Bytes;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tendril_core::testkit::net::{check, Faults, Handle, Net, SimRng};
use tendril_core::testkit::tls;
use tendril_core::tls::TlsLayer;
use tendril_core::{AppError, Application, Identity, Line, Proto, Tendril};
use tendril_examples::smtp::{Memory, Session, Settings};

/// One message a client sends: its unique first line and its body, before dot-stuffing.
#[derive(Debug, Clone)]
struct Mail {
    id: String,
    body: Vec<u8>,
}

/// A message body of a few lines, some of which begin with a dot, ending in CRLF.
fn body(rng: &mut SimRng, id: &str) -> Vec<u8> {
    let mut body = format!("Message-Id: <{id}>\r\nSubject: sim\r\n\r\n").into_bytes();
    for _ in 0..rng.below(12) {
        let dots = if rng.chance(25) { "." } else { "" };
        let words = rng.below(30) as usize;
        let line: String = (0..words)
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        body.extend_from_slice(format!("{dots}{line}\r\n").as_bytes());
    }
    body
}

/// Where a client is in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Greeting,
    Ehlo,
    StartTls,
    /// `MAIL`, `RCPT` and `DATA` sent together: waiting for 250, 250, 354.
    Envelope(u8),
    Body,
    Quit,
    Done,
}

/// An SMTP client: greets, upgrades if told to, sends its mail pipelined, quits.
struct Client {
    mail: VecDeque<Mail>,
    tls: Option<Box<dyn FnOnce() -> TlsLayer>>,
    step: Step,
    /// The ids the server accepted.
    accepted: Vec<String>,
    /// Replies that were not what the client expected.
    errors: Vec<String>,
    /// STARTTLS done.
    upgraded: bool,
}

impl Client {
    fn send(t: &mut Tendril, line: impl Into<Bytes>) -> Result<(), AppError> {
        t.send_frame(line.into())?;
        Ok(())
    }

    /// Pipeline the next transaction, or quit.
    fn next(&mut self, t: &mut Tendril) -> Result<(), AppError> {
        let Some(mail) = self.mail.front() else {
            self.step = Step::Quit;
            return Self::send(t, "QUIT");
        };
        Self::send(t, "MAIL FROM:<sim@client.test>")?;
        Self::send(t, format!("RCPT TO:<{}@server.test>", mail.id))?;
        Self::send(t, "DATA")?;
        self.step = Step::Envelope(0);
        Ok(())
    }
}

impl Application for Client {
    fn recv_frame(&mut self, t: &mut Tendril, reply: Bytes) -> Result<(), AppError> {
        let text = String::from_utf8_lossy(&reply).into_owned();
        if text.as_bytes().get(3) == Some(&b'-') {
            return Ok(()); // a line of a multiline reply: the last one decides
        }
        let code = &text[..text.len().min(3)];
        match (self.step, code) {
            (Step::Greeting, "220") => {
                self.step = Step::Ehlo;
                Self::send(t, "EHLO client.test")?;
            }
            (Step::Ehlo, "250") if self.tls.is_some() => {
                self.step = Step::StartTls;
                Self::send(t, "STARTTLS")?;
            }
            (Step::Ehlo, "250") => self.next(t)?,
            (Step::StartTls, "220") => {
                if let Some(layer) = self.tls.take() {
                    t.wrap(layer());
                    self.upgraded = true;
                }
                // After STARTTLS the session starts over (RFC 3207 §4.2).
                self.step = Step::Ehlo;
                Self::send(t, "EHLO client.test")?;
            }
            (Step::Envelope(n @ 0..=1), "250") => self.step = Step::Envelope(n + 1),
            (Step::Envelope(2), "354") => {
                let Some(mail) = self.mail.front() else {
                    return Err("354 with no mail".into());
                };
                for line in mail.body.split_inclusive(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
                    let stuffed = if line.starts_with(b".") {
                        [b".", line].concat()
                    } else {
                        line.to_vec()
                    };
                    Self::send(t, stuffed)?;
                }
                Self::send(t, ".")?;
                self.step = Step::Body;
            }
            (Step::Body, "250") => {
                if let Some(mail) = self.mail.pop_front() {
                    self.accepted.push(mail.id);
                }
                self.next(t)?;
            }
            (Step::Quit, "221") => {
                self.step = Step::Done;
                t.close();
            }
            _ => {
                self.errors.push(format!("{:?}: {text}", self.step));
                t.close();
            }
        }
        Ok(())
    }
}

type ClientEnd = Handle<(Tendril, Client)>;

static ACCEPTED: AtomicU64 = AtomicU64::new(0);
static CUT: AtomicU64 = AtomicU64::new(0);
static OVER_TLS: AtomicU64 = AtomicU64::new(0);

fn scenario(net: &mut Net) {
    let seed = net.seed();
    let starttls = seed % 2 == 1;
    // A session lasts tens of milliseconds: cut connections while it runs, handshakes included.
    net.faults_mut().fault_window = std::time::Duration::from_millis(60);
    let (server_tls, client_tls) = tls::pair(seed);
    let store = Memory::new();
    let settings = Arc::new(Settings {
        tls: Some(server_tls),
        ..Settings::new("server.test", store.clone())
    });
    let addr: SocketAddr = "10.0.0.25:25".parse().unwrap();
    let listener = net.listen(
        addr,
        || Tendril::new(Proto::TCP, Identity::new(), Identity::new()),
        move |t: &mut Tendril| {
            Session::accept(t, settings.clone())
                .map_err(|e| tendril_core::Reject::new(e.to_string()))
        },
    );
    let mut sent: Vec<Mail> = Vec::new();
    let mut clients: Vec<ClientEnd> = Vec::new();
    for c in 0..1 + net.rng().below(3) {
        let mail: VecDeque<Mail> = (0..1 + net.rng().below(4))
            .map(|m| {
                let id = format!("s{seed}c{c}m{m}");
                Mail {
                    body: body(net.rng(), &id),
                    id,
                }
            })
            .collect();
        sent.extend(mail.iter().cloned());
        let client_tls = client_tls.clone();
        let layer: Box<dyn FnOnce() -> TlsLayer> = Box::new(move || {
            TlsLayer::client(client_tls, tls::server_name()).expect("a client layer")
        });
        let client = Client {
            mail,
            tls: starttls.then_some(layer),
            step: Step::Greeting,
            accepted: Vec::new(),
            errors: Vec::new(),
            upgraded: false,
        };
        let tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
        clients.push(net.connect(&listener, tendril, client).client);
    }
    net.run();

    let stored = store.messages();
    let mut seen = std::collections::HashSet::new();
    for message in &stored {
        let mail = sent
            .iter()
            .find(|m| message.recipients == [format!("{}@server.test", m.id)])
            .unwrap_or_else(|| panic!("stored a message nobody sent: {:?}", message.recipients));
        assert!(seen.insert(mail.id.clone()), "{} stored twice", mail.id);
        assert_eq!(
            String::from_utf8_lossy(&message.data),
            String::from_utf8_lossy(&mail.body),
            "{} stored with another body",
            mail.id
        );
    }
    for &end in &clients {
        let (tendril, client) = net.get(end);
        assert!(tendril.is_closed(), "a client never finished");
        for id in &client.accepted {
            assert!(
                seen.contains(id),
                "{id} was accepted but is not in the store"
            );
        }
        ACCEPTED.fetch_add(client.accepted.len() as u64, Ordering::Relaxed);
        if client.upgraded {
            OVER_TLS.fetch_add(1, Ordering::Relaxed);
        }
        if client.step == Step::Done {
            assert!(client.mail.is_empty());
            assert_eq!(client.upgraded, starttls, "STARTTLS skipped");
            assert!(client.errors.is_empty(), "{:?}", client.errors);
        } else {
            // Refused with an error: the network cut the connection, and the client saw it.
            assert!(
                net.disrupted(end),
                "{} mail not sent on a connection nothing cut: at {:?}, {:?}, closed: {:?}",
                client.mail.len(),
                client.step,
                client.errors,
                net.close_reason(end)
            );
            assert!(net.close_reason(end).is_some());
            CUT.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[test]
fn every_message_is_delivered_once_or_refused_with_an_error_on_a_hostile_network() {
    check(Faults::hostile(), 200, scenario);
    let (accepted, cut, over_tls) = (
        ACCEPTED.load(Ordering::Relaxed),
        CUT.load(Ordering::Relaxed),
        OVER_TLS.load(Ordering::Relaxed),
    );
    eprintln!(
        "{accepted} messages accepted and stored once; {cut} sessions cut by the network; \
         {over_tls} sessions upgraded with STARTTLS"
    );
    if std::env::var(tendril_core::testkit::net::SEED_VAR).is_err() {
        assert!(
            cut > 20 && accepted > 4 * cut,
            "accepted {accepted}, cut {cut}"
        );
        assert!(over_tls > 50, "too few STARTTLS sessions: {over_tls}");
    }
}
