//! The wire-format vectors in `tests/vectors/framers.json` (taken from the Python original).
//!
//! Every key of the file must be consumed by a test: an [`Obj`] that is dropped with keys
//! nobody took fails the test, so a new vector section cannot be skipped silently.

mod common;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use tendril_core::{Chunk, Cobs, Framer, LengthField, LengthPrefixed, Line, Netstring, Stuffing};

use common::{bytewise, encode, feed, hex, hexes, pull, unhex};

/// The top-level sections and the test that consumes each.
const SECTIONS: &[&str] = &[
    "line",
    "length_prefixed",
    "chunk",
    "stuffing",
    "cobs",
    "netstring",
];

/// Keys that document a vector and are not vectors themselves.
const COMMENTS: &[&str] = &["note", "about"];

fn load() -> Obj {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/framers.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let value: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    Obj::new("framers.json".into(), value)
}

/// One top-level section of the vector file.
fn section(name: &str) -> Obj {
    let mut file = load();
    let value = file.take(name);
    // The rest of the file belongs to the other tests.
    file.map.clear();
    Obj::new(name.into(), value)
}

/// A JSON object whose keys must all be taken (comments excepted) before it is dropped.
struct Obj {
    path: String,
    map: Map<String, Value>,
}

impl Obj {
    fn new(path: String, value: Value) -> Self {
        match value {
            Value::Object(map) => Obj { path, map },
            other => panic!("{path}: expected an object, found {other}"),
        }
    }

