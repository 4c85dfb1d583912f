//! Test vectors of the wire spec, `docs/wire.md` section 9.
//!
//! Every example block of the doc is copied below as a constant. Each is decoded with the
//! public functions of `tickcast_proto::codec`, compared with the value the doc describes,
//! and re-encoded byte for byte. [`doc_hex_blocks_match_vectors`] reads the doc itself
//! (compiled in with `include_str!`) and checks that its blocks and these constants are the
//! same bytes, in the same order, so the doc and the code cannot drift apart.
//!
//! Hex notation (as in the doc): `#` starts a comment running to the end of the line; the
//! rest is whitespace-separated bytes of two hex digits each. Vector names say how to read
//! the bytes: `dgram-*` is a whole QUIC datagram, `frame-*` a whole stream frame (length
//! prefix included), `bad-*` must be rejected.

use bytes::Bytes;
use tickcast_proto::codec::{
    ChannelHead, ChannelState, CodecError, Control, Datagram, DatagramBuilder, Frame, Hello,
    KIND_CONTROL, KIND_PUBLISH, KIND_TICKS, MAX_CONTROL_LEN, MAX_FRAME_LEN, PROTOCOL_VERSION,
    PUBLISH_HEADER_LEN, Publish, Role, Subscribe, TICK_HEADER_LEN, Welcome, check_frame_len,
    decode_datagram, decode_frame, encode_control_datagram, encode_control_frame,
    encode_publish_frame, encode_tick_frame, single_tick_datagram_len,
};
use tickcast_proto::tick::MAX_PAYLOAD;
use tickcast_proto::{SeqRange, Tick};

/// The spec, read at compile time so the drift check needs no file access at run time.
const DOC: &str = include_str!("../../docs/wire.md");

/// `origin_us` of the examples: 1700000000000000 µs = 2023-11-14T22:13:20Z.
const T0: u64 = 1_700_000_000_000_000;

// ---------------------------------------------------------------------------------------
// The vectors, copied from docs/wire.md.
// ---------------------------------------------------------------------------------------

/// docs/wire.md, block `dgram-one-tick`.
const DGRAM_ONE_TICK: &str = r#"
01                         # kind 0x01: tick records
01 00 00 00                # channel     u32 = 1
2a 00 00 00 00 00 00 00    # seq         u64 = 42
01 00 00 00                # epoch       u32 = 1
00 40 1e 18 24 0a 06 00    # origin_us   u64 = 1700000000000000
02 00 00 00                # payload_len u32 = 2
68 69                      # payload "hi"
"#;

/// docs/wire.md, block `dgram-two-ticks`.
const DGRAM_TWO_TICKS: &str = r#"
01                         # kind 0x01: tick records
# record 1
01 00 00 00                # channel     u32 = 1
2b 00 00 00 00 00 00 00    # seq         u64 = 43
01 00 00 00                # epoch       u32 = 1
fa 40 1e 18 24 0a 06 00    # origin_us   u64 = 1700000000000250
03 00 00 00                # payload_len u32 = 3
62 69 64                   # payload "bid"
# record 2
02 00 00 00                # channel     u32 = 2
07 00 00 00 00 00 00 00    # seq         u64 = 7
01 00 00 00                # epoch       u32 = 1
2c 41 1e 18 24 0a 06 00    # origin_us   u64 = 1700000000000300
00 00 00 00                # payload_len u32 = 0 (no payload bytes follow)
"#;

/// docs/wire.md, block `frame-tick`.
const FRAME_TICK: &str = r#"
1f 00 00 00                # frame length u32 = 31 (kind 1 + header 28 + payload 2)
01                         # kind 0x01: one tick record
01 00 00 00                # channel     u32 = 1
2a 00 00 00 00 00 00 00    # seq         u64 = 42
01 00 00 00                # epoch       u32 = 1
00 40 1e 18 24 0a 06 00    # origin_us   u64 = 1700000000000000
02 00 00 00                # payload_len u32 = 2
68 69                      # payload "hi"
"#;

