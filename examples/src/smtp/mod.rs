//! An SMTP server (RFC 5321): the [`Session`] behind each connection, and the [`Store`] it
//! hands each message it accepts to.
//!
//! This is the SMTP server from the original Tendril's README. Command lines are read with
//! `Line::crlf()`. After `DATA` the receive framer becomes `Delimiter::new(b"\r\n.\r\n")`, so the
//! whole message arrives as one frame; after it, `Line::crlf()` is back. Because frames are taken
//! one at a time, and the framer can be switched between any two of them, PIPELINING needs
//! nothing special. STARTTLS (RFC 3207) wraps the stream from inside `recv_frame` with the
//! core's TLS layer. Plaintext pipelined behind STARTTLS is thrown away by the core and never
//! executed.
//!
//! Extensions: PIPELINING, SIZE (RFC 1870, enforced for `MAIL FROM … SIZE=n` and for the
//! body), 8BITMIME, and STARTTLS when [`Settings::tls`] holds a certificate. Each message goes
//! to the [`Settings::store`] with the envelope on top as headers (`Return-Path`, one
//! `X-Tendril-Rcpt-To` per recipient, `Received`). [`Maildir`] writes it to a temporary file
//! in a directory, then renames it to `<unix-millis>.<pid>.<n>.eml`; [`Memory`] keeps it in a
//! list, for tests.
//!
//! The session needs no socket. Here it runs on the core's in-memory [`Pipe`] against a client
//! that pipelines a whole transaction:
//!
//! ```
//! use bytes::Bytes;
//! use std::sync::Arc;
//! use tendril_core::testkit::Pipe;
//! use tendril_core::{AppError, Application, Line, Proto, Tendril};
//! use tendril_examples::smtp::{Memory, Session, Settings};
//!
//! /// The client: keeps the server's replies.
//! #[derive(Default)]
//! struct Replies(Vec<String>);
//!
//! impl Application for Replies {
//!     fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
//!         self.0.push(String::from_utf8(frame.to_vec())?);
//!         Ok(())
//!     }
//! }
//!
//! let mail = Memory::new();
//! let settings = Arc::new(Settings::new("mx.test", mail.clone()));
//! let mut server: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
//! let session = Session::accept(&mut server, settings).unwrap();
//!
//! let mut client: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
//! for line in [
//!     "EHLO client.test", "MAIL FROM:<a@x>", "RCPT TO:<b@y>", "DATA",
//!     "Subject: hi", "", "..and a leading dot", ".", "QUIT",
//! ] {
//!     client.send_frame(Bytes::from(line)).unwrap();
//! }
//! let mut pipe = Pipe::new((client, Replies::default()), (server, session));
//! pipe.run();
//!
//! let replies = &pipe.client.1 .0;
//! assert_eq!(replies[0], "220 mx.test ESMTP Tendril ready");
//! assert!(replies.iter().any(|r| r.starts_with("250 OK queued as ")));
//! assert_eq!(replies.last().unwrap(), "221 mx.test closing connection");
//!
//! let stored = mail.messages();
//! assert_eq!(stored.len(), 1);
//! let message = &stored[0];
//! assert_eq!(message.reverse_path, "a@x");
//! assert_eq!(message.recipients, ["b@y"]);
//! // The envelope goes on top as headers; the data is unstuffed.
//! assert!(message.envelope.starts_with("Return-Path: <a@x>\r\nX-Tendril-Rcpt-To: <b@y>\r\n"));
//! assert_eq!(message.data, "Subject: hi\r\n\r\n.and a leading dot\r\n");
//! ```
//!
//! [`Pipe`]: tendril_core::testkit::Pipe

use bytes::Bytes;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tendril_core::tls::TlsLayer;
use tendril_core::{Addr, AppError, Application, CloseReason, Event, Line, Tendril};

mod framers;
mod store;

use framers::{BodyFramer, CommandFramer};
pub use store::{Maildir, Memory, Message, Store};

/// The default SIZE limit, 10 MiB.
pub const DEFAULT_MAX_SIZE: usize = 10 * 1024 * 1024;
/// The default idle timeout while reading commands: RFC 5321 §4.5.3.2.7 asks for at least
/// 5 minutes.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// The default idle timeout while reading a message body: RFC 5321 §4.5.3.2.5's data block
/// time, 3 minutes.
pub const DEFAULT_DATA_TIMEOUT: Duration = Duration::from_secs(3 * 60);
/// The longest command line accepted, without its CRLF (RFC 5321 asks for at least 512).
/// A longer one is answered `500 Line too long`, in its place among the replies.
pub const MAX_COMMAND: usize = 4096;
/// The most recipients of one message (RFC 5321 §4.5.3.1.8 asks for at least 100); more are
/// answered `452`.
pub const MAX_RECIPIENTS: usize = 100;
/// More `Received:` headers than this is taken as a mail loop (RFC 5321 §6.3), and the
/// message is refused with `554`.
pub const MAX_HOPS: usize = 50;

// ---- the session -------------------------------------------------------------------------

/// What every session of a server shares.
#[derive(Debug)]
pub struct Settings {
    /// The name the server gives itself in its greeting and `Received:` lines.
    pub hostname: String,
    /// Where accepted messages go.
    pub store: Box<dyn Store>,
    /// The largest message accepted, in bytes, once unstuffed (advertised as SIZE); at
    /// least 1.
    pub max_size: usize,
    /// The TLS configuration for STARTTLS; without one, STARTTLS is neither offered nor
    /// accepted.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Refuse MAIL with `530` until the client has done STARTTLS.
    pub require_tls: bool,
    /// The idle timeout while reading commands (`None` for never).
    pub command_timeout: Option<Duration>,
    /// The idle timeout while reading a message body (`None` for never).
    pub data_timeout: Option<Duration>,
}

