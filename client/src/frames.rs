//! Reading and writing length-prefixed frames on QUIC streams (the async half of the codec;
//! the byte layout itself lives in `tickcast_proto::codec`).

use bytes::{Bytes, BytesMut};
use quinn::{RecvStream, SendStream};
use tickcast_proto::codec::{self, CodecError, Control, Frame};

/// Why a frame could not be read from a stream.
#[derive(Debug, Clone, thiserror::Error)]
pub enum FrameError {
    /// The peer closed the stream cleanly between frames.
    #[error("stream finished")]
    Finished,
    /// The stream or connection failed.
    #[error("stream read failed: {0}")]
    Read(String),
    /// The bytes are not a valid frame: a protocol violation.
    #[error("malformed frame: {0}")]
    Malformed(#[from] CodecError),
}

/// Reads the next frame from `recv`. Not cancel-safe: call it from a task that owns the
/// stream, never inside a `select!` branch that may be dropped.
pub async fn read_frame(recv: &mut RecvStream) -> Result<Frame, FrameError> {
    let mut len = [0u8; 4];
    match recv.read_exact(&mut len).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Err(FrameError::Finished),
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Malformed(CodecError::Truncated {
                what: "frame length",
                need: 4,
                have: n,
            }));
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Read(e.to_string())),
    }
    let len = codec::check_frame_len(u32::from_le_bytes(len))?;
    let mut body = BytesMut::zeroed(len);
    match recv.read_exact(&mut body).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(n)) => {
            return Err(FrameError::Malformed(CodecError::Truncated {
                what: "frame body",
                need: len,
                have: n,
            }));
        }
        Err(quinn::ReadExactError::ReadError(e)) => return Err(FrameError::Read(e.to_string())),
    }
    Ok(codec::decode_frame(body.freeze())?)
}

/// Writes a control message as one frame.
pub async fn write_control(send: &mut SendStream, msg: &Control) -> Result<(), quinn::WriteError> {
    send.write_all(&codec::encode_control_frame(msg)).await
}

/// Writes several pre-encoded chunks (e.g. tick frames: header + payload) without copying.
pub async fn write_chunks(
    send: &mut SendStream,
    chunks: &mut [Bytes],
) -> Result<(), quinn::WriteError> {
    send.write_all_chunks(chunks).await
}