/// docs/wire.md, block `frame-publish`.
const FRAME_PUBLISH: &str = r#"
13 00 00 00                # frame length u32 = 19 (kind 1 + header 16 + payload 2)
03                         # kind 0x03: publish record
01 00 00 00 00 00 00 00    # id          u64 = 1
01 00 00 00                # channel     u32 = 1
02 00 00 00                # payload_len u32 = 2
68 69                      # payload "hi"
"#;

/// docs/wire.md, block `frame-hello-consumer`.
const FRAME_HELLO_CONSUMER: &str = r#"
30 00 00 00                # frame length u32 = 48
02                         # kind 0x02: control message
00 00 00 00                # Control variant u32 = 0: Hello
01 00                      # version u16 = 1
00 00 00 00                # role: Role variant u32 = 0: Consumer
08 00 00 00 00 00 00 00    # name: length u64 = 8
63 2d 75 73 65 2d 30 31    #       "c-use-01" (UTF-8)
01 00 00 00 00 00 00 00    # subscriptions: count u64 = 1
01 00 00 00                #   [0].channel u32 = 1
01                         #   [0].resume_from: Option tag 1 = Some
2a 00 00 00 00 00 00 00    #                    u64 = 42
"#;

/// docs/wire.md, block `frame-hello-relay`.
const FRAME_HELLO_RELAY: &str = r#"
2a 00 00 00                # frame length u32 = 42
02                         # kind 0x02: control message
00 00 00 00                # Control variant u32 = 0: Hello
01 00                      # version u16 = 1
01 00 00 00                # role: Role variant u32 = 1: Relay
0a 00 00 00 00 00 00 00    # name: length u64 = 10
72 65 6c 61 79 2d 65 6d 65 61  # "relay-emea"
01 00 00 00 00 00 00 00    # subscriptions: count u64 = 1
01 00 00 00                #   [0].channel u32 = 1
00                         #   [0].resume_from: Option tag 0 = None (nothing follows)
"#;

/// docs/wire.md, block `frame-hello-publisher`.
const FRAME_HELLO_PUBLISHER: &str = r#"
1f 00 00 00                # frame length u32 = 31
02                         # kind 0x02: control message
00 00 00 00                # Control variant u32 = 0: Hello
01 00                      # version u16 = 1
02 00 00 00                # role: Role variant u32 = 2: Publisher
04 00 00 00 00 00 00 00    # name: length u64 = 4
66 65 65 64                #       "feed"
00 00 00 00 00 00 00 00    # subscriptions: count u64 = 0 (empty)
"#;

/// docs/wire.md, block `frame-welcome`.
const FRAME_WELCOME: &str = r"
21 00 00 00                # frame length u32 = 33
02                         # kind 0x02: control message
01 00 00 00                # Control variant u32 = 1: Welcome
01 00 00 00 00 00 00 00    # channels: count u64 = 1
01 00 00 00                #   [0].channel u32 = 1
2d 00 00 00 00 00 00 00    #   [0].head    u64 = 45
0a 00 00 00 00 00 00 00    #   [0].oldest  u64 = 10
";

/// docs/wire.md, block `dgram-heartbeat`.
const DGRAM_HEARTBEAT: &str = r"
02                         # kind 0x02: control message
02 00 00 00                # Control variant u32 = 2: Heartbeat
02 00 00 00 00 00 00 00    # heads: count u64 = 2
01 00 00 00                #   [0].channel u32 = 1
2d 00 00 00 00 00 00 00    #   [0].head    u64 = 45
02 00 00 00                #   [1].channel u32 = 2
07 00 00 00 00 00 00 00    #   [1].head    u64 = 7
";

/// docs/wire.md, block `frame-nack`.
const FRAME_NACK: &str = r"
31 00 00 00                # frame length u32 = 49
02                         # kind 0x02: control message
03 00 00 00                # Control variant u32 = 3: Nack
01 00 00 00                # channel u32 = 1
02 00 00 00 00 00 00 00    # ranges: count u64 = 2
2b 00 00 00 00 00 00 00    #   [0].first u64 = 43
2c 00 00 00 00 00 00 00    #   [0].last  u64 = 44
2f 00 00 00 00 00 00 00    #   [1].first u64 = 47
2f 00 00 00 00 00 00 00    #   [1].last  u64 = 47
";