    fn child(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn take_opt(&mut self, key: &str) -> Option<Value> {
        self.map.remove(key)
    }

    fn take(&mut self, key: &str) -> Value {
        self.take_opt(key)
            .unwrap_or_else(|| panic!("{}: missing {key:?}", self.path))
    }

    fn take_obj(&mut self, key: &str) -> Obj {
        let value = self.take(key);
        Obj::new(self.child(key), value)
    }

    fn take_list(&mut self, key: &str) -> Vec<Value> {
        match self.take(key) {
            Value::Array(list) => list,
            other => panic!("{}: expected a list, found {other}", self.child(key)),
        }
    }

    fn take_hex_opt(&mut self, key: &str) -> Option<Vec<u8>> {
        self.take_opt(key).map(|v| match v {
            Value::String(s) => unhex(&s),
            other => panic!("{}: expected a hex string, found {other}", self.child(key)),
        })
    }

    fn take_hex(&mut self, key: &str) -> Vec<u8> {
        self.take_hex_opt(key)
            .unwrap_or_else(|| panic!("{}: missing {key:?}", self.path))
    }

    fn take_hex_list(&mut self, key: &str) -> Vec<Vec<u8>> {
        self.take_list(key)
            .into_iter()
            .map(|v| match v {
                Value::String(s) => unhex(&s),
                other => panic!("{}: expected a hex string, found {other}", self.child(key)),
            })
            .collect()
    }

    /// The keys not yet taken, comments excepted, sorted.
    fn keys(&self) -> Vec<String> {
        self.map
            .keys()
            .filter(|k| !COMMENTS.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}

impl Drop for Obj {
    fn drop(&mut self) {
        let left = self.keys();
        if !left.is_empty() && !std::thread::panicking() {
            panic!(
                "{}: keys not covered by any test: {left:?} (add them to tests/vectors.rs)",
                self.path
            );
        }
    }
}

/// Check one `decode` vector: `wire` fed whole and one byte at a time gives `frames` through
/// `frameify` and leaves `rest` in the buffer.
fn check_decode<F: Framer<Frame = Bytes>>(
    path: &str,
    make: &dyn Fn() -> F,
    wire: &[u8],
    frames: &[Vec<u8>],
    rest: &[u8],
) {
    let mut framer = make();
    let mut buf = BytesMut::from(wire);
    let got = pull(&mut framer, &mut buf)
        .unwrap_or_else(|e| panic!("{path}: {} fed whole: {e}", hex(wire)));
    assert_eq!(
        hexes(&got),
        hexes(frames),
        "{path}: {} fed whole",
        hex(wire)
    );
    assert_eq!(
        hex(&buf),
        hex(rest),
        "{path}: rest of {} fed whole",
        hex(wire)
    );

    let mut framer = make();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for &byte in wire {
        buf.extend_from_slice(&[byte]);
        got.extend(
            pull(&mut framer, &mut buf)
                .unwrap_or_else(|e| panic!("{path}: {} byte by byte: {e}", hex(wire))),
        );
    }
    assert_eq!(
        hexes(&got),
        hexes(frames),
        "{path}: {} byte by byte",
        hex(wire)
    );
    assert_eq!(
        hex(&buf),
        hex(rest),
        "{path}: rest of {} byte by byte",
        hex(wire)
    );
}

/// Check one frame/wire pair: the frame encodes to exactly `wire`, and `wire` decodes back to
/// the frame (fed whole and one byte at a time, through `frameify` and `frameify_eof`).
fn check_pair<F: Framer<Frame = Bytes>>(
    path: &str,
    make: &dyn Fn() -> F,
    frame: &[u8],
    wire: &[u8],
) {
    let got = encode(&mut make(), Bytes::copy_from_slice(frame))
        .unwrap_or_else(|e| panic!("{path}: streamify {}: {e}", hex(frame)));
    assert_eq!(hex(&got), hex(wire), "{path}: streamify {}", hex(frame));
    check_decode(path, make, wire, &[frame.to_vec()], b"");
    for pieces in [vec![wire], bytewise(wire)] {
        let (frames, rest) = feed(&mut make(), pieces)
            .unwrap_or_else(|e| panic!("{path}: decode {} to the end: {e}", hex(wire)));
        assert_eq!(hexes(&frames), vec![hex(frame)], "{path}: {}", hex(wire));
        assert!(rest.is_empty(), "{path}: {} left {}", hex(wire), hex(&rest));
    }
}

/// Take and check the `decode` and `streamify` lists of a framer's section, if present.
fn check_codec<F: Framer<Frame = Bytes>>(obj: &mut Obj, make: &dyn Fn() -> F) -> usize {
    let mut checked = 0;
    if obj.map.contains_key("decode") {
        let path = obj.child("decode");
        for (i, case) in obj.take_list("decode").into_iter().enumerate() {
            let mut case = Obj::new(format!("{path}[{i}]"), case);
            let wire = case.take_hex("wire");
            let frames = case.take_hex_list("frames");
            let rest = case.take_hex_opt("rest").unwrap_or_default();
            check_decode(&case.path, make, &wire, &frames, &rest);
            checked += 1;
        }
    }
    if obj.map.contains_key("streamify") {
        let path = obj.child("streamify");
        for (i, case) in obj.take_list("streamify").into_iter().enumerate() {
            let mut case = Obj::new(format!("{path}[{i}]"), case);
            let frame = case.take_hex("frame");
            let wire = case.take_hex("wire");
            check_pair(&case.path, make, &frame, &wire);
            checked += 1;
        }
    }
    checked
}

fn one_byte(path: &str, bytes: &[u8]) -> u8 {
    match bytes {
        [b] => *b,
        _ => panic!("{path}: expected one byte, found {}", hex(bytes)),
    }
}

#[test]
fn the_vector_file_has_no_section_without_a_test() {
    let mut file = load();
    let mut keys = file.keys();
    keys.sort();
    let mut known: Vec<String> = SECTIONS.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(keys, known, "top-level sections of framers.json");
    file.map.clear();
}

#[test]
fn line_vectors_decode_and_encode_exactly() {
    let mut line = section("line");
    let mut checked = 0;
    for mode in line.keys() {
        let mut obj = line.take_obj(&mode);
        let make: fn() -> Line = match mode.as_str() {
            "crlf" => Line::crlf,
            "lf" => Line::lf,
            other => panic!("line.{other}: no framer for this mode"),
        };
        checked += check_codec(&mut obj, &make);
    }
    assert!(checked > 0);
}

#[test]
fn length_prefixed_vectors_decode_and_encode_exactly() {
    let mut lp = section("length_prefixed");
    let mut checked = 0;
    for name in lp.keys() {
        let mut obj = lp.take_obj(&name);
        let field = match name.as_str() {
            "u8" => LengthField::U8,
            "u16be" => LengthField::U16Be,
            "u16le" => LengthField::U16Le,
            "u32be" => LengthField::U32Be,
            "u32le" => LengthField::U32Le,
            "u64be" => LengthField::U64Be,
            "u64le" => LengthField::U64Le,
            "varint" => LengthField::Varint,
            other => panic!("length_prefixed.{other}: no such length field"),
        };
        checked += check_codec(&mut obj, &|| LengthPrefixed::new(field));
    }
    assert!(checked > 0);
}

#[test]
fn chunk_vectors_decode_and_encode_exactly() {
    let mut chunk = section("chunk");
    let mut checked = 0;
    for name in chunk.keys() {
        let mut obj = chunk.take_obj(&name);
        let n: usize = name
            .strip_prefix('n')
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("chunk.{name}: expected n<record length>"));
        checked += check_codec(&mut obj, &|| Chunk::new(n));
    }
    assert!(checked > 0);
}

#[test]
fn stuffing_vectors_decode_and_encode_exactly() {
    let mut st = section("stuffing");
    let params = |obj: &mut Obj| {
        let prefix = obj.take_hex("prefix");
        let begin = one_byte(&obj.child("begin"), &obj.take_hex("begin"));
        let end = one_byte(&obj.child("end"), &obj.take_hex("end"));
        let nop = one_byte(&obj.child("nop"), &obj.take_hex("nop"));
        (prefix, begin, end, nop)
    };

    // The defaults are what Stuffing::default() uses.
    let mut defaults = st.take_obj("defaults");
    let default_fields = defaults.map.clone();
    let (prefix, begin, end, nop) = params(&mut defaults);
    let frame = Bytes::from_static(b"\xff\xff\xff\xff\xff\xfe\x00 \xff\xff\xff\xff");
    assert_eq!(
        encode(&mut Stuffing::default(), frame.clone()).unwrap(),
        encode(&mut Stuffing::new(&prefix, begin, end, nop).unwrap(), frame).unwrap(),
        "Stuffing::default() differs from stuffing.defaults"
    );

    let mut used = st.take_obj("params");
    let (prefix, begin, end, nop) = params(&mut used);
    let make = || Stuffing::new(&prefix, begin, end, nop).unwrap();
    let mut checked = check_codec(&mut st, &make);

    let path = st.child("invalid_params");
    let (mut unrepresentable, mut refused) = (0, 0);
    for (i, case) in st.take_list("invalid_params").into_iter().enumerate() {
        let mut case = Obj::new(format!("{path}[{i}]"), case);
        let mut merged = Obj::new(case.path.clone(), Value::Object(default_fields.clone()));
        let case_keys = case.keys();
        for key in case.keys() {
            assert!(
                merged.map.contains_key(&key),
                "{}: unknown key {key}",
                case.path
            );
            let value = case.take(&key);
            merged.map.insert(key, value);
        }
        let prefix = merged.take_hex("prefix");
        let markers = ["begin", "end", "nop"].map(|k| merged.take_hex(k));
        if markers.iter().any(|m| m.len() != 1) {
            // Markers are one `u8` each in the API: this configuration cannot even be written.
            // It must be the case's own override that is not one byte long.
            let overridden = ["begin", "end", "nop"]
                .iter()
                .zip(&markers)
                .filter(|(_, m)| m.len() != 1)
                .all(|(k, _)| case_keys.iter().any(|c| c == k));
            assert!(
                overridden,
                "{}: the defaults have a marker that is not one byte",
                case.path
            );
            unrepresentable += 1;
            continue;
        }
        let [begin, end, nop] = markers.map(|m| m[0]);
        let result = Stuffing::new(&prefix, begin, end, nop);
        assert!(
            result.is_err(),
            "{}: Stuffing::new({}, {begin:#04x}, {end:#04x}, {nop:#04x}) was accepted",
            case.path,
            hex(&prefix)
        );
        refused += 1;
    }
    assert!(unrepresentable > 0 && refused > 0);
    checked += unrepresentable + refused;
    assert!(checked > 0);
}

#[test]
fn cobs_vectors_decode_and_encode_exactly() {
    let mut cobs = section("cobs");
    let mut checked = 0;
    for variant in cobs.keys() {
        let make: fn() -> Cobs = match variant.as_str() {
            "normal" => Cobs::new,
            "zpe" => Cobs::zpe,
            other => panic!("cobs.{other}: no such COBS variant"),
        };
        let path = cobs.child(&variant);
        for (i, case) in cobs.take_list(&variant).into_iter().enumerate() {
            let mut case = Obj::new(format!("{path}[{i}]"), case);
            let frame = case.take_hex("frame");
            let wire = case.take_hex("wire");
            check_pair(&case.path, &make, &frame, &wire);
            checked += 1;
        }
    }
    assert!(checked > 0);
}

#[test]
fn netstring_vectors_decode_and_encode_exactly() {
    let mut ns = section("netstring");
    let mut checked = 0;
    for wire in ns.take_hex_list("invalid") {
        let mut buf = BytesMut::from(&wire[..]);
        let whole = pull(&mut Netstring::new(), &mut buf);
        assert!(
            whole.is_err(),
            "netstring.invalid: {} fed whole gave {:?}",
            hex(&wire),
            whole
        );
        // Byte by byte: no frame comes out before the error.
        let mut framer = Netstring::new();
        let mut buf = BytesMut::new();
        let mut failed = false;
        for &byte in &wire {
            buf.extend_from_slice(&[byte]);
            match framer.frameify(&mut buf) {
                Ok(None) => {}
                Ok(Some(frame)) => panic!("netstring.invalid: {} gave {frame:?}", hex(&wire)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "netstring.invalid: {} byte by byte", hex(&wire));
        checked += 1;
    }
    checked += check_codec(&mut ns, &Netstring::new);
    assert!(checked > 0);
}

#[test]
fn cobs_decodes_the_originals_extra_code_after_a_final_full_block() {
    // The original wrote FF + 254 bytes + 01 (ZPE: E0 + 223 bytes + 01) for a frame of exactly
    // one full block; streamify writes it without the 01, frameify accepts both.
    for (make, full, code) in [
        (Cobs::new as fn() -> Cobs, 254, 0xff),
        (Cobs::zpe, 223, 0xe0),
    ] {
        let frame: Vec<u8> = (1..=full).map(|b| b as u8).collect();
        let mut canonical = vec![code];
        canonical.extend_from_slice(&frame);
        canonical.push(0);
        assert_eq!(
            hex(&encode(&mut make(), frame.clone().into()).unwrap()),
            hex(&canonical)
        );
        let mut original = canonical.clone();
        original.insert(original.len() - 1, 0x01);
        for wire in [&canonical, &original] {
            let (frames, rest) = feed(&mut make(), bytewise(wire)).unwrap();
            assert_eq!(hexes(&frames), vec![hex(&frame)]);
            assert!(rest.is_empty());
        }
    }
}
