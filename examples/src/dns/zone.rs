//! A zone loaded from a master file (RFC 1035 §5), indexed for lookups.

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::txt::Parser;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Zone files longer than this are not re-parsed to find the line of an error (that search
/// parses every prefix of the file).
const LOCATE_MAX_LINES: usize = 5_000;

/// A zone file that could not be loaded: where, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError {
    /// The file, when the zone came from one.
    pub path: Option<PathBuf>,
    /// The 1-based line of the error, when it could be found (for a record spread over several
    /// lines with parentheses, its last line).
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}", path.display())?,
            None => f.write_str("zone")?,
        }
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ZoneError {}

/// The records of one zone, by owner name (compared case-insensitively).
///
/// Loaded with hickory-proto's master-file parser: `$ORIGIN`, `$TTL`, `$INCLUDE`, `@`, relative
/// names, optional TTL and class, parentheses, comments and every record type hickory knows.
/// On top of the parser, loading checks that every record is in the zone, of class `IN`, that
/// an SOA (if any) sits at the origin, and that no CNAME shares its name with other data.
///
/// ```
/// use tendril_examples::dns::Zone;
///
/// let zone = Zone::parse("$ORIGIN example.test.\n$TTL 60\nwww A 192.0.2.1\n", None).unwrap();
/// assert_eq!(zone.origin().to_string(), "example.test.");
/// assert_eq!(zone.len(), 1);
/// let error = Zone::parse("$ORIGIN example.test.\n$TTL 60\nwww A 192.0.2.999\n", None);
/// assert_eq!(error.unwrap_err().line, Some(3));
/// ```
#[derive(Debug, Clone)]
pub struct Zone {
    origin: Name,
    lower_origin: LowerName,
    /// Records by owner, each owner's records in file order by type.
    nodes: HashMap<LowerName, Vec<Record>>,
    /// Every owner name and every name between an owner and the origin (empty non-terminals
    /// exist too: they answer NODATA, not NXDOMAIN).
    names: HashSet<LowerName>,
    soa: Option<Record>,
    len: usize,
}

impl Zone {
    /// Load a zone file. Relative `$INCLUDE` paths are taken from the file's directory.
    pub fn load(path: &Path) -> Result<Zone, ZoneError> {
        let text = std::fs::read_to_string(path).map_err(|e| ZoneError {
            path: Some(path.to_owned()),
            line: None,
            message: e.to_string(),
        })?;
        Zone::parse(&text, Some(path))
    }

    /// Parse a zone from master-file text; `path` names it in errors and anchors `$INCLUDE`.
    pub fn parse(text: &str, path: Option<&Path>) -> Result<Zone, ZoneError> {
        let error = |line: Option<usize>, message: String| ZoneError {
            path: path.map(Path::to_owned),
            line,
            message,
        };
        let parse = |text: &str| Parser::new(text, path.map(Path::to_owned), None).parse();
        let (origin, sets) = match parse(text) {
            Ok(parsed) => parsed,
            Err(e) => {
                let message = e.to_string();
                let line = locate(text, &message, |prefix| {
                    parse(prefix).err().map(|e| e.to_string())
                });
                let message = if message.contains("$ORIGIN was not specified") {
                    "no $ORIGIN: start the file with `$ORIGIN your.zone.`".to_owned()
                } else {
                    message
                };
                return Err(error(line, message));
            }
        };
        // The parser returns the origin in force at the end of the file; the apex is the first.
        let origin = first_origin(text).unwrap_or(origin);
        let lower_origin = LowerName::new(&origin);
        let mut zone = Zone {
            origin,
            lower_origin,
            nodes: HashMap::new(),
            names: HashSet::new(),
            soa: None,
            len: 0,
        };
        for set in sets.into_values() {
            for record in set.records_without_rrsigs() {
                zone.insert(record.clone()).map_err(|m| error(None, m))?;
            }
        }
        // Name the offending owner: the parser does not say where a record came from.
        for (name, records) in &zone.nodes {
            let cname = records.iter().any(|r| r.record_type() == RecordType::CNAME);
            if cname && records.len() > 1 {
                return Err(error(
                    None,
                    format!("{name} has a CNAME and other records (RFC 1034 §3.6.2)"),
                ));
            }
        }
        Ok(zone)
    }