/// docs/wire.md, block `frame-unavailable`.
const FRAME_UNAVAILABLE: &str = r"
19 00 00 00                # frame length u32 = 25
02                         # kind 0x02: control message
04 00 00 00                # Control variant u32 = 4: Unavailable
01 00 00 00                # channel u32 = 1
01 00 00 00 00 00 00 00    # range.first u64 = 1
09 00 00 00 00 00 00 00    # range.last  u64 = 9
";

/// docs/wire.md, block `frame-publish-ack`.
const FRAME_PUBLISH_ACK: &str = r"
0d 00 00 00                # frame length u32 = 13
02                         # kind 0x02: control message
05 00 00 00                # Control variant u32 = 5: PublishAck
01 00 00 00 00 00 00 00    # up_to u64 = 1
";

/// docs/wire.md, block `bad-dgram-kind`.
const BAD_DGRAM_KIND: &str = r"
03                         # kind 0x03: not allowed in a datagram
01 00 00 00 00 00 00 00
01 00 00 00
02 00 00 00
68 69
";

/// docs/wire.md, block `bad-dgram-seq-zero`.
const BAD_DGRAM_SEQ_ZERO: &str = r"
01                         # kind 0x01
01 00 00 00                # channel 1
00 00 00 00 00 00 00 00    # seq 0: invalid
01 00 00 00                # epoch 1
00 40 1e 18 24 0a 06 00    # origin_us
02 00 00 00                # payload_len 2
68 69
";

/// docs/wire.md, block `bad-dgram-truncated`.
const BAD_DGRAM_TRUNCATED: &str = r"
01                         # kind 0x01
01 00 00 00                # channel 1
2a 00 00 00 00 00 00 00    # seq 42
01 00 00 00                # epoch 1
00 40 1e 18 24 0a 06 00    # origin_us
02 00 00 00                # payload_len 2 ...
68                         # ... but only 1 byte follows
";

/// docs/wire.md, block `bad-dgram-payload-too-large`.
const BAD_DGRAM_PAYLOAD_TOO_LARGE: &str = r"
01                         # kind 0x01
01 00 00 00                # channel 1
2a 00 00 00 00 00 00 00    # seq 42
01 00 00 00                # epoch 1
00 40 1e 18 24 0a 06 00    # origin_us
01 00 04 00                # payload_len 262145 > 262144
";

/// docs/wire.md, block `bad-dgram-control-trailing`.
const BAD_DGRAM_CONTROL_TRAILING: &str = r"
02                         # kind 0x02
02 00 00 00                # Heartbeat
01 00 00 00 00 00 00 00    # 1 head
01 00 00 00                # channel 1
2d 00 00 00 00 00 00 00    # head 45
00                         # trailing byte
";

/// docs/wire.md, block `bad-frame-trailing`.
const BAD_FRAME_TRAILING: &str = r#"
20 00 00 00                # frame length 32 = 31 + 1
01                         # kind 0x01
01 00 00 00                # channel 1
2a 00 00 00 00 00 00 00    # seq 42
01 00 00 00                # epoch 1
00 40 1e 18 24 0a 06 00    # origin_us
02 00 00 00                # payload_len 2
68 69                      # payload "hi"
00                         # trailing byte
"#;

/// docs/wire.md, block `bad-frame-len-zero`.
const BAD_FRAME_LEN_ZERO: &str = r"
00 00 00 00                # frame length 0
";

/// docs/wire.md, block `bad-frame-len-too-large`.
const BAD_FRAME_LEN_TOO_LARGE: &str = r"
1e 00 04 00                # frame length 262174 > 262173
";

/// docs/wire.md, block `bad-frame-control-variant`.
const BAD_FRAME_CONTROL_VARIANT: &str = r"
05 00 00 00                # frame length 5
02                         # kind 0x02
06 00 00 00                # Control variant 6: unknown
";

