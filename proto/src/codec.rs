//! The one codec module: every byte tickcast puts on the wire is made and read here.
//!
//! Two encodings live side by side (docs/wire.md is the normative description):
//! - tick records use a fixed little-endian layout so a receiver can slice the payload out
//!   of the received buffer without copying, and a relay can forward it untouched;
//! - control messages ([`Control`]) go through serde + bincode 2 (fixed-width integers,
//!   little endian), which nothing outside this module may call.
//!
//! Framing: a QUIC DATAGRAM is one kind byte plus its body; a QUIC stream carries frames of
//! `u32 length | kind | body`.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::tick::{ChannelId, MAX_PAYLOAD, Seq, SeqRange, Tick};

/// Protocol version carried in [`Hello`]; the ALPN string `tickcast/1` names it too.
pub const PROTOCOL_VERSION: u16 = 1;
/// Bytes in a tick record before its payload.
pub const TICK_HEADER_LEN: usize = 4 + 8 + 4 + 8 + 4;
/// Bytes in a publish record before its payload.
pub const PUBLISH_HEADER_LEN: usize = 8 + 4 + 4;
/// Largest encoded control message accepted.
pub const MAX_CONTROL_LEN: usize = 64 * 1024;
/// Largest stream frame body accepted (kind byte included).
pub const MAX_FRAME_LEN: usize = 1 + TICK_HEADER_LEN + MAX_PAYLOAD;

/// Kind byte: one or more tick records (datagram) or exactly one (stream frame).
pub const KIND_TICKS: u8 = 0x01;
/// Kind byte: a bincode-encoded [`Control`] message.
pub const KIND_CONTROL: u8 = 0x02;
/// Kind byte: one publish record (publisher → origin, stream only).
pub const KIND_PUBLISH: u8 = 0x03;

/// Why bytes from a peer could not be decoded. Any of these closes the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The buffer ended inside a header or payload.
    #[error("truncated {what}: need {need} bytes, have {have}")]
    Truncated {
        /// What was being read.
        what: &'static str,
        /// Bytes needed.
        need: usize,
        /// Bytes present.
        have: usize,
    },
    /// The kind byte is not one this version knows.
    #[error("unknown frame kind 0x{0:02x}")]
    UnknownKind(u8),
    /// A payload or frame longer than the protocol allows.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its claimed length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A tick with seq 0 (sequence numbers start at 1).
    #[error("tick with seq 0 on channel {0}")]
    ZeroSeq(ChannelId),
    /// Bytes left over after a complete message.
    #[error("{0} trailing bytes after a complete message")]
    Trailing(usize),
    /// The bincode body of a control message is invalid.
    #[error("bad control message: {0}")]
    Control(String),
    /// A datagram or frame with no body.
    #[error("empty frame")]
    Empty,
}

/// The role a peer claims in its [`Hello`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// An application consumer (client crate).
    Consumer,
    /// A relay subscribing to its parent (or a standby to its primary).
    Relay,
    /// A publisher sending ticks into the origin.
    Publisher,
}

/// One channel a subscriber wants, and where to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribe {
    /// The channel.
    pub channel: ChannelId,
    /// First seq wanted; `None` means "from the live head on".
    pub resume_from: Option<Seq>,
}

/// First message on the control stream, from the connecting side.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Must equal [`PROTOCOL_VERSION`].
    pub version: u16,
    /// What the peer is; checked against its certificate name and the topology.
    pub role: Role,
    /// The peer's topology name; its certificate must be valid for this name.
    pub name: String,
    /// Channels wanted (empty for a publisher).
    pub subscriptions: Vec<Subscribe>,
}

/// What a node holds of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelState {
    /// The channel.
    pub channel: ChannelId,
    /// Highest seq the node has seen (0: none yet).
    pub head: Seq,
    /// Oldest seq still in its ring (`head + 1` when the ring is empty).
    pub oldest: Seq,
}

/// Answer to [`Hello`]: the server's view of each subscribed channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// One entry per subscribed channel, in the order of the hello.
    pub channels: Vec<ChannelState>,
}

/// Head of one channel, as announced in a heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelHead {
    /// The channel.
    pub channel: ChannelId,
    /// Highest seq the sender has.
    pub head: Seq,
}

