//! Answers already built, as NSD precompiles its own: a query seen before is answered by
//! copying its answer and putting the new query's ID in.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{respond, Transport, Zone};

/// How many answers are kept per transport; when full, the cache starts over.
const KEPT: usize = 1024;

/// Only queries and answers up to these sizes are kept, so the cache holds at most about
/// 1,024 × 4.5 KiB per transport whatever clients send (a TCP query may be 64 KiB long).
const LARGEST_QUERY: usize = 512;
const LARGEST_ANSWER: usize = 4096;

/// Answers by query without its ID.
type Cache = Mutex<HashMap<Box<[u8]>, Box<[u8]>>>;

/// Answers by query, without its ID: everything else in a query (the question with its case,
/// the flags, EDNS) may change the answer, and the zone does not change.
#[derive(Debug, Default)]
pub struct Answers {
    udp: Cache,
    tcp: Cache,
}

impl Answers {
    /// [`respond`], remembered.
    ///
    /// ```
    /// use tendril_examples::dns::{respond, Answers, Transport, Zone};
    ///
    /// let zone = Zone::parse("$ORIGIN example.test.\n$TTL 60\nwww A 192.0.2.1\n", None).unwrap();
    /// let mut query = vec![0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    /// query.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    /// let answers = Answers::default();
    /// let first = answers.respond(&zone, &query, Transport::Udp).unwrap();
    /// query[1] = 8; // the same question again, another ID
    /// let again = answers.respond(&zone, &query, Transport::Udp).unwrap();
    /// assert_eq!(again, respond(&zone, &query, Transport::Udp).unwrap());
    /// assert_eq!((first[1], again[1]), (7, 8));
    /// ```
    pub fn respond(&self, zone: &Zone, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let Some(key) = query.get(2..) else {
            return respond(zone, query, transport);
        };
        let cache = match transport {
            Transport::Udp => &self.udp,
            Transport::Tcp => &self.tcp,
        };
        if let Some(known) = tendril_net::lock(cache).get(key) {
            let mut answer = known.to_vec();
            answer[..2].copy_from_slice(&query[..2]);
            return Some(answer);
        }
        let answer = respond(zone, query, transport)?;
        if answer.len() >= 2 && key.len() <= LARGEST_QUERY && answer.len() <= LARGEST_ANSWER {
            let mut cache = tendril_net::lock(cache);
            if cache.len() >= KEPT {
                cache.clear();
            }
            cache.insert(key.into(), answer.as_slice().into());
        }
        Some(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u8, name: &[u8]) -> Vec<u8> {
        let mut query = vec![0, id, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split(|b| *b == b'.') {
            query.push(label.len() as u8);
            query.extend_from_slice(label);
        }
        query.extend_from_slice(&[0, 0, 1, 0, 1]);
        query
    }

    fn kept(answers: &Answers) -> usize {
        tendril_net::lock(&answers.udp).len()
    }

    #[test]
    fn memory_stays_bounded_whatever_clients_ask() {
        let zone = Zone::parse("$ORIGIN example.test.\n$TTL 60\nwww A 192.0.2.1\n", None).unwrap();
        let answers = Answers::default();
        for n in 0..KEPT * 3 {
            let name = format!("n{n}.example.test");
            assert!(answers
                .respond(&zone, &query(1, name.as_bytes()), Transport::Udp)
                .is_some());
            assert!(kept(&answers) <= KEPT);
        }
        // A query longer than any worth keeping is answered and not kept.
        let answers = Answers::default();
        let long = format!("{}.example.test", vec!["a".repeat(60); 9].join("."));
        let long = query(1, long.as_bytes());
        assert!(long.len() > LARGEST_QUERY);
        assert!(answers.respond(&zone, &long, Transport::Udp).is_some());
        assert_eq!(kept(&answers), 0);
    }
}