/// docs/wire.md, block `bad-frame-option-tag`.
const BAD_FRAME_OPTION_TAG: &str = r#"
2a 00 00 00                # frame length 42
02                         # kind 0x02
00 00 00 00                # Hello
01 00                      # version 1
01 00 00 00                # Relay
0a 00 00 00 00 00 00 00    # name length 10
72 65 6c 61 79 2d 65 6d 65 61  # "relay-emea"
01 00 00 00 00 00 00 00    # 1 subscription
01 00 00 00                # channel 1
02                         # Option tag 2: invalid
"#;

/// Every vector: (name in the doc, hex).
const VECTORS: &[(&str, &str)] = &[
    ("dgram-one-tick", DGRAM_ONE_TICK),
    ("dgram-two-ticks", DGRAM_TWO_TICKS),
    ("frame-tick", FRAME_TICK),
    ("frame-publish", FRAME_PUBLISH),
    ("frame-hello-consumer", FRAME_HELLO_CONSUMER),
    ("frame-hello-relay", FRAME_HELLO_RELAY),
    ("frame-hello-publisher", FRAME_HELLO_PUBLISHER),
    ("frame-welcome", FRAME_WELCOME),
    ("dgram-heartbeat", DGRAM_HEARTBEAT),
    ("frame-nack", FRAME_NACK),
    ("frame-unavailable", FRAME_UNAVAILABLE),
    ("frame-publish-ack", FRAME_PUBLISH_ACK),
    ("bad-dgram-kind", BAD_DGRAM_KIND),
    ("bad-dgram-seq-zero", BAD_DGRAM_SEQ_ZERO),
    ("bad-dgram-truncated", BAD_DGRAM_TRUNCATED),
    ("bad-dgram-payload-too-large", BAD_DGRAM_PAYLOAD_TOO_LARGE),
    ("bad-dgram-control-trailing", BAD_DGRAM_CONTROL_TRAILING),
    ("bad-frame-trailing", BAD_FRAME_TRAILING),
    ("bad-frame-len-zero", BAD_FRAME_LEN_ZERO),
    ("bad-frame-len-too-large", BAD_FRAME_LEN_TOO_LARGE),
    ("bad-frame-control-variant", BAD_FRAME_CONTROL_VARIANT),
    ("bad-frame-option-tag", BAD_FRAME_OPTION_TAG),
];

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// Decodes the doc's hex notation: `#` comments, whitespace-separated two-digit bytes.
fn hex(text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        for tok in code.split_whitespace() {
            assert!(
                tok.len() == 2,
                "line {}: {tok:?} is not a two-digit hex byte",
                n + 1
            );
            let byte = u8::from_str_radix(tok, 16)
                .unwrap_or_else(|e| panic!("line {}: {tok:?} is not hex: {e}", n + 1));
            out.push(byte);
        }
    }
    out
}

/// The `hex` fenced blocks of the doc, as (name, text), in document order.
fn doc_blocks() -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut lines = DOC.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```hex") else {
            continue;
        };
        let name = info.trim();
        assert!(
            !name.is_empty(),
            "a ```hex block in docs/wire.md has no name"
        );
        let mut text = String::new();
        loop {
            let l = lines
                .next()
                .unwrap_or_else(|| panic!("block {name}: no closing ``` in docs/wire.md"));
            if l.trim() == "```" {
                break;
            }
            text.push_str(l);
            text.push('\n');
        }
        blocks.push((name.to_owned(), text));
    }
    blocks
}

/// Checks a stream frame's 4-byte length prefix like a receiver would, and returns the body.
fn frame_body(frame: &[u8]) -> Result<Bytes, CodecError> {
    assert!(frame.len() >= 4, "a frame starts with 4 length bytes");
    let len = check_frame_len(u32::from_le_bytes(frame[..4].try_into().unwrap()))?;
    assert_eq!(len, frame.len() - 4, "length prefix vs bytes after it");
    Ok(Bytes::copy_from_slice(&frame[4..]))
}