    fn insert(&mut self, mut record: Record) -> Result<(), String> {
        let owner = LowerName::new(record.name());
        if !self.lower_origin.zone_of(&owner) {
            return Err(format!(
                "{} is outside the zone {}",
                record.name(),
                self.origin
            ));
        }
        if record.dns_class() != DNSClass::IN {
            return Err(format!(
                "{} {}: only class IN is served, not {}",
                record.name(),
                record.record_type(),
                record.dns_class()
            ));
        }
        if let RData::SOA(soa) = record.data() {
            if owner != self.lower_origin {
                return Err(format!(
                    "the SOA is at {}, not at the origin {}",
                    record.name(),
                    self.origin
                ));
            }
            // hickory's parser gives the SOA its EXPIRE field as TTL; the MINIMUM field is the
            // TTL that negative answers carry (RFC 2308 §5), and a sane TTL for the SOA itself.
            let ttl = soa.minimum();
            record.set_ttl(ttl);
            self.soa = Some(record.clone());
        }
        let mut name = owner.clone();
        while self.names.insert(name.clone()) && name != self.lower_origin {
            name = name.base_name();
        }
        self.nodes.entry(owner).or_default().push(record);
        self.len += 1;
        Ok(())
    }

    /// The zone's origin (apex).
    pub fn origin(&self) -> &Name {
        &self.origin
    }

    /// The number of records.
    pub fn len(&self) -> usize {
        self.len
    }

    /// `true` when the zone holds no record.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SOA record, if the zone has one (its TTL is the SOA's MINIMUM field).
    pub fn soa(&self) -> Option<&Record> {
        self.soa.as_ref()
    }

    /// `true` if `name` is the origin or below it: this server is authoritative for it.
    pub fn contains(&self, name: &Name) -> bool {
        self.origin.zone_of(name)
    }

    /// The records owned by `name` (any case); empty for a name without records.
    pub fn records(&self, name: &Name) -> &[Record] {
        self.nodes
            .get(&LowerName::new(name))
            .map_or(&[], Vec::as_slice)
    }

    /// `true` if `name` owns records or has names with records below it (an empty
    /// non-terminal); otherwise the name does not exist (NXDOMAIN).
    pub fn exists(&self, name: &Name) -> bool {
        self.names.contains(&LowerName::new(name))
    }

    /// The highest delegation point (a name below the origin with NS records) at or above
    /// `name`, if `name` lies in a delegated child zone.
    pub fn delegation(&self, name: &Name) -> Option<&Name> {
        let mut cut = None;
        let mut at = LowerName::new(name);
        while at != self.lower_origin && self.lower_origin.zone_of(&at) {
            if let Some(records) = self.nodes.get(&at) {
                if let Some(ns) = records.iter().find(|r| r.record_type() == RecordType::NS) {
                    cut = Some(ns.name());
                }
            }
            at = at.base_name();
        }
        cut
    }
}

/// The name of the first `$ORIGIN` directive, if it is absolute.
fn first_origin(text: &str) -> Option<Name> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let directive = words.next()?;
        if !directive.eq_ignore_ascii_case("$ORIGIN") {
            return None;
        }
        Name::from_ascii(words.next()?).ok().filter(Name::is_fqdn)
    })
}

/// The 1-based line of a parse error: the first prefix of whole lines that fails with the same
/// message. A prefix that stops inside a parenthesised record fails differently and is passed
/// over, so such an error is reported at the record's last line.
fn locate(
    text: &str,
    message: &str,
    mut parse: impl FnMut(&str) -> Option<String>,
) -> Option<usize> {
    if message.contains("$ORIGIN was not specified") {
        return None;
    }
    let ends: Vec<usize> = text
        .match_indices('\n')
        .map(|(i, _)| i + 1)
        .chain((!text.ends_with('\n')).then_some(text.len()))
        .collect();
    if ends.len() > LOCATE_MAX_LINES {
        return None;
    }
    ends.iter()
        .position(|&end| parse(&text[..end]).as_deref() == Some(message))
        .map(|i| i + 1)
}