/// Control messages. Variant order is part of the wire format (bincode variant index).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Control {
    /// Subscriber → server, first message on the control stream.
    Hello(Hello),
    /// Server → subscriber, reply to `Hello`.
    Welcome(Welcome),
    /// Server → subscriber, periodic (as a datagram): the sender's head per channel.
    Heartbeat {
        /// Heads of the subscribed channels.
        heads: Vec<ChannelHead>,
    },
    /// Subscriber → server: please resend these ranges of a channel.
    Nack {
        /// The channel.
        channel: ChannelId,
        /// Missing ranges, ascending, non-overlapping.
        ranges: Vec<SeqRange>,
    },
    /// Server → subscriber: nobody upstream holds this range any more.
    Unavailable {
        /// The channel.
        channel: ChannelId,
        /// The range that cannot be recovered.
        range: SeqRange,
    },
    /// Origin → publisher: every publish record with id `<= up_to` is numbered.
    PublishAck {
        /// Highest contiguous publisher id accepted.
        up_to: u64,
    },
    /// Standby origin → primary origin: "I hold every tick up to these heads". The primary
    /// releases ticks to everyone else, and acknowledges publishers, only up to them.
    Confirm {
        /// Contiguous heads per channel.
        heads: Vec<ChannelHead>,
    },
    /// Primary origin → standby origin: publisher `publisher`'s record `id` was numbered
    /// `seq` on `channel` (so a taking-over standby numbers no record twice).
    PublishMark {
        /// Publisher name.
        publisher: String,
        /// The publisher's record id.
        id: u64,
        /// Channel.
        channel: ChannelId,
        /// The seq it was given.
        seq: Seq,
    },
}

/// A tick as submitted by a publisher, before the origin numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Publisher-chosen id, increasing by one per record from 1; used for acks and dedup.
    pub id: u64,
    /// Target channel.
    pub channel: ChannelId,
    /// Payload.
    pub payload: Bytes,
}

/// A decoded stream frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One tick (a repair, a resume replay, or a live tick too large for a datagram).
    Tick(Tick),
    /// A control message.
    Control(Control),
    /// A publish record.
    Publish(Publish),
}

/// A decoded datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datagram {
    /// A batch of live ticks.
    Ticks(Vec<Tick>),
    /// A control message (heartbeats travel this way).
    Control(Control),
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_little_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_CONTROL_LEN>()
}

/// Encodes a control message body (no kind byte, no length).
pub fn encode_control(msg: &Control) -> Vec<u8> {
    // Encoding our own well-formed types into a Vec cannot fail short of the size limit,
    // which no message we build approaches (NACK range lists are capped by the sender).
    bincode::serde::encode_to_vec(msg, bincode_config()).expect("control message encodes")
}

/// Decodes a control message body; the whole buffer must be consumed.
pub fn decode_control(body: &[u8]) -> Result<Control, CodecError> {
    let (msg, used): (Control, usize) = bincode::serde::decode_from_slice(body, bincode_config())
        .map_err(|e| CodecError::Control(e.to_string()))?;
    if used != body.len() {
        return Err(CodecError::Trailing(body.len() - used));
    }
    // Ranges are part of the message's validity: an inverted or zero-based range is a
    // malformed message, not something for the state machines to trip over.
    let bad = |r: &SeqRange| r.first == 0 || r.first > r.last;
    match &msg {
        Control::Nack { ranges, .. } if ranges.iter().any(bad) => {
            return Err(CodecError::Control(
                "NACK range with first > last or seq 0".into(),
            ));
        }
        Control::Unavailable { range, .. } if bad(range) => {
            return Err(CodecError::Control(
                "unavailable range with first > last or seq 0".into(),
            ));
        }
        _ => {}
    }
    Ok(msg)
}

/// Writes a tick record header (everything before the payload).
fn put_tick_header(out: &mut BytesMut, tick: &Tick) {
    out.put_u32_le(tick.channel);
    out.put_u64_le(tick.seq);
    out.put_u32_le(tick.epoch);
    out.put_u64_le(tick.origin_us);
    out.put_u32_le(tick.payload.len() as u32);
}