impl Settings {
    /// Settings for a server called `hostname`, storing in `store`, with the defaults:
    /// [`DEFAULT_MAX_SIZE`], no TLS, [`DEFAULT_COMMAND_TIMEOUT`] and
    /// [`DEFAULT_DATA_TIMEOUT`]. Change any field after, or with struct update syntax:
    ///
    /// ```
    /// use tendril_examples::smtp::{Memory, Settings};
    ///
    /// let settings = Settings {
    ///     max_size: 1000,
    ///     ..Settings::new("mx.test", Memory::new())
    /// };
    /// assert_eq!(settings.max_size, 1000);
    /// ```
    pub fn new(hostname: impl Into<String>, store: impl Store + 'static) -> Self {
        Settings {
            hostname: hostname.into(),
            store: Box::new(store),
            max_size: DEFAULT_MAX_SIZE,
            tls: None,
            require_tls: false,
            command_timeout: Some(DEFAULT_COMMAND_TIMEOUT),
            data_timeout: Some(DEFAULT_DATA_TIMEOUT),
        }
    }
}

/// Where a session is: reading commands or a message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Command,
    Data,
}

/// The client's greeting.
#[derive(Debug, Clone)]
struct Greeting {
    domain: String,
    extended: bool,
}

/// One SMTP session: the state machine behind a connection, its [`Application`].
///
/// [`Session::accept`] sets the connection up; then the session reads commands, switches to
/// the body framer after `DATA` and back after the message, wraps the connection in TLS on
/// STARTTLS, and hands each accepted message to the [`Settings::store`].
#[derive(Debug)]
pub struct Session {
    settings: Arc<Settings>,
    /// The peer, as written in `Received:` lines.
    peer: String,
    greeting: Option<Greeting>,
    tls: bool,
    /// The reverse-path of the transaction in progress (`""` for the null path `<>`).
    from: Option<String>,
    rcpts: Vec<String>,
    phase: Phase,
    /// Plaintext bytes the core dropped because they came behind STARTTLS.
    plaintext_discarded: usize,
}

/// Send a one-line reply.
fn reply(t: &mut Tendril, code: u16, text: &str) -> Result<(), AppError> {
    t.send_frame(Bytes::from(format!("{code} {text}")))?;
    Ok(())
}

impl Session {
    /// Set up a new connection, the acceptor's work: its framers (CRLF command lines, both
    /// ways), the command timeout, and the `220` greeting, queued on `t`.
    ///
    /// Fails only if the greeting cannot be queued.
    pub fn accept(t: &mut Tendril, settings: Arc<Settings>) -> Result<Session, AppError> {
        t.set_recv_framer(CommandFramer::new());
        t.set_send_framer(Line::crlf());
        let peer = match t.remote_addr() {
            Addr::Ip(a) if a.is_ipv4() => format!("[{}]", a.ip()),
            Addr::Ip(a) => format!("[IPv6:{}]", a.ip()),
            other => other.to_string(),
        };
        let mut session = Session {
            settings,
            peer,
            greeting: None,
            tls: false,
            from: None,
            rcpts: Vec::new(),
            phase: Phase::Command,
            plaintext_discarded: 0,
        };
        session.enter(t, Phase::Command);
        let greeting = format!("{} ESMTP Tendril ready", session.settings.hostname);
        reply(t, 220, &greeting)?;
        Ok(session)
    }

    /// The session has done STARTTLS: its connection is wrapped in TLS (once the handshake
    /// is done, everything it reads and writes goes through it).
    pub fn tls_active(&self) -> bool {
        self.tls
    }

    /// How many plaintext bytes the core threw away, unexecuted, because they were pipelined
    /// behind STARTTLS.
    pub fn plaintext_discarded(&self) -> usize {
        self.plaintext_discarded
    }

    /// Forget the mail transaction (RSET, EHLO, after a message).
    fn reset_transaction(&mut self) {
        self.from = None;
        self.rcpts.clear();
    }

    /// Enter `phase`, with its idle timeout.
    fn enter(&mut self, t: &mut Tendril, phase: Phase) {
        self.phase = phase;
        let mut config = *t.config();
        config.idle_timeout = match phase {
            Phase::Command => self.settings.command_timeout,
            Phase::Data => self.settings.data_timeout,
        };
        t.set_config(config);
    }

    /// Back to commands after a message.
    fn end_data(&mut self, t: &mut Tendril) {
        self.enter(t, Phase::Command);
        t.set_recv_framer(CommandFramer::new());
        self.reset_transaction();
    }

