#!/usr/bin/env python3
"""Write the seed inputs in fuzz/seeds/<target>/ (run from anywhere; overwrites them).

Each seed is laid out the way the target's `Arbitrary` input parses it: the option fields in
declaration order, then the stream (split sizes, raw data, and last the number of splits, which
`arbitrary` takes from the end). Check one with `cargo fuzz fmt <target> <seed>`.
"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def b(v):  # bool
    return bytes([1 if v else 0])


def u8(v):
    return bytes([v & 0xFF])


def variant(i, count):  # a derived enum's variant i of count
    v = -(-(i << 32) // count)
    assert (v * count) >> 32 == i
    return struct.pack("<I", v)


def small(n):  # Limit::Small(n)
    return variant(0, 3) + struct.pack("<H", n)


DEFAULT = variant(1, 3)  # Limit::Default
UNLIMITED = variant(2, 3)  # Limit::Unlimited


def some(x):
    return b"\x01" + x


NONE = b"\x00"


def stream(data, splits=()):
    body = bytes(splits) + data
    if len(body) + 1 <= 256:  # one size byte
        return body + bytes([len(splits)])
    assert len(body) + 2 <= 65536, "keep seeds small"
    return body + struct.pack(">H", len(splits))  # two size bytes, high first


def arr8(x):
    return x.ljust(8, b"\x00")


def u16(v):  # little-endian, as `arbitrary` reads integers
    return struct.pack("<H", v)


# The `tls` target's ops: a tag byte, then the fields (see its `impl Arbitrary for Op`).
def op_bytes(tag, data):
    return u8(tag) + u16(len(data)) + data


def tls_input(ops, handshake=10_000, idle=None, linger=1_000, high=4_096):
    opt = lambda v: NONE if v is None else b"\x01" + u16(v)
    return opt(handshake) + opt(idle) + u16(linger) + u16(high) + b"".join(ops)


READ = lambda data: op_bytes(0, data)
FORWARD = lambda n=0: u8(1) + u16(n)  # 0: all of the client's output
FLIP = lambda at, xor: u8(2) + u16(at) + u8(xor)
REPLY = lambda n=0: u8(3) + u16(n)  # 0: all of the server's output
CLIENT_SEND = lambda line: op_bytes(4, line)
CLIENT_CLOSE, CLIENT_FINISH, CLIENT_SHUTDOWN = u8(5), u8(6), u8(7)
EOF, ERROR = u8(8), u8(9)
TICK = lambda ms: u8(10) + u16(ms)
SEND = lambda line: op_bytes(11, line)
CLOSE, FINISH, ABORT = u8(12), u8(13), u8(14)
PAUSE = lambda on: u8(15) + b(on)
SHUTDOWN = u8(16)
CLIENT_LINES = lambda count, length: u8(17) + u8(count) + u8(length)

# The first flight of the `tls` target's client: `testkit::tls::Seeded::new(0)`'s client
# config, connecting to "localhost" (TLS 1.3 and 1.2, the insecure key share on 0xFE00). The
# test kit is deterministic, so this is exactly what `FORWARD()` hands the server first; to
# make it again, print `t.transmit().take_all()` of a `Tendril` just wrapped in
# `TlsLayer::client(client_config(0), server_name())`.
CLIENT_HELLO = bytes.fromhex(
    "16030100df010000db0303a063347b217094e69c91499b4a629549444acb4ca9e3d725625ed01721e663b920"
    "16499ae8e00b7e65523316bd4b575045c9b3c13a9927fd6c8a8a8ddbcfd2e30b0014130213011303c02cc02b"
    "cca9c030c02fcca800ff0100007e0000000e000c0000096c6f63616c686f7374002d00020101002b00050403"
    "040303000d001400120503040308070806080508040601050104010017000000050005010000000000330026"
    "0024fe00002051f297517fe61d1e3f60071568ce2684eac445debc89c99a54e4602acf8db4ed000a00040002"
    "fe00000b00020100"
)
# A whole conversation: handshake, a line and its echo, the client's close_notify, FINs.
TLS_TALK = [
    FORWARD(), REPLY(), FORWARD(), CLIENT_SEND(b"hello"), FORWARD(), REPLY(),
    CLIENT_CLOSE, FORWARD(), REPLY(), CLIENT_SHUTDOWN, SHUTDOWN,
]


SEEDS = {
    "identity": [
        small(5) + stream(b"hello world", [3, 0, 4]),
        DEFAULT + stream(b"anything at all"),
        small(1) + stream(b"\x00\x01\x02", [1, 1]),
        UNLIMITED + stream(b"abc" * 10, [7]),
    ],
    "chunk": [
        u8(4) + b(False) + stream(b"1234567890abc", [5]),
        u8(4) + b(True) + stream(b"1234567", [2, 3]),
        u8(0) + b(False) + stream(b"xyz"),
    ],
    "line": [
        b(True) + small(16) + b(False) + b(False) + stream(b"EHLO a\r\n\r\nbare lf\nlast"),
        b(False) + DEFAULT + b(False) + b(False) + stream(b"a\nb\r\nc\r", [1, 2]),
        b(True) + small(4) + b(True) + b(False) + stream(b"much too long\r\nok\r\nlonger", [3]),
        b(True) + small(3) + b(True) + b(True) + stream(bytes(range(40)), [7, 0, 5]),
    ],
    "delimiter": [
        arr8(b"\r\n.\r\n") + u8(4) + NONE + b(False) + small(64) + b(False)
        + stream(b"Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n", [10]),
        arr8(b"\r\n.\r\n") + u8(4) + NONE + b(True) + small(8) + b(True)
        + stream(b"short\r\n.\r\nway too long here\r\n.\r\ntail", [9, 9]),
        arr8(b"\x00\x00\x01") + u8(2) + some(u8(1)) + b(False) + small(6) + b(True)
        + stream(bytes([0, 1, 0, 0, 1, 1, 0, 0, 0, 1, 0]), [2]),
        arr8(b"\x00") + u8(0) + some(u8(0)) + b(True) + DEFAULT + b(False)
        + stream(b"\x00" * 5),
    ],
    "length_prefixed": [
        variant(1, 8) + u8(0) + u8(0) + b(False) + DEFAULT + stream(b"\x00\x03abc\x00\x00", [1, 2]),
        variant(7, 8) + u8(0) + u8(0) + b(False) + small(300) + stream(b"\x03abc\x80\x01" + b"x" * 128),
        variant(0, 8) + u8(2) + u8(0) + b(True) + small(16) + stream(b"hh\x06abcHH\x03"),
        variant(4, 8) + u8(1) + u8(0xFE) + b(False) + small(8) + stream(b"H\x05\x00\x00\x00abc", [4]),
        variant(7, 8) + u8(0) + u8(0xFB) + b(True) + small(64) + stream(b"\x80\x80\x00"),
        variant(5, 8) + u8(3) + u8(0) + b(True) + UNLIMITED
        + stream(b"hdr\x00\x00\x00\x00\x00\x00\x00\x0ebhdr\xff\xff\xff\xff\xff\xff\xff\xffabc"),
    ],
    "netstring": [
        DEFAULT + b(False) + stream(b"5:hello,0:,12:hello world!,", [3, 4]),
        small(4) + b(False) + stream(b"3:abc,05:hello,"),
        small(100) + b(True) + stream(bytes([1, 10, 3, 10, 4, 11]) * 3),
        UNLIMITED + b(False) + stream(b"3:abc,18446744073709551615:abc", [4]),
    ],
    "stuffing": [
        arr8(b"zzz") + u8(2) + b"z" + b"w" + b"a" + b(False) + small(64) + b(False)
        + stream(b"junkzzzza zzzaz bzzzw", [6]),
        arr8(b"\xff\xff\xff\xff") + u8(3) + b"\xff\xfe\x00" + b(False) + DEFAULT + b(False)
        + stream(b"\xff\xff\xff\xff\xffab\xff\xff\xff\xff\x00c\xff\xff\xff\xff\xfe"),
        arr8(b"\x00") + u8(0) + bytes([0, 1, 2]) + b(True) + small(3) + b(True)
        + stream(bytes([0, 0, 2, 0, 0, 0, 3, 0, 1, 0, 0, 2, 0, 1]), [3, 3]),
    ],
    "cobs": [
        b(False) + small(64) + b(False) + stream(b"\x03\x11\x22\x02\x33\x00\x01\x00\x01\x01\x00", [2]),
        b(True) + DEFAULT + b(False) + stream(b"\xe2\x11\x02\x22\x00\xe1\x00\xe1\x01\x00"),
        b(False) + small(3) + b(True) + stream(b"\x05abcd\x00\x02x\x00\x05ab\x00", [4, 1]),
        b(False) + small(300) + b(False) + stream(b"\xff" + b"y" * 254 + b"\x00"),
    ],
}

SEEDS["tls"] = [
    tls_input(TLS_TALK),
    # The ClientHello as raw bytes, for mutations inside it.
    tls_input([READ(CLIENT_HELLO), REPLY(), TICK(20_000)]),
    # A ClientHello in two reads, then nothing until the handshake timeout.
    tls_input([FORWARD(100), TICK(500), FORWARD(), REPLY(), TICK(1_000)], handshake=1_000),
    # The client's Finished with a byte flipped: the server's alert, then the close.
    tls_input([FORWARD(), REPLY(), FLIP(20, 0x40), REPLY(), SHUTDOWN]),
    # Back-pressure: a tiny high watermark, many lines, the replies taken a few bytes at a time.
    tls_input([FORWARD(), REPLY(), FORWARD()]
              + [CLIENT_SEND(b"line %d" % i) for i in range(12)]
              + [FORWARD(), REPLY(5), FORWARD(), REPLY(40), PAUSE(True), FORWARD(), PAUSE(False),
                 REPLY(), FORWARD()], high=1),
    # The server's application: a send during the handshake, a close that waits for it.
    tls_input([SEND(b"early"), FORWARD(), CLOSE, REPLY(), FORWARD(), REPLY(), SHUTDOWN,
               TICK(2_000)]),
    # A half-close after the handshake; the client answers with its own; EOF.
    tls_input([FORWARD(), REPLY(), FORWARD(), SEND(b"bye"), FINISH, REPLY(), SHUTDOWN,
               CLIENT_SEND(b"still here"), CLIENT_FINISH, FORWARD(), CLIENT_SHUTDOWN]),
    # Garbage instead of a hello, an EOF mid-handshake, an error, an abort, an idle timeout.
    tls_input([READ(b"GET / HTTP/1.1\r\n\r\n"), REPLY(), SHUTDOWN]),
    tls_input([FORWARD(50), EOF]),
    tls_input([FORWARD(), REPLY(), ERROR]),
    tls_input([FORWARD(), REPLY(), FORWARD(), ABORT]),
    tls_input([FORWARD(), REPLY(), FORWARD(), TICK(3_000), REPLY(), SHUTDOWN], idle=2_000),
    # Sixteen long lines against a high watermark of one byte, the replies taken one by one.
    tls_input([FORWARD(), REPLY(), FORWARD(), CLIENT_LINES(15, 100)] + [FORWARD(), REPLY()] * 8,
              high=1),
]

for target, seeds in SEEDS.items():
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        os.remove(os.path.join(folder, name))
    for i, seed in enumerate(seeds):
        with open(os.path.join(folder, f"seed-{i}"), "wb") as f:
            f.write(seed)
    print(f"{target}: {len(seeds)} seeds")
