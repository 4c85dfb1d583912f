//! Redundant datagrams for the repair path.
//!
//! A NACK or a repair that is lost costs a whole extra round trip (the receiver only asks
//! again after its retry timer), and on a lossy long-haul link those second rounds dominate
//! the tail. Both are small and rare (about one per lost packet), so they are sent
//! three times, at [`COPY_OFFSETS`]: milliseconds apart, which keeps quinn from coalescing
//! them into one UDP packet and takes the copies out of most loss bursts. At 1 % loss a repair round then fails once in a million, at 5 % once in eight
//! thousand, for the price of a few percent of repair bandwidth.

use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, SendDatagramError};

/// When each copy of a NACK or repair datagram is sent, after the first send. The gaps
/// grow so that the copies straddle loss bursts of different lengths, yet the last one
/// lands long before the receiver would ask again (a round trip plus a margin).
pub const COPY_OFFSETS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_millis(4),
    Duration::from_millis(12),
];

/// How long after the first copy the last is sent: a receiver that drops repeated copies
/// must remember a message at least this long.
pub const COPY_SPAN: Duration = COPY_OFFSETS[COPY_OFFSETS.len() - 1];

/// Sends `d` as a datagram now and again at each later [`COPY_OFFSETS`] entry. The error is
/// the first send's (e.g. `TooLarge`, so the caller can use a stream instead); the copies
/// are best effort.
pub fn send_datagram_copies(conn: &Connection, d: Bytes) -> Result<(), SendDatagramError> {
    conn.send_datagram(d.clone())?;
    let conn = conn.clone();
    tokio::spawn(async move {
        for pair in COPY_OFFSETS.windows(2) {
            tokio::time::sleep(pair[1] - pair[0]).await;
            if conn.send_datagram(d.clone()).is_err() {
                return;
            }
        }
    });
    Ok(())
}