    fn command(&mut self, t: &mut Tendril, line: &[u8]) -> Result<(), AppError> {
        let Ok(line) = std::str::from_utf8(line) else {
            return reply(t, 500, "Syntax error, command unrecognized");
        };
        let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
        let arg = arg.trim();
        tracing::debug!(command = %verb, "command");
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => self.hello(t, arg, true),
            "HELO" => self.hello(t, arg, false),
            "MAIL" => self.mail(t, arg),
            "RCPT" => self.rcpt(t, arg),
            "DATA" => self.data(t, arg),
            "RSET" if !arg.is_empty() => reply(t, 501, "Syntax: RSET"),
            "RSET" => {
                self.reset_transaction();
                reply(t, 250, "OK")
            }
            "NOOP" => reply(t, 250, "OK"),
            "QUIT" => {
                reply(
                    t,
                    221,
                    &format!("{} closing connection", self.settings.hostname),
                )?;
                t.close();
                Ok(())
            }
            "STARTTLS" => self.starttls(t, arg),
            "VRFY" => reply(
                t,
                252,
                "Cannot VRFY user, but will accept message and attempt delivery",
            ),
            "HELP" => reply(
                t,
                214,
                "Commands: EHLO HELO MAIL RCPT DATA RSET NOOP QUIT VRFY STARTTLS",
            ),
            "EXPN" | "TURN" | "ETRN" | "BDAT" | "AUTH" => reply(t, 502, "Command not implemented"),
            _ => reply(t, 500, "Syntax error, command unrecognized"),
        }
    }

    fn hello(&mut self, t: &mut Tendril, domain: &str, extended: bool) -> Result<(), AppError> {
        let verb = if extended { "EHLO" } else { "HELO" };
        if domain.is_empty() || !domain.bytes().all(|b| b.is_ascii_graphic()) {
            return reply(t, 501, &format!("Syntax: {verb} domain"));
        }
        self.reset_transaction();
        self.greeting = Some(Greeting {
            domain: domain.to_owned(),
            extended,
        });
        let host = &self.settings.hostname;
        if !extended {
            return reply(t, 250, host);
        }
        let mut lines = vec![
            format!("{host} greets {domain}"),
            "PIPELINING".to_owned(),
            format!("SIZE {}", self.settings.max_size),
            "8BITMIME".to_owned(),
        ];
        if self.settings.tls.is_some() && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        let last = lines.len() - 1;
        for (i, line) in lines.into_iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            t.send_frame(Bytes::from(format!("250{sep}{line}")))?;
        }
        Ok(())
    }

    fn mail(&mut self, t: &mut Tendril, arg: &str) -> Result<(), AppError> {
        let Some(greeting) = &self.greeting else {
            return reply(t, 503, "Send HELO/EHLO first");
        };
        let extended = greeting.extended;
        if self.settings.require_tls && !self.tls {
            return reply(t, 530, "Must issue a STARTTLS command first");
        }
        if self.from.is_some() {
            return reply(t, 503, "Sender already specified");
        }
        let Some((path, params)) = parse_path(arg, "FROM:") else {
            return reply(t, 501, "Syntax: MAIL FROM:<address>");
        };
        for param in params.split_ascii_whitespace() {
            let (key, value) = param.split_once('=').unwrap_or((param, ""));
            match key.to_ascii_uppercase().as_str() {
                _ if !extended => {
                    return reply(t, 555, "MAIL FROM parameters need EHLO");
                }
                "SIZE" => {
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return reply(t, 501, "Syntax: SIZE=<number>");
                    }
                    // A number too large for u64 is too large anyway.
                    let size = value.parse::<u64>().unwrap_or(u64::MAX);
                    if size > self.settings.max_size as u64 {
                        return reply(t, 552, "Message size exceeds fixed maximum message size");
                    }
                }
                "BODY" if value.eq_ignore_ascii_case("7BIT") => {}
                "BODY" if value.eq_ignore_ascii_case("8BITMIME") => {}
                "BODY" => return reply(t, 501, "Syntax: BODY=7BIT or BODY=8BITMIME"),
                _ => {
                    return reply(t, 555, "MAIL FROM parameters not recognized");
                }
            }
        }
        self.from = Some(path.to_owned());
        reply(t, 250, "OK")
    }

    fn rcpt(&mut self, t: &mut Tendril, arg: &str) -> Result<(), AppError> {
        if self.from.is_none() {
            return reply(t, 503, "Need MAIL before RCPT");
        }
        let Some((path, params)) = parse_path(arg, "TO:") else {
            return reply(t, 501, "Syntax: RCPT TO:<address>");
        };
        if !params.is_empty() {
            return reply(t, 555, "RCPT TO parameters not recognized");
        }
        if !(path.contains('@') || path.eq_ignore_ascii_case("postmaster")) {
            return reply(t, 501, "Bad recipient address syntax");
        }
        if self.rcpts.len() >= MAX_RECIPIENTS {
            return reply(t, 452, "Too many recipients");
        }
        self.rcpts.push(path.to_owned());
        reply(t, 250, "OK")
    }

    fn data(&mut self, t: &mut Tendril, arg: &str) -> Result<(), AppError> {
        if !arg.is_empty() {
            return reply(t, 501, "Syntax: DATA");
        }
        if self.from.is_none() {
            return reply(t, 503, "Need MAIL and RCPT before DATA");
        }
        if self.rcpts.is_empty() {
            return reply(t, 554, "No valid recipients");
        }
        reply(t, 354, "Start mail input; end with <CRLF>.<CRLF>")?;
        self.enter(t, Phase::Data);
        // The limit is on the body as sent. Dot-stuffing adds at most one byte per three (a
        // line of "." becomes ".."), so any body within SIZE once unstuffed gets through here;
        // the exact check is done on the unstuffed message.
        let max = self.settings.max_size;
        t.set_recv_framer(BodyFramer::new(max.saturating_add(max / 3 + 1)));
        Ok(())
    }

    fn starttls(&mut self, t: &mut Tendril, arg: &str) -> Result<(), AppError> {
        let Some(config) = self.settings.tls.clone() else {
            return reply(t, 502, "Command not implemented");
        };
        if !arg.is_empty() {
            return reply(t, 501, "Syntax: STARTTLS");
        }
        if self.tls {
            return reply(t, 503, "TLS already active");
        }
        let layer = match TlsLayer::server(config) {
            Ok(layer) => layer,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start TLS");
                return reply(t, 454, "TLS not available due to temporary reason");
            }
        };
        // The 220 goes out in plaintext, beneath the new layer; bytes that arrived behind the
        // STARTTLS line are dropped by the core (Event::PlaintextDiscarded).
        reply(t, 220, "Ready to start TLS")?;
        t.wrap(layer);
        self.tls = true;
        // RFC 3207 §4.2: forget everything learnt from the client before TLS.
        self.greeting = None;
        self.reset_transaction();
        Ok(())
    }

    /// The message body arrived (dot-stuffed, ending in CRLF, or empty).
    fn message(&mut self, t: &mut Tendril, body: Bytes) -> Result<(), AppError> {
        let data = unstuff(body);
        let result = if data.len() > self.settings.max_size {
            reply(t, 552, "Message size exceeds fixed maximum message size")
        } else if received_count(&data) > MAX_HOPS {
            reply(t, 554, "Too many hops, mail loop detected")
        } else {
            let (bytes, rcpts) = (data.len(), self.rcpts.len());
            match self.deliver(data) {
                Ok(name) => {
                    tracing::info!(queued_as = %name, bytes, rcpts, "delivered");
                    reply(t, 250, &format!("OK queued as {name}"))
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store the message");
                    reply(
                        t,
                        451,
                        "Requested action aborted: local error in processing",
                    )
                }
            }
        };
        self.end_data(t);
        result
    }

    /// Hand the message, with the envelope in headers on top, to the store; this takes the
    /// transaction's reverse-path and recipients.
    fn deliver(&mut self, data: Bytes) -> io::Result<String> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}.{}.{n}", now.as_millis(), std::process::id());
        let from = self.from.take().unwrap_or_default();
        let recipients = std::mem::take(&mut self.rcpts);
        let mut head = format!("Return-Path: <{from}>\r\n");
        for rcpt in &recipients {
            head.push_str(&format!("X-Tendril-Rcpt-To: <{rcpt}>\r\n"));
        }
        let (helo, extended) = self
            .greeting
            .as_ref()
            .map_or(("unknown", false), |g| (g.domain.as_str(), g.extended));
        let with = match (extended, self.tls) {
            (false, _) => "SMTP",
            (true, false) => "ESMTP",
            (true, true) => "ESMTPS",
        };
        head.push_str(&format!(
            "Received: from {helo} ({peer})\r\n\tby {host} (Tendril) with {with} id {id};\r\n\t{date}\r\n",
            peer = self.peer,
            host = self.settings.hostname,
            date = rfc5322_date(now.as_secs()),
        ));
        self.settings.store.deliver(Message {
            id,
            reverse_path: from,
            recipients,
            envelope: head,
            data,
        })
    }
}

