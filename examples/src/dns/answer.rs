//! Turning one query message into one response message.

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};
use std::collections::HashSet;

use super::Zone;

/// The UDP payload size this server advertises in its OPT record (the DNS Flag Day 2020 value,
/// safe from IP fragmentation).
pub const UDP_PAYLOAD: u16 = 1232;

/// The largest UDP response to a client without EDNS (RFC 1035 §4.2.1).
pub const UDP_LIMIT_PLAIN: usize = 512;

/// At most this many CNAMEs are followed for one query.
const MAX_CNAME_CHAIN: usize = 16;

/// How a query arrived, which decides how large the response may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A datagram: 512 bytes, or the client's EDNS payload size; larger answers are truncated
    /// (TC set) so the client retries over TCP.
    Udp,
    /// A stream with 2-byte length prefixes: whole answers up to 65,535 bytes.
    Tcp,
}

/// The answer to one query, before encoding.
#[derive(Debug, Default)]
struct Answer {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authority: Vec<Record>,
    additional: Vec<Record>,
}

impl Answer {
    fn refused() -> Self {
        Answer {
            rcode: ResponseCode::Refused,
            ..Answer::default()
        }
    }
}

/// Answer one DNS message from `zone`. `None` means the message is dropped: it is too short to
/// have a header, or it is itself a response (answering those invites loops).
///
/// A message whose header parses but whose body does not gets FORMERR; opcodes other than
/// QUERY get NOTIMP; EDNS versions above 0 get BADVERS (RFC 6891 §6.1.3).
pub fn respond(zone: &Zone, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
    let header = Header::read(&mut BinDecoder::new(query)).ok()?;
    if header.message_type() == MessageType::Response {
        return None;
    }
    let request = match Message::from_vec(query) {
        Ok(request) => request,
        Err(e) => {
            tracing::debug!(id = header.id(), error = %e, "malformed query: FORMERR");
            let mut response =
                Message::error_msg(header.id(), header.op_code(), ResponseCode::FormErr);
            response.set_recursion_desired(header.recursion_desired());
            return response.to_vec().ok();
        }
    };
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_checking_disabled(request.checking_disabled())
        .add_queries(request.queries().iter().cloned());
    let client_edns = request.extensions().as_ref();
    if client_edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(UDP_PAYLOAD).set_version(0);
        response.set_edns(edns);
    }
    let answer = match (request.op_code(), request.queries(), client_edns) {
        (_, _, Some(edns)) if edns.version() > 0 => Answer {
            rcode: ResponseCode::BADVERS,
            ..Answer::default()
        },
        (OpCode::Query, [query], _) => resolve(zone, query),
        (OpCode::Query, _, _) => Answer {
            rcode: ResponseCode::FormErr,
            ..Answer::default()
        },
        _ => Answer {
            rcode: ResponseCode::NotImp,
            ..Answer::default()
        },
    };
    response
        .set_response_code(answer.rcode)
        .set_authoritative(answer.authoritative);
    let limit = match transport {
        Transport::Tcp => usize::from(u16::MAX),
        Transport::Udp => match client_edns {
            Some(edns) => usize::from(edns.max_payload()).max(UDP_LIMIT_PLAIN),
            None => UDP_LIMIT_PLAIN,
        },
    };
    fit(response, answer, limit)
}

/// Encode the response within `limit` bytes. The additional section goes first (no TC: it is
/// optional, RFC 2181 §9); if the answer still does not fit, TC is set, the authority section
/// dropped and whole answer RRsets dropped from the end until it fits — often all of them.
fn fit(mut response: Message, answer: Answer, limit: usize) -> Option<Vec<u8>> {
    let encode = |m: &Message| match m.to_vec() {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode a response");
            None
        }
    };
    let mut full = response.clone();
    full.add_answers(answer.answers.iter().cloned())
        .add_name_servers(answer.authority.iter().cloned())
        .add_additionals(answer.additional.iter().cloned());
    let bytes = encode(&full)?;
    if bytes.len() <= limit {
        return Some(bytes);
    }
    if !answer.additional.is_empty() {
        full.take_additionals();
        let bytes = encode(&full)?;
        if bytes.len() <= limit {
            return Some(bytes);
        }
    }
    // How many answers to keep: whole RRsets only, so cut where the (owner, type) changes.
    let records = &answer.answers;
    let mut ends: Vec<usize> = (1..records.len())
        .filter(|&i| {
            let (a, b) = (&records[i - 1], &records[i]);
            a.record_type() != b.record_type() || a.name() != b.name()
        })
        .collect();
    ends.insert(0, 0);
    ends.push(records.len());
    ends.dedup();
    response.set_truncated(true);
    for &end in ends.iter().rev() {
        let mut attempt = response.clone();
        attempt.add_answers(answer.answers[..end].iter().cloned());
        let bytes = encode(&attempt)?;
        if bytes.len() <= limit || end == 0 {
            return Some(bytes);
        }
    }
    None
}