/// Decodes a whole stream frame (length prefix included).
fn decode_whole_frame(frame: &[u8]) -> Result<Frame, CodecError> {
    decode_frame(frame_body(frame)?)
}

/// Concatenates the two parts the tick/publish frame encoders return.
fn concat(parts: [Bytes; 2]) -> Vec<u8> {
    let mut v = parts[0].to_vec();
    v.extend_from_slice(&parts[1]);
    v
}

fn tick(channel: u32, seq: u64, origin_us: u64, payload: &'static [u8]) -> Tick {
    Tick {
        channel,
        seq,
        epoch: 1,
        origin_us,
        payload: Bytes::from_static(payload),
    }
}

/// Encodes ticks into one datagram as a server would.
fn tick_datagram(ticks: &[Tick]) -> Vec<u8> {
    let mut b = DatagramBuilder::new(1200);
    for t in ticks {
        assert!(b.fits(t));
        b.push(t);
    }
    b.finish().expect("at least one tick").to_vec()
}

/// The control-frame vectors check: decodes to `msg`, and `msg` encodes to the same bytes.
fn check_control_frame(hex_text: &str, msg: Control) {
    let bytes = hex(hex_text);
    assert_eq!(bytes[4], KIND_CONTROL);
    assert_eq!(
        decode_whole_frame(&bytes).unwrap(),
        Frame::Control(msg.clone())
    );
    assert_eq!(encode_control_frame(&msg).to_vec(), bytes);
    // The same message body is also a valid datagram body (kind byte + message).
    assert_eq!(encode_control_datagram(&msg).to_vec(), bytes[4..].to_vec());
}

// ---------------------------------------------------------------------------------------
// One test per example.
// ---------------------------------------------------------------------------------------

#[test]
fn datagram_one_tick() {
    let bytes = hex(DGRAM_ONE_TICK);
    let t = tick(1, 42, T0, b"hi");
    assert_eq!(bytes.len(), single_tick_datagram_len(2));
    assert_eq!(
        decode_datagram(Bytes::from(bytes.clone())).unwrap(),
        Datagram::Ticks(vec![t.clone()])
    );
    assert_eq!(tick_datagram(&[t]), bytes);
}

#[test]
fn datagram_two_ticks() {
    let bytes = hex(DGRAM_TWO_TICKS);
    let ticks = vec![tick(1, 43, T0 + 250, b"bid"), tick(2, 7, T0 + 300, b"")];
    assert_eq!(bytes.len(), 1 + 2 * TICK_HEADER_LEN + 3);
    assert_eq!(
        decode_datagram(Bytes::from(bytes.clone())).unwrap(),
        Datagram::Ticks(ticks.clone())
    );
    assert_eq!(tick_datagram(&ticks), bytes);
}

#[test]
fn frame_tick() {
    let bytes = hex(FRAME_TICK);
    let t = tick(1, 42, T0, b"hi");
    assert_eq!(decode_whole_frame(&bytes).unwrap(), Frame::Tick(t.clone()));
    assert_eq!(concat(encode_tick_frame(&t)), bytes);
    // Same record bytes as in the datagram of the same tick.
    assert_eq!(bytes[5..], hex(DGRAM_ONE_TICK)[1..]);
}

#[test]
fn frame_publish() {
    let bytes = hex(FRAME_PUBLISH);
    let p = Publish {
        id: 1,
        channel: 1,
        payload: Bytes::from_static(b"hi"),
    };
    assert_eq!(bytes[4], KIND_PUBLISH);
    assert_eq!(
        decode_whole_frame(&bytes).unwrap(),
        Frame::Publish(p.clone())
    );
    assert_eq!(concat(encode_publish_frame(&p)), bytes);
}

#[test]
fn frame_hello_consumer() {
    check_control_frame(
        FRAME_HELLO_CONSUMER,
        Control::Hello(Hello {
            version: 1,
            role: Role::Consumer,
            name: "c-use-01".into(),
            subscriptions: vec![Subscribe {
                channel: 1,
                resume_from: Some(42),
            }],
        }),
    );
}