impl Application for Session {
    fn recv_frame(&mut self, t: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
        match self.phase {
            Phase::Command => self.command(t, &frame),
            Phase::Data => self.message(t, frame),
        }
    }

    fn event(&mut self, t: &mut Tendril, event: &Event) {
        let result = match event {
            Event::FrameSkipped(e) if self.phase == Phase::Data => {
                tracing::info!(error = %e, "message too big, skipped");
                let sent = reply(t, 552, "Message size exceeds fixed maximum message size");
                self.end_data(t);
                sent
            }
            Event::FrameSkipped(e) => {
                tracing::info!(error = %e, "command line too long, skipped");
                t.set_recv_framer(CommandFramer::new());
                reply(t, 500, "Line too long")
            }
            Event::PlaintextDiscarded(n) => {
                self.plaintext_discarded += n;
                tracing::warn!(
                    bytes = n,
                    "discarded plaintext pipelined after STARTTLS (not executed)"
                );
                Ok(())
            }
            other => {
                tracing::debug!(event = ?other, "event");
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, "cannot reply");
        }
    }

    fn closed(&mut self, t: &Tendril, reason: &CloseReason) {
        tracing::info!(peer = %t.remote_addr(), %reason, "closed");
    }
}

// ---- helpers ------------------------------------------------------------------------------

/// The position of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parse `FROM:<path> params` (or `TO:`): the path without its brackets (and without a source
/// route, which RFC 5321 §4.1.1.3 says to ignore), and the parameters.
fn parse_path<'a>(arg: &'a str, keyword: &str) -> Option<(&'a str, &'a str)> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start().strip_prefix('<')?;
    let (path, params) = rest.split_once('>')?;
    if !(params.is_empty() || params.starts_with(' ')) {
        return None;
    }
    let path = match path.strip_prefix('@') {
        Some(_) => path.split_once(':')?.1,
        None => path,
    };
    // Printable ASCII only: the path goes into header lines.
    if !path.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return None;
    }
    Some((path, params.trim()))
}

/// Undo dot-stuffing (RFC 5321 §4.5.2): a '.' that starts a line is removed.
fn unstuff(data: Bytes) -> Bytes {
    if !(data.starts_with(b".") || find(&data, b"\r\n.").is_some()) {
        return data;
    }
    let mut out = Vec::with_capacity(data.len());
    let mut line_start = true;
    let mut after_cr = false;
    for &b in data.iter() {
        if line_start && b == b'.' {
            line_start = false;
            after_cr = false;
            continue;
        }
        line_start = after_cr && b == b'\n';
        after_cr = b == b'\r';
        out.push(b);
    }
    Bytes::from(out)
}