/// Reads one tick record from the front of `buf`, slicing the payload without copying.
fn take_tick(buf: &mut Bytes) -> Result<Tick, CodecError> {
    need(buf, TICK_HEADER_LEN, "tick header")?;
    let channel = buf.get_u32_le();
    let seq = buf.get_u64_le();
    let epoch = buf.get_u32_le();
    let origin_us = buf.get_u64_le();
    let len = buf.get_u32_le() as usize;
    if len > MAX_PAYLOAD {
        return Err(CodecError::TooLarge {
            what: "tick payload",
            len,
            max: MAX_PAYLOAD,
        });
    }
    if seq == 0 {
        return Err(CodecError::ZeroSeq(channel));
    }
    need(buf, len, "tick payload")?;
    let payload = buf.split_to(len);
    Ok(Tick {
        channel,
        seq,
        epoch,
        origin_us,
        payload,
    })
}

fn need(buf: &Bytes, n: usize, what: &'static str) -> Result<(), CodecError> {
    if buf.len() < n {
        return Err(CodecError::Truncated {
            what,
            need: n,
            have: buf.len(),
        });
    }
    Ok(())
}

/// Size of a datagram holding one tick with this payload length.
pub fn single_tick_datagram_len(payload_len: usize) -> usize {
    1 + TICK_HEADER_LEN + payload_len
}

/// Builds tick datagrams: appends records while they fit under a size limit.
#[derive(Debug)]
pub struct DatagramBuilder {
    buf: BytesMut,
    count: usize,
    max_len: usize,
}

impl DatagramBuilder {
    /// A builder for datagrams of at most `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        DatagramBuilder {
            buf: BytesMut::with_capacity(max_len),
            count: 0,
            max_len,
        }
    }

    /// Whether a tick with this payload fits in the datagram being built.
    pub fn fits(&self, tick: &Tick) -> bool {
        let base = if self.count == 0 { 1 } else { self.buf.len() };
        base + TICK_HEADER_LEN + tick.payload.len() <= self.max_len
    }

    /// Appends a tick; callers check [`fits`](Self::fits) first.
    pub fn push(&mut self, tick: &Tick) {
        if self.count == 0 {
            self.buf.put_u8(KIND_TICKS);
        }
        put_tick_header(&mut self.buf, tick);
        self.buf.extend_from_slice(&tick.payload);
        self.count += 1;
    }

    /// Ticks in the datagram so far.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Takes the finished datagram (None when empty) and starts a new one.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.count == 0 {
            return None;
        }
        self.count = 0;
        Some(self.buf.split().freeze())
    }
}