/// Look `query` up in the zone: answers, CNAME chains, NODATA, NXDOMAIN, referrals, REFUSED.
fn resolve(zone: &Zone, query: &Query) -> Answer {
    let qtype = query.query_type();
    if !matches!(query.query_class(), DNSClass::IN | DNSClass::ANY) || !zone.contains(query.name())
    {
        return Answer::refused();
    }
    if matches!(
        qtype,
        RecordType::AXFR | RecordType::IXFR | RecordType::OPT | RecordType::ZERO
    ) {
        // Zone transfers are not offered; OPT is not a question.
        return Answer::refused();
    }
    let mut answer = Answer {
        authoritative: true,
        ..Answer::default()
    };
    let mut name = query.name().clone();
    let mut seen = HashSet::from([name.to_lowercase()]);
    loop {
        if let Some(cut) = zone.delegation(&name) {
            if answer.answers.is_empty() {
                // Not ours: a referral to the child zone's servers (RFC 1034 §4.3.2).
                answer.authoritative = false;
                answer.authority = zone
                    .records(cut)
                    .iter()
                    .filter(|r| r.record_type() == RecordType::NS)
                    .cloned()
                    .collect();
                answer.additional = addresses_for(zone, &answer.authority, &[]);
            }
            return answer;
        }
        let records = zone.records(&name);
        let found: Vec<Record> = records
            .iter()
            .filter(|r| qtype == RecordType::ANY || r.record_type() == qtype)
            .map(|r| with_owner(r, &name))
            .collect();
        if !found.is_empty() {
            answer.additional = addresses_for(zone, &found, &answer.answers);
            answer.answers.extend(found);
            return answer;
        }
        let cname = records.iter().find_map(|r| match r.data() {
            RData::CNAME(target) => Some((r, target.0.clone())),
            _ => None,
        });
        match cname {
            Some((record, target)) => {
                answer.answers.push(with_owner(record, &name));
                // A loop or a long chain ends here; the target outside the zone is the
                // client's to resolve.
                if !seen.insert(target.to_lowercase())
                    || seen.len() > MAX_CNAME_CHAIN
                    || !zone.contains(&target)
                {
                    return answer;
                }
                name = target;
            }
            None => {
                // NODATA or NXDOMAIN; the SOA tells how long to cache that (RFC 2308).
                if !zone.exists(&name) {
                    answer.rcode = ResponseCode::NXDomain;
                }
                answer.authority.extend(zone.soa().cloned());
                return answer;
            }
        }
    }
}

/// `record` owned by `name` as the client spelled it (same name, maybe other case).
fn with_owner(record: &Record, name: &Name) -> Record {
    let mut record = record.clone();
    record.set_name(name.clone());
    record
}

/// Additional-section processing (RFC 1035 §3.3.9, §3.3.11): the in-zone A and AAAA records of
/// the hosts that MX and NS records name, unless already answered.
fn addresses_for(zone: &Zone, records: &[Record], answered: &[Record]) -> Vec<Record> {
    let mut out: Vec<Record> = Vec::new();
    for record in records {
        let host = match record.data() {
            RData::MX(mx) => mx.exchange(),
            RData::NS(ns) => &ns.0,
            _ => continue,
        };
        if !zone.contains(host) {
            continue;
        }
        for address in zone.records(host) {
            let wanted = matches!(address.record_type(), RecordType::A | RecordType::AAAA);
            if wanted && !answered.contains(address) && !out.contains(address) {
                out.push(address.clone());
            }
        }
    }
    out
}