#[test]
fn frame_hello_relay() {
    check_control_frame(
        FRAME_HELLO_RELAY,
        Control::Hello(Hello {
            version: 1,
            role: Role::Relay,
            name: "relay-emea".into(),
            subscriptions: vec![Subscribe {
                channel: 1,
                resume_from: None,
            }],
        }),
    );
}

#[test]
fn frame_hello_publisher() {
    check_control_frame(
        FRAME_HELLO_PUBLISHER,
        Control::Hello(Hello {
            version: 1,
            role: Role::Publisher,
            name: "feed".into(),
            subscriptions: vec![],
        }),
    );
}

#[test]
fn frame_welcome() {
    check_control_frame(
        FRAME_WELCOME,
        Control::Welcome(Welcome {
            channels: vec![ChannelState {
                channel: 1,
                head: 45,
                oldest: 10,
            }],
        }),
    );
}

#[test]
fn datagram_heartbeat() {
    let bytes = hex(DGRAM_HEARTBEAT);
    let msg = Control::Heartbeat {
        heads: vec![
            ChannelHead {
                channel: 1,
                head: 45,
            },
            ChannelHead {
                channel: 2,
                head: 7,
            },
        ],
    };
    assert_eq!(
        decode_datagram(Bytes::from(bytes.clone())).unwrap(),
        Datagram::Control(msg.clone())
    );
    assert_eq!(encode_control_datagram(&msg).to_vec(), bytes);
}

#[test]
fn frame_nack() {
    check_control_frame(
        FRAME_NACK,
        Control::Nack {
            channel: 1,
            ranges: vec![SeqRange::new(43, 44), SeqRange::single(47)],
        },
    );
}

#[test]
fn frame_unavailable() {
    check_control_frame(
        FRAME_UNAVAILABLE,
        Control::Unavailable {
            channel: 1,
            range: SeqRange::new(1, 9),
        },
    );
}

#[test]
fn frame_publish_ack() {
    check_control_frame(FRAME_PUBLISH_ACK, Control::PublishAck { up_to: 1 });
}