/// Encodes a control message as a datagram.
pub fn encode_control_datagram(msg: &Control) -> Bytes {
    let body = encode_control(msg);
    let mut out = BytesMut::with_capacity(1 + body.len());
    out.put_u8(KIND_CONTROL);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Decodes a received datagram. Tick payloads are slices of `dgram`.
pub fn decode_datagram(mut dgram: Bytes) -> Result<Datagram, CodecError> {
    if dgram.is_empty() {
        return Err(CodecError::Empty);
    }
    match dgram.get_u8() {
        KIND_TICKS => {
            let mut ticks = Vec::with_capacity(4);
            loop {
                ticks.push(take_tick(&mut dgram)?);
                if dgram.is_empty() {
                    return Ok(Datagram::Ticks(ticks));
                }
            }
        }
        KIND_CONTROL => decode_control(&dgram).map(Datagram::Control),
        other => Err(CodecError::UnknownKind(other)),
    }
}

/// Encodes a control message as a stream frame (length prefix included).
pub fn encode_control_frame(msg: &Control) -> Bytes {
    let body = encode_control(msg);
    let mut out = BytesMut::with_capacity(5 + body.len());
    out.put_u32_le(1 + body.len() as u32);
    out.put_u8(KIND_CONTROL);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Encodes a tick as a stream frame in two parts: header, then the payload itself, so the
/// payload is written to the stream without being copied.
pub fn encode_tick_frame(tick: &Tick) -> [Bytes; 2] {
    let mut head = BytesMut::with_capacity(5 + TICK_HEADER_LEN);
    head.put_u32_le((1 + TICK_HEADER_LEN + tick.payload.len()) as u32);
    head.put_u8(KIND_TICKS);
    put_tick_header(&mut head, tick);
    [head.freeze(), tick.payload.clone()]
}

/// Encodes a publish record as a stream frame (header, payload).
pub fn encode_publish_frame(p: &Publish) -> [Bytes; 2] {
    let mut head = BytesMut::with_capacity(5 + PUBLISH_HEADER_LEN);
    head.put_u32_le((1 + PUBLISH_HEADER_LEN + p.payload.len()) as u32);
    head.put_u8(KIND_PUBLISH);
    head.put_u64_le(p.id);
    head.put_u32_le(p.channel);
    head.put_u32_le(p.payload.len() as u32);
    [head.freeze(), p.payload.clone()]
}

/// Checks a stream frame's length prefix before its body is read.
pub fn check_frame_len(len: u32) -> Result<usize, CodecError> {
    let len = len as usize;
    if len == 0 {
        return Err(CodecError::Empty);
    }
    if len > MAX_FRAME_LEN {
        return Err(CodecError::TooLarge {
            what: "stream frame",
            len,
            max: MAX_FRAME_LEN,
        });
    }
    Ok(len)
}

/// Decodes a stream frame body (the bytes after the length prefix).
pub fn decode_frame(mut body: Bytes) -> Result<Frame, CodecError> {
    if body.is_empty() {
        return Err(CodecError::Empty);
    }
    let frame = match body.get_u8() {
        KIND_TICKS => Frame::Tick(take_tick(&mut body)?),
        KIND_CONTROL => return decode_control(&body).map(Frame::Control),
        KIND_PUBLISH => {
            need(&body, PUBLISH_HEADER_LEN, "publish header")?;
            let id = body.get_u64_le();
            let channel = body.get_u32_le();
            let len = body.get_u32_le() as usize;
            if len > MAX_PAYLOAD {
                return Err(CodecError::TooLarge {
                    what: "publish payload",
                    len,
                    max: MAX_PAYLOAD,
                });
            }
            need(&body, len, "publish payload")?;
            let payload = body.split_to(len);
            Frame::Publish(Publish {
                id,
                channel,
                payload,
            })
        }
        other => return Err(CodecError::UnknownKind(other)),
    };
    if !body.is_empty() {
        return Err(CodecError::Trailing(body.len()));
    }
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(seq: Seq, payload: &'static [u8]) -> Tick {
        Tick {
            channel: 1,
            seq,
            epoch: 1,
            origin_us: 1_700_000_000_000_000 + seq,
            payload: Bytes::from_static(payload),
        }
    }

    fn frame_body(parts: &[Bytes]) -> Bytes {
        let all: Vec<u8> = parts.iter().flat_map(|b| b.iter().copied()).collect();
        let len = u32::from_le_bytes(all[..4].try_into().unwrap()) as usize;
        assert_eq!(len, all.len() - 4);
        Bytes::from(all[4..].to_vec())
    }

    #[test]
    fn datagram_batch_round_trip() {
        let mut b = DatagramBuilder::new(1200);
        let ticks: Vec<Tick> = (1..=5).map(|s| tick(s, b"hello")).collect();
        for t in &ticks {
            assert!(b.fits(t));
            b.push(t);
        }
        let d = b.finish().unwrap();
        assert_eq!(d.len(), 1 + 5 * (TICK_HEADER_LEN + 5));
        assert_eq!(decode_datagram(d).unwrap(), Datagram::Ticks(ticks));
        assert!(b.finish().is_none());
    }

    #[test]
    fn builder_respects_size_limit() {
        let mut b = DatagramBuilder::new(1 + 2 * (TICK_HEADER_LEN + 5));
        let t = tick(1, b"hello");
        b.push(&t);
        assert!(b.fits(&t));
        b.push(&t);
        assert!(!b.fits(&t));
        assert_eq!(b.count(), 2);
    }

    #[test]
    fn control_round_trips() {
        let msgs = [
            Control::Hello(Hello {
                version: PROTOCOL_VERSION,
                role: Role::Consumer,
                name: "c-01".into(),
                subscriptions: vec![Subscribe {
                    channel: 1,
                    resume_from: Some(42),
                }],
            }),
            Control::Welcome(Welcome {
                channels: vec![ChannelState {
                    channel: 1,
                    head: 9,
                    oldest: 3,
                }],
            }),
            Control::Heartbeat {
                heads: vec![ChannelHead {
                    channel: 1,
                    head: 7,
                }],
            },
            Control::Nack {
                channel: 1,
                ranges: vec![SeqRange::new(3, 4), SeqRange::single(9)],
            },
            Control::Unavailable {
                channel: 2,
                range: SeqRange::new(1, 100),
            },
            Control::PublishAck { up_to: 77 },
            Control::Confirm {
                heads: vec![ChannelHead {
                    channel: 1,
                    head: 9,
                }],
            },
            Control::PublishMark {
                publisher: "feed".into(),
                id: 3,
                channel: 1,
                seq: 12,
            },
        ];
        for m in msgs {
            let f = encode_control_frame(&m);
            assert_eq!(
                decode_frame(frame_body(&[f])).unwrap(),
                Frame::Control(m.clone())
            );
            assert_eq!(
                decode_datagram(encode_control_datagram(&m)).unwrap(),
                Datagram::Control(m)
            );
        }
    }

    #[test]
    fn tick_and_publish_frames_round_trip() {
        let t = tick(12, b"payload");
        assert_eq!(
            decode_frame(frame_body(&encode_tick_frame(&t))).unwrap(),
            Frame::Tick(t)
        );
        let p = Publish {
            id: 5,
            channel: 3,
            payload: Bytes::from_static(b""),
        };
        assert_eq!(
            decode_frame(frame_body(&encode_publish_frame(&p))).unwrap(),
            Frame::Publish(p)
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode_datagram(Bytes::new()), Err(CodecError::Empty));
        assert_eq!(
            decode_datagram(Bytes::from_static(&[0x7f])),
            Err(CodecError::UnknownKind(0x7f))
        );
        // Header claims 10 payload bytes, only 2 present.
        let mut b = BytesMut::new();
        b.put_u8(KIND_TICKS);
        put_tick_header(&mut b, &tick(1, b"0123456789"));
        b.extend_from_slice(b"01");
        assert!(matches!(
            decode_datagram(b.freeze()),
            Err(CodecError::Truncated { .. })
        ));
        // seq 0 is never valid.
        let mut b = BytesMut::new();
        b.put_u8(KIND_TICKS);
        put_tick_header(&mut b, &tick(1, b""));
        b[5..13].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(decode_datagram(b.freeze()), Err(CodecError::ZeroSeq(1)));
        // Payload length over the limit.
        let mut b = BytesMut::new();
        b.put_u8(KIND_TICKS);
        b.put_bytes(0, TICK_HEADER_LEN - 4);
        b.put_u32_le(u32::MAX);
        assert!(matches!(
            decode_datagram(b.freeze()),
            Err(CodecError::TooLarge { .. })
        ));
        // Bad bincode body: unknown variant.
        assert!(matches!(
            decode_frame(Bytes::from_static(&[KIND_CONTROL, 99, 0, 0, 0])),
            Err(CodecError::Control(_))
        ));
        // Trailing garbage after a tick in a stream frame.
        let mut body = frame_body(&encode_tick_frame(&tick(1, b"x"))).to_vec();
        body.push(0);
        assert_eq!(
            decode_frame(Bytes::from(body)),
            Err(CodecError::Trailing(1))
        );
        // Inverted and zero ranges are malformed.
        for r in [
            SeqRange { first: 10, last: 5 },
            SeqRange { first: 0, last: 5 },
        ] {
            let nack = encode_control(&Control::Nack {
                channel: 1,
                ranges: vec![r],
            });
            assert!(decode_control(&nack).is_err());
            let un = encode_control(&Control::Unavailable {
                channel: 1,
                range: r,
            });
            assert!(decode_control(&un).is_err());
        }
        assert!(check_frame_len(0).is_err());
        assert!(check_frame_len(u32::MAX).is_err());
        // A hostile string length inside a Hello must not allocate or panic.
        let mut evil = vec![KIND_CONTROL, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
        evil.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_frame(Bytes::from(evil)).is_err());
    }
}