/// How many `Received:` header fields the message's header section has.
fn received_count(message: &[u8]) -> usize {
    message
        .split(|&b| b == b'\n')
        .take_while(|line| !line.is_empty() && *line != b"\r")
        .filter(|line| {
            line.get(..9)
                .is_some_and(|name| name.eq_ignore_ascii_case(b"received:"))
        })
        .count()
}

/// A date as RFC 5322 writes it, in UTC: `Thu, 01 Jan 1970 00:00:00 +0000`.
fn rfc5322_date(unix_secs: u64) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let weekday = DAYS[((days + 4) % 7) as usize];
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        MONTHS[(month - 1) as usize],
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::PathBuf;
    use tendril_core::testkit::Pipe;
    use tendril_core::Proto;

    /// A fresh, empty directory for one test.
    fn temp_dir(name: &str) -> PathBuf {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tendril-smtp-unit-{}-{name}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Settings for `mx.test`, keeping messages of at most `max_size` bytes in `mail`.
    fn settings(mail: &Memory, max_size: usize) -> Arc<Settings> {
        Arc::new(Settings {
            max_size,
            command_timeout: Some(Duration::from_secs(300)),
            data_timeout: Some(Duration::from_secs(180)),
            ..Settings::new("mx.test", mail.clone())
        })
    }

    #[test]
    fn the_idle_timeout_is_the_command_timeout_then_the_data_timeout_during_a_body() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        let idle = |server: &Server| server.t.config().idle_timeout;
        assert_eq!(idle(&server), Some(Duration::from_secs(300)));
        server.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n");
        assert_eq!(idle(&server), Some(Duration::from_secs(180)));
        server.send(b"Subject: hi\r\n\r\nbody\r\n.\r\n");
        assert_eq!(as_written(&mail).len(), 1);
        assert_eq!(idle(&server), Some(Duration::from_secs(300)));
    }

    /// Removes a test's directory when dropped.
    struct Cleanup(PathBuf);

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A connection with a session, its greeting already taken.
    struct Server {
        t: Tendril,
        s: Session,
    }

    impl Server {
        fn new(settings: Arc<Settings>) -> Self {
            let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf()).with_addrs(
                Addr::Ip("127.0.0.1:25".parse().unwrap()),
                Addr::Ip("127.0.0.1:40000".parse().unwrap()),
            );
            let s = Session::accept(&mut t, settings).unwrap();
            let greeting = t.outgoing().take_all();
            assert_eq!(greeting, "220 mx.test ESMTP Tendril ready\r\n");
            Server { t, s }
        }

        /// Feed bytes, run the session, return what it sent.
        fn send(&mut self, input: &[u8]) -> String {
            self.t.handle_data(Duration::ZERO, input);
            self.t.dispatch(&mut self.s);
            String::from_utf8(self.t.outgoing().take_all().to_vec()).unwrap()
        }

        /// The reply codes of what `send` returned.
        fn codes(&mut self, input: &[u8]) -> Vec<u16> {
            codes(&self.send(input))
        }
    }

    fn codes(replies: &str) -> Vec<u16> {
        replies
            .lines()
            .filter(|l| l.as_bytes().get(3) == Some(&b' '))
            .map(|l| l[..3].parse().unwrap())
            .collect()
    }

    /// The stored messages as they would be written, oldest first.
    fn as_written(mail: &Memory) -> Vec<String> {
        mail.messages()
            .iter()
            .map(|m| String::from_utf8(m.to_bytes()).unwrap())
            .collect()
    }

    /// The message without the envelope headers the server put on top.
    fn body(stored: &str) -> &str {
        // The Received header, last of them, ends with the date.
        stored.split_once(" +0000\r\n").unwrap().1
    }

    #[test]
    fn ehlo_advertises_pipelining_and_size_but_starttls_only_with_a_certificate() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        let replies = server.send(b"EHLO client.test\r\n");
        assert_eq!(
            replies,
            "250-mx.test greets client.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n\
             250 8BITMIME\r\n"
        );
        assert_eq!(server.send(b"HELO client.test\r\n"), "250 mx.test\r\n");
        assert_eq!(server.codes(b"STARTTLS\r\n"), [502]);

        let mut with_tls = Server::new(tls_settings().0);
        assert!(with_tls.send(b"EHLO c\r\n").ends_with("250 STARTTLS\r\n"));
    }

    #[test]
    fn sequence_and_syntax_errors_get_their_codes() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        assert_eq!(server.codes(b"MAIL FROM:<a@x>\r\n"), [503]);
        assert_eq!(server.codes(b"RCPT TO:<b@y>\r\n"), [503]);
        assert_eq!(server.codes(b"DATA\r\n"), [503]);
        assert_eq!(server.codes(b"EHLO\r\n"), [501]);
        assert_eq!(server.codes(b"FROB\r\n"), [500]);
        assert_eq!(server.codes(b"EXPN list\r\n"), [502]);
        assert_eq!(server.codes(b"\xff\xfe\r\n"), [500]);
        assert_eq!(server.codes(b"EHLO c\r\n").last(), Some(&250));
        assert_eq!(server.codes(b"MAIL FROM:a@x\r\n"), [501]);
        assert_eq!(server.codes(b"MAIL FROM:<a@x> FROB=1\r\n"), [555]);
        assert_eq!(server.codes(b"MAIL FROM:<a@x> SIZE=x\r\n"), [501]);
        assert_eq!(server.codes(b"MAIL FROM:<a@x> SIZE=1001\r\n"), [552]);
        assert_eq!(
            server.codes(b"MAIL FROM:<a@x> SIZE=99999999999999999999999\r\n"),
            [552]
        );
        assert_eq!(server.codes(b"MAIL FROM:<a\x01@x>\r\n"), [501]);
        assert_eq!(server.codes(b"DATA\r\n"), [503]);
        assert_eq!(
            server.codes(b"mail from: <a@x> SIZE=1000 BODY=8BITMIME\r\n"),
            [250]
        );
        assert_eq!(server.codes(b"MAIL FROM:<a@x>\r\n"), [503]);
        assert_eq!(server.codes(b"DATA\r\n"), [554]);
        assert_eq!(server.codes(b"RCPT TO:<nobody>\r\n"), [501]);
        assert_eq!(server.codes(b"RCPT TO:<b@y> NOTIFY=NEVER\r\n"), [555]);
        assert_eq!(server.codes(b"RCPT TO:<Postmaster>\r\n"), [250]);
        assert_eq!(server.codes(b"DATA now\r\n"), [501]);
        assert_eq!(server.codes(b"RSET\r\n"), [250]);
        assert_eq!(server.codes(b"RCPT TO:<b@y>\r\n"), [503]);
        assert_eq!(server.codes(b"VRFY x\r\nNOOP\r\nHELP\r\n"), [252, 250, 214]);
        // Parameters are an ESMTP feature.
        assert_eq!(server.codes(b"HELO c\r\n"), [250]);
        assert_eq!(server.codes(b"MAIL FROM:<a@x> SIZE=10\r\n"), [555]);
        assert!(as_written(&mail).is_empty());
    }

    #[test]
    fn a_pipelined_transaction_is_stored_with_its_envelope_and_unstuffed() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        let replies = server.send(
            b"EHLO client.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nRCPT TO:<c@z>\r\nDATA\r\n\
              Subject: hi\r\n\r\n..leading dot\r\n..\r\nlast\r\n.\r\nNOOP\r\n",
        );
        assert_eq!(codes(&replies), [250, 250, 250, 250, 354, 250, 250]);
        let stored = as_written(&mail);
        assert_eq!(stored.len(), 1);
        let m = &stored[0];
        assert!(
            m.starts_with(
                "Return-Path: <a@x>\r\nX-Tendril-Rcpt-To: <b@y>\r\nX-Tendril-Rcpt-To: <c@z>\r\n\
                 Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Tendril) with ESMTP id "
            ),
            "{m}"
        );
        assert_eq!(body(m), "Subject: hi\r\n\r\n.leading dot\r\n.\r\nlast\r\n");
        // The store got the envelope apart too, and the reply names the message by its id.
        let message = &mail.messages()[0];
        assert_eq!(message.reverse_path, "a@x");
        assert_eq!(message.recipients, ["b@y", "c@z"]);
        assert_eq!(
            message.data,
            "Subject: hi\r\n\r\n.leading dot\r\n.\r\nlast\r\n"
        );
        assert!(message
            .envelope
            .contains(&format!(" with ESMTP id {};\r\n", message.id)));
        assert!(
            replies.contains(&format!("\r\n250 OK queued as {}\r\n", message.id)),
            "{replies}"
        );
        // The transaction is over: a new one needs MAIL again.
        assert_eq!(server.codes(b"RCPT TO:<b@y>\r\n"), [503]);
    }

    #[test]
    fn an_empty_body_and_a_body_of_one_empty_line_are_both_messages() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        let txn = b"MAIL FROM:<>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
        assert_eq!(server.codes(b"EHLO c\r\n").len(), 1);
        // "." right after the 354: no CRLF before it, so "\r\n.\r\n" does not match.
        let mut input = txn.to_vec();
        input.extend_from_slice(b".\r\nNOOP\r\n");
        assert_eq!(server.codes(&input), [250, 250, 354, 250, 250]);
        // The same, in pieces: "." and "\r\n" apart.
        assert_eq!(server.codes(txn), [250, 250, 354]);
        assert_eq!(server.codes(b"."), Vec::<u16>::new());
        assert_eq!(server.codes(b"\r"), Vec::<u16>::new());
        assert_eq!(server.codes(b"\n"), [250]);
        // One empty line, then the end.
        let mut input = txn.to_vec();
        input.extend_from_slice(b"\r\n.\r\n");
        assert_eq!(server.codes(&input), [250, 250, 354, 250]);
        let stored = as_written(&mail);
        assert_eq!(stored.len(), 3);
        assert!(stored[0].starts_with("Return-Path: <>\r\n"));
        assert_eq!(body(&stored[0]), "");
        assert_eq!(body(&stored[1]), "");
        assert_eq!(body(&stored[2]), "\r\n");
    }

    #[test]
    fn an_oversized_body_is_skipped_and_answered_552_in_order_whatever_the_chunking() {
        for chunk in [usize::MAX, 1000, 7, 1] {
            let mail = Memory::new();
            let mut server = Server::new(settings(&mail, 100));
            assert_eq!(server.codes(b"EHLO c\r\n").len(), 1);
            let mut input = b"MAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'x', 5000));
            input.extend_from_slice(
                b"\r\n.\r\nRSET\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n",
            );
            input.extend_from_slice(b"small\r\n.\r\nQUIT\r\n");
            let mut replies = String::new();
            for piece in input.chunks(chunk.min(input.len())) {
                replies.push_str(&server.send(piece));
            }
            assert_eq!(
                codes(&replies),
                [250, 250, 354, 552, 250, 250, 250, 354, 250, 221],
                "chunk {chunk}"
            );
            let stored = as_written(&mail);
            assert_eq!(stored.len(), 1);
            assert_eq!(body(&stored[0]), "small\r\n");
        }
    }

    #[test]
    fn the_size_limit_counts_the_unstuffed_message_with_its_last_crlf() {
        // 98 bytes + CRLF = 100 = the limit; stuffing adds bytes on the wire, not to the size.
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 100));
        let line = format!(".{}", "y".repeat(97));
        let txn = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
        let input = format!("{txn}.{line}\r\n.\r\n");
        assert_eq!(server.codes(input.as_bytes()).last(), Some(&250));
        let input = format!("{txn}.{line}z\r\n.\r\n");
        assert_eq!(server.codes(input.as_bytes()).last(), Some(&552));
        assert_eq!(as_written(&mail).len(), 1);
    }

    #[test]
    fn an_over_long_command_line_gets_500_in_order_and_the_session_goes_on() {
        for chunk in [usize::MAX, 100, 1] {
            let mail = Memory::new();
            let mut server = Server::new(settings(&mail, 1000));
            let mut input = b"NOOP\r\n".to_vec();
            input.extend(std::iter::repeat_n(b'A', MAX_COMMAND + 10));
            input.extend_from_slice(b"\r\nEHLO c\r\nQUIT\r\n");
            let mut replies = String::new();
            for piece in input.chunks(chunk.min(input.len())) {
                replies.push_str(&server.send(piece));
            }
            assert_eq!(codes(&replies), [250, 500, 250, 221], "chunk {chunk}");
        }
    }

    #[test]
    fn a_message_cut_off_by_eof_is_not_stored() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        server.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\npartial\r\n");
        server.t.handle_eof(Duration::ZERO);
        server.t.dispatch(&mut server.s);
        assert!(!server.t.is_open());
        assert!(as_written(&mail).is_empty());
    }

    #[test]
    fn too_many_received_headers_is_a_loop() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 100_000));
        let mut input = "EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n".to_owned();
        input.push_str(&"Received: from x\r\n".repeat(MAX_HOPS + 1));
        input.push_str("\r\nbody\r\n.\r\n");
        assert_eq!(server.codes(input.as_bytes()).last(), Some(&554));
        assert!(as_written(&mail).is_empty());
    }

    #[test]
    fn quit_says_221_and_closes() {
        let mail = Memory::new();
        let mut server = Server::new(settings(&mail, 1000));
        assert_eq!(
            server.send(b"QUIT\r\nNOOP\r\n"),
            "221 mx.test closing connection\r\n"
        );
        assert!(server.t.wants_shutdown());
    }

    #[test]
    fn helpers() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_767_225_599),
            "Wed, 31 Dec 2025 23:59:59 +0000"
        );
        let un = |s: &'static str| unstuff(Bytes::from(s));
        assert_eq!(un("..a\r\n.\r\nb.\r\n...\r\n"), ".a\r\n\r\nb.\r\n..\r\n");
        assert_eq!(un("plain\r\n"), "plain\r\n");
        assert_eq!(
            parse_path("FROM:<@relay:a@x> SIZE=1", "FROM:"),
            Some(("a@x", "SIZE=1"))
        );
        assert_eq!(parse_path("FROM:<a@x>SIZE=1", "FROM:"), None);
        assert_eq!(parse_path("TO:<a@x>", "FROM:"), None);
        assert_eq!(
            received_count(b"Received: a\r\nreceived: b\r\n\r\nReceived: c\r\n"),
            2
        );
    }

    // ---- storing in a directory --------------------------------------------------------

    #[test]
    fn maildir_writes_each_message_to_its_own_file_named_in_the_reply() {
        let dir = temp_dir("maildir");
        let _cleanup = Cleanup(dir.clone());
        let mut server = Server::new(Arc::new(Settings {
            max_size: 1000,
            ..Settings::new("mx.test", Maildir::new(&dir))
        }));
        let txn = "EHLO client.test\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\n";
        let mut names = Vec::new();
        for body in ["Subject: one\r\n\r\n..first\r\n", "Subject: two\r\n\r\n"] {
            let replies = server.send(format!("{txn}{body}.\r\n").as_bytes());
            assert_eq!(codes(&replies), [250, 250, 250, 354, 250], "{replies}");
            let last = replies.lines().last().unwrap();
            let name = last.strip_prefix("250 OK queued as ").unwrap();
            names.push(name.to_owned());
        }
        // <unix-millis>.<pid>.<n>.eml, n counting up.
        let parts: Vec<Vec<u64>> = names
            .iter()
            .map(|name| {
                let id = name.strip_suffix(".eml").unwrap();
                id.split('.').map(|p| p.parse().unwrap()).collect()
            })
            .collect();
        for p in &parts {
            assert_eq!(p.len(), 3, "{names:?}");
            assert_eq!(p[1], u64::from(std::process::id()));
        }
        assert!(parts[0][2] < parts[1][2], "{names:?}");
        // Those two files, and no temporary one left over.
        let mut listed: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        listed.sort();
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(listed, expected);
        for (name, data) in names
            .iter()
            .zip(["Subject: one\r\n\r\n.first\r\n", "Subject: two\r\n\r\n"])
        {
            let written = fs::read_to_string(dir.join(name)).unwrap();
            let id = name.strip_suffix(".eml").unwrap();
            assert!(
                written.starts_with(&format!(
                    "Return-Path: <a@x>\r\nX-Tendril-Rcpt-To: <b@y>\r\n\
                     Received: from client.test ([127.0.0.1])\r\n\tby mx.test (Tendril) with ESMTP \
                     id {id};\r\n\t"
                )),
                "{written}"
            );
            assert_eq!(body(&written), data);
        }
    }

    #[test]
    fn a_store_that_fails_gets_451_and_the_session_reads_commands_again() {
        let dir = temp_dir("gone");
        fs::remove_dir(&dir).unwrap();
        let mut server = Server::new(Arc::new(Settings::new("mx.test", Maildir::new(&dir))));
        let replies =
            server.send(b"EHLO c\r\nMAIL FROM:<a@x>\r\nRCPT TO:<b@y>\r\nDATA\r\nhi\r\n.\r\n");
        assert!(
            replies.ends_with(
                "354 Start mail input; end with <CRLF>.<CRLF>\r\n\
                 451 Requested action aborted: local error in processing\r\n"
            ),
            "{replies}"
        );
        // The transaction is over, and the session is back to commands.
        assert_eq!(server.codes(b"RCPT TO:<b@y>\r\nNOOP\r\n"), [503, 250]);
        assert!(!dir.exists());
    }

    // ---- STARTTLS ---------------------------------------------------------------------

    /// Settings with a certificate, and a client configuration trusting it (the test kit's
    /// deterministic pair).
    fn tls_settings() -> (Arc<Settings>, Arc<rustls::ClientConfig>) {
        let (server, client) = tendril_core::testkit::tls::pair(0);
        let settings = Settings {
            tls: Some(server),
            ..Arc::into_inner(settings(&Memory::new(), 1000)).unwrap()
        };
        (Arc::new(settings), client)
    }

    /// A client that records the replies it gets.
    #[derive(Default)]
    struct Replies(Vec<String>);

    impl Application for Replies {
        fn recv_frame(&mut self, _: &mut Tendril, frame: Bytes) -> Result<(), AppError> {
            self.0.push(String::from_utf8(frame.to_vec())?);
            Ok(())
        }
    }

    /// Run STARTTLS with `after` pipelined behind it in the same packet, then do the handshake
    /// and send `commands` over TLS; return the plaintext replies and the ones over TLS.
    fn starttls(
        settings: Arc<Settings>,
        client: Arc<rustls::ClientConfig>,
        after: &[u8],
        commands: &[&str],
    ) -> (String, Vec<String>, Session) {
        let mut server = Server::new(settings);
        let mut input = b"EHLO c\r\nMAIL FROM:<a@x>\r\nSTARTTLS\r\n".to_vec();
        input.extend_from_slice(after);
        let plain = server.send(&input);
        let mut t: Tendril = Tendril::new(Proto::TCP, Line::crlf(), Line::crlf());
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        t.wrap(TlsLayer::client(client, name).unwrap());
        for command in commands {
            t.send_frame(Bytes::copy_from_slice(command.as_bytes()))
                .unwrap();
        }
        let mut pipe = Pipe::new((t, Replies::default()), (server.t, server.s));
        pipe.run();
        assert!(!pipe.client.0.is_handshaking());
        let (_, Replies(tls)) = pipe.client;
        (plain, tls, pipe.server.1)
    }

    #[test]
    fn starttls_upgrades_and_forgets_the_session() {
        let (settings, client) = tls_settings();
        let (plain, tls, session) = starttls(
            settings,
            client,
            b"",
            &[
                "MAIL FROM:<a@x>",
                "EHLO again",
                "STARTTLS",
                "MAIL FROM:<a@x>",
            ],
        );
        assert!(plain.contains("250 STARTTLS\r\n"), "{plain}");
        assert!(
            plain.ends_with("250 OK\r\n220 Ready to start TLS\r\n"),
            "{plain}"
        );
        assert_eq!(tls[0], "503 Send HELO/EHLO first");
        assert_eq!(tls[1], "250-mx.test greets again");
        assert_eq!(tls[4], "250 8BITMIME", "no STARTTLS after TLS: {tls:?}");
        assert_eq!(tls[5..], ["503 TLS already active", "250 OK"]);
        assert!(session.tls_active());
    }

    #[test]
    fn commands_pipelined_behind_starttls_are_not_executed() {
        let (settings, client) = tls_settings();
        let (plain, tls, session) = starttls(
            settings,
            client,
            b"RSET\r\nRCPT TO:<victim@y>\r\n",
            &["RCPT TO:<b@y>"],
        );
        assert_eq!(session.plaintext_discarded(), 26);
        // Only the 220 after STARTTLS: neither RSET nor RCPT ran in plaintext.
        assert!(
            plain.ends_with("250 OK\r\n220 Ready to start TLS\r\n"),
            "{plain}"
        );
        // Nor later: the transaction was forgotten, and no RCPT was taken over.
        assert_eq!(tls, ["503 Need MAIL before RCPT"]);
    }

    #[test]
    fn require_tls_refuses_mail_in_plaintext() {
        let (settings, client) = tls_settings();
        let settings = Arc::new(Settings {
            require_tls: true,
            ..Arc::into_inner(settings).unwrap()
        });
        let mut server = Server::new(settings.clone());
        assert_eq!(server.codes(b"EHLO c\r\nMAIL FROM:<a@x>\r\n")[1], 530);
        let (plain, tls, _) = starttls(settings, client, b"", &["EHLO c", "MAIL FROM:<a@x>"]);
        assert!(plain
            .ends_with("530 Must issue a STARTTLS command first\r\n220 Ready to start TLS\r\n"));
        assert_eq!(tls.last().unwrap(), "250 OK");
    }
}
