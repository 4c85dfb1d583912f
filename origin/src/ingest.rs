//! Ingest adapters: QUIC publisher sessions and JSON lines.

use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use tickcast_client::frames::{FrameError, read_frame, write_control};
use tickcast_proto::ChannelId;
use tickcast_proto::codec::{Control, Frame};
use tickcast_relay::PublisherSession;
use tickcast_transport::CLOSE_PROTOCOL;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::Ingest;

/// Serves one publisher connection: publish frames in, cumulative acks out.
pub async fn serve_publisher(
    s: PublisherSession,
    ingest: mpsc::Sender<Ingest>,
    publishers: crate::Publishers,
    channels: Arc<[ChannelId]>,
    shutdown: CancellationToken,
) {
    let PublisherSession {
        name,
        conn,
        mut send,
        mut recv,
    } = s;
    let publisher: Arc<str> = name.into();
    let mut acked = crate::publisher_entry(&publishers, &publisher);
    // First an ack of what is already committed (after a failover, that tells the
    // publisher what not to resend); then acks as records commit, several coalescing.
    let acker = tokio::spawn(async move {
        loop {
            let up_to = *acked.borrow_and_update();
            if write_control(&mut send, &Control::PublishAck { up_to })
                .await
                .is_err()
            {
                return;
            }
            if acked.changed().await.is_err() {
                return;
            }
        }
    });
    loop {
        let frame = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            f = read_frame(&mut recv) => f,
        };
        match frame {
            Ok(Frame::Publish(p)) => {
                if !channels.contains(&p.channel) {
                    warn!(%publisher, channel = p.channel, "publish to unknown channel, closing");
                    conn.close(CLOSE_PROTOCOL, b"unknown channel");
                    break;
                }
                let msg = Ingest::Published {
                    publisher: publisher.clone(),
                    id: p.id,
                    channel: p.channel,
                    payload: p.payload,
                };
                if ingest.send(msg).await.is_err() {
                    break;
                }
            }
            Ok(_) => {
                warn!(%publisher, "unexpected frame from publisher, closing");
                conn.close(CLOSE_PROTOCOL, b"unexpected frame");
                break;
            }
            Err(FrameError::Malformed(e)) => {
                warn!(%publisher, error = %e, "malformed frame from publisher, closing");
                conn.close(CLOSE_PROTOCOL, e.to_string().as_bytes());
                break;
            }
            Err(_) => {
                info!(%publisher, "publisher disconnected");
                break;
            }
        }
    }
    // The connection is done: acks for this publisher go to its next session.
    acker.abort();
}

/// One JSON line of stdin ingest: `{"channel": 1, "payload": "text"}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTick {
    channel: ChannelId,
    payload: String,
}

/// Parses one JSON line into (channel, payload bytes); the error says what is wrong.
pub fn parse_json_line(line: &str) -> Result<(ChannelId, Bytes), String> {
    let t: JsonTick = serde_json::from_str(line).map_err(|e| format!("bad JSON tick: {e}"))?;
    if t.payload.len() > tickcast_proto::tick::MAX_PAYLOAD {
        return Err(format!(
            "payload of {} bytes exceeds 256 KiB",
            t.payload.len()
        ));
    }
    Ok((t.channel, Bytes::from(t.payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines() {
        assert_eq!(
            parse_json_line(r#"{"channel":3,"payload":"px=1.5"}"#).unwrap(),
            (3, Bytes::from_static(b"px=1.5"))
        );
        assert!(parse_json_line("{").unwrap_err().contains("bad JSON"));
        assert!(parse_json_line(r#"{"channel":1}"#).is_err());
        assert!(parse_json_line(r#"{"channel":1,"payload":"x","extra":2}"#).is_err());
    }
}