#[test]
fn malformed_examples_are_rejected() {
    let dgram = |text: &str| decode_datagram(Bytes::from(hex(text)));
    assert_eq!(dgram(BAD_DGRAM_KIND), Err(CodecError::UnknownKind(0x03)));
    assert_eq!(dgram(BAD_DGRAM_SEQ_ZERO), Err(CodecError::ZeroSeq(1)));
    assert_eq!(
        dgram(BAD_DGRAM_TRUNCATED),
        Err(CodecError::Truncated {
            what: "tick payload",
            need: 2,
            have: 1
        })
    );
    assert_eq!(
        dgram(BAD_DGRAM_PAYLOAD_TOO_LARGE),
        Err(CodecError::TooLarge {
            what: "tick payload",
            len: MAX_PAYLOAD + 1,
            max: MAX_PAYLOAD
        })
    );
    assert_eq!(
        dgram(BAD_DGRAM_CONTROL_TRAILING),
        Err(CodecError::Trailing(1))
    );

    assert_eq!(
        decode_whole_frame(&hex(BAD_FRAME_TRAILING)),
        Err(CodecError::Trailing(1))
    );
    // The two length-only vectors: the prefix alone is rejected, no body is read.
    let prefix = |text: &str| {
        let b = hex(text);
        assert_eq!(b.len(), 4);
        check_frame_len(u32::from_le_bytes(b.try_into().unwrap()))
    };
    assert_eq!(prefix(BAD_FRAME_LEN_ZERO), Err(CodecError::Empty));
    assert_eq!(
        prefix(BAD_FRAME_LEN_TOO_LARGE),
        Err(CodecError::TooLarge {
            what: "stream frame",
            len: MAX_FRAME_LEN + 1,
            max: MAX_FRAME_LEN
        })
    );
    assert!(matches!(
        decode_whole_frame(&hex(BAD_FRAME_CONTROL_VARIANT)),
        Err(CodecError::Control(_))
    ));
    assert!(matches!(
        decode_whole_frame(&hex(BAD_FRAME_OPTION_TAG)),
        Err(CodecError::Control(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Doc-level checks.
// ---------------------------------------------------------------------------------------

/// Decodes a vector the way its name says; `Ok` when a receiver would accept it.
fn decode_by_name(name: &str, bytes: &[u8]) -> Result<(), CodecError> {
    let kind = name.strip_prefix("bad-").unwrap_or(name);
    if kind.starts_with("dgram-") {
        decode_datagram(Bytes::copy_from_slice(bytes)).map(drop)
    } else if kind.starts_with("frame-") {
        assert!(
            bytes.len() >= 4,
            "{name}: a frame starts with 4 length bytes"
        );
        let len = check_frame_len(u32::from_le_bytes(bytes[..4].try_into().unwrap()))?;
        assert_eq!(
            len,
            bytes.len() - 4,
            "{name}: length prefix vs bytes after it"
        );
        decode_frame(Bytes::copy_from_slice(&bytes[4..])).map(drop)
    } else {
        panic!("vector name {name:?} starts with neither dgram- nor frame-")
    }
}

#[test]
fn doc_hex_blocks_match_vectors() {
    let blocks = doc_blocks();
    let doc_names: Vec<&str> = blocks.iter().map(|(n, _)| n.as_str()).collect();
    let test_names: Vec<&str> = VECTORS.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        doc_names, test_names,
        "docs/wire.md blocks vs VECTORS (names, order)"
    );
    for ((name, text), (_, vector)) in blocks.iter().zip(VECTORS) {
        let bytes = hex(text);
        assert_eq!(
            bytes,
            hex(vector),
            "{name}: docs/wire.md and this file differ"
        );
        let result = decode_by_name(name, &bytes);
        if name.starts_with("bad-") {
            assert!(result.is_err(), "{name} must be rejected but decodes");
        } else {
            result.unwrap_or_else(|e| panic!("{name} must decode: {e}"));
        }
    }
}

#[test]
fn doc_limits_match_codec() {
    assert_eq!(PROTOCOL_VERSION, 1);
    assert_eq!(KIND_TICKS, 0x01);
    assert_eq!(KIND_CONTROL, 0x02);
    assert_eq!(KIND_PUBLISH, 0x03);
    assert_eq!(TICK_HEADER_LEN, 28);
    assert_eq!(PUBLISH_HEADER_LEN, 16);
    assert_eq!(MAX_PAYLOAD, 262_144);
    assert_eq!(MAX_FRAME_LEN, 262_173);
    assert_eq!(MAX_CONTROL_LEN, 65_536);
    for n in ["262144", "262173", "65536", "`tickcast/1`"] {
        assert!(DOC.contains(n), "docs/wire.md does not mention {n}");
    }
}

/// The doc says a control body (after the kind byte) may be at most 65536 bytes.
#[test]
fn control_body_limit_is_65536_bytes() {
    // Hello body = 4 (variant) + 2 (version) + 4 (role) + 8 (name length) + name
    //              + 8 (subscription count) = 26 + name.
    let hello = |name_len: usize| {
        Control::Hello(Hello {
            version: 1,
            role: Role::Consumer,
            name: "a".repeat(name_len),
            subscriptions: vec![],
        })
    };
    let largest = hello(MAX_CONTROL_LEN - 26);
    let frame = encode_control_frame(&largest);
    assert_eq!(frame.len(), 4 + 1 + MAX_CONTROL_LEN);
    assert_eq!(decode_whole_frame(&frame).unwrap(), Frame::Control(largest));
    let too_large = encode_control_frame(&hello(MAX_CONTROL_LEN - 25));
    assert!(matches!(
        decode_whole_frame(&too_large),
        Err(CodecError::Control(_))
    ));
    let dgram = encode_control_datagram(&hello(MAX_CONTROL_LEN - 25));
    assert!(matches!(
        decode_datagram(dgram),
        Err(CodecError::Control(_))
    ));
}
