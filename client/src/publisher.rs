//! The publisher: sends ticks into the origin over QUIC.
//!
//! Each record carries the publisher's own id (1, 2, 3, ...). The origin numbers records in
//! order and acknowledges ids cumulatively; the publisher keeps what is unacknowledged
//! (bounded: `publish` waits when the window is full) and, after a reconnect, resends it.
//! The origin drops ids it has already numbered, so a record is neither lost nor numbered
//! twice across a reconnect.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use quinn::{Connection, Endpoint, SendStream};
use tickcast_proto::ChannelId;
use tickcast_proto::codec::{self, Control, Frame, Hello, PROTOCOL_VERSION, Publish, Role};
use tokio::sync::watch;
use tokio::time::timeout;
use tracing::warn;

use crate::frames::{read_frame, write_chunks, write_control};
use crate::link::Upstream;

/// Publisher settings.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Our topology name (a `[[publisher]]` entry; our certificate is valid for it).
    pub name: String,
    /// Origins to try, in order.
    pub origins: Vec<Upstream>,
    /// Most unacknowledged records kept before `publish` waits.
    pub window: usize,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// With records outstanding, how long without any ack before the origin is presumed
    /// dead and the publisher moves on (resending what is unacknowledged).
    pub ack_timeout: Duration,
    /// How long to keep cycling through the origins before giving up (a standby origin
    /// takes a moment to take over).
    pub retry_for: Duration,
}

impl PublisherConfig {
    /// Defaults: a 65,536-record window, 5 s connect timeout.
    pub fn new(name: impl Into<String>, origins: Vec<Upstream>) -> Self {
        PublisherConfig {
            name: name.into(),
            origins,
            window: 65_536,
            connect_timeout: Duration::from_secs(2),
            ack_timeout: Duration::from_millis(500),
            retry_for: Duration::from_secs(10),
        }
    }
}

/// Why publishing failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublisherError {
    /// No origin accepted a connection.
    #[error("no origin reachable: {0}")]
    Unreachable(String),
    /// The payload is larger than a tick may be.
    #[error("payload of {0} bytes exceeds the 256 KiB limit")]
    TooLarge(usize),
}

struct Session {
    conn: Connection,
    send: SendStream,
    acked: watch::Receiver<u64>,
}

/// Sends ticks into the origin; see the module docs for the delivery guarantee.
pub struct Publisher {
    cfg: PublisherConfig,
    endpoint: Endpoint,
    session: Option<Session>,
    next_id: u64,
    unacked: VecDeque<Publish>,
    /// Index of the origin candidate currently used.
    which: usize,
    /// When an ack last made progress (or nothing was outstanding).
    last_progress: tokio::time::Instant,
}

impl Publisher {
    /// Connects to the first reachable origin.
    pub async fn connect(
        cfg: PublisherConfig,
        endpoint: Endpoint,
    ) -> Result<Publisher, PublisherError> {
        let mut p = Publisher {
            cfg,
            endpoint,
            session: None,
            next_id: 1,
            unacked: VecDeque::new(),
            which: 0,
            last_progress: tokio::time::Instant::now(),
        };
        p.reconnect().await?;
        Ok(p)
    }

    /// Connects to the next origin that accepts us (a standby origin refuses publishers
    /// until it has taken over), cycling through the candidates for up to `retry_for`.
    /// The origin's first ack says which records it already has; the rest are resent.
    async fn reconnect(&mut self) -> Result<(), PublisherError> {
        if let Some(s) = self.session.take() {
            s.conn.close(tickcast_transport::CLOSE_OK, b"reconnect");
        }
        let give_up = tokio::time::Instant::now() + self.cfg.retry_for;
        let mut errors = Vec::new();
        loop {
            for i in 0..self.cfg.origins.len() {
                let idx = (self.which + i) % self.cfg.origins.len();
                let up = self.cfg.origins[idx].clone();
                let mut s = match timeout(self.cfg.connect_timeout, self.open(&up)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        errors.push(format!("{}: {e}", up.name));
                        continue;
                    }
                    Err(_) => {
                        errors.push(format!("{}: timed out", up.name));
                        continue;
                    }
                };
                self.which = idx;
                let up_to = *s.acked.borrow();
                while self.unacked.front().is_some_and(|p| p.id <= up_to) {
                    self.unacked.pop_front();
                }
                let mut resent = true;
                for p in self.unacked.iter() {
                    if let Err(e) =
                        write_chunks(&mut s.send, &mut codec::encode_publish_frame(p)).await
                    {
                        errors.push(format!("{}: resend: {e}", up.name));
                        resent = false;
                        break;
                    }
                }
                if resent {
                    self.session = Some(s);
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() >= give_up {
                let tail = errors.len().saturating_sub(4);
                return Err(PublisherError::Unreachable(errors[tail..].join("; ")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Opens a session: hello, then the origin's first ack (which also proves it accepted
    /// us; a refusal closes the connection instead).
    async fn open(&self, up: &Upstream) -> Result<Session, String> {
        let conn = self
            .endpoint
            .connect(up.addr, &up.name)
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        let hello = Hello {
            version: PROTOCOL_VERSION,
            role: Role::Publisher,
            name: self.cfg.name.clone(),
            subscriptions: Vec::new(),
        };
        write_control(&mut send, &Control::Hello(hello))
            .await
            .map_err(|e| e.to_string())?;
        let first = match read_frame(&mut recv).await {
            Ok(Frame::Control(Control::PublishAck { up_to })) => up_to,
            Ok(other) => return Err(format!("expected an ack, got {other:?}")),
            Err(e) => {
                let why = conn
                    .close_reason()
                    .map_or_else(|| e.to_string(), |r| r.to_string());
                return Err(format!("refused: {why}"));
            }
        };
        let (ack_tx, acked) = watch::channel(first);
        tokio::spawn(async move {
            while let Ok(Frame::Control(Control::PublishAck { up_to })) =
                read_frame(&mut recv).await
            {
                ack_tx.send_if_modified(|v| {
                    let newer = up_to > *v;
                    *v = (*v).max(up_to);
                    newer
                });
            }
        });
        Ok(Session { conn, send, acked })
    }

    fn trim_acked(&mut self) {
        if let Some(s) = &self.session {
            let up_to = *s.acked.borrow();
            let before = self.unacked.len();
            while self.unacked.front().is_some_and(|p| p.id <= up_to) {
                self.unacked.pop_front();
            }
            if self.unacked.len() != before || self.unacked.is_empty() {
                self.last_progress = tokio::time::Instant::now();
            }
        }
    }

    /// Moves to the next origin if this one has acknowledged nothing for `ack_timeout`
    /// while records are outstanding (it died, or stopped numbering).
    async fn check_progress(&mut self) -> Result<(), PublisherError> {
        if !self.unacked.is_empty() && self.last_progress.elapsed() > self.cfg.ack_timeout {
            warn!(publisher = %self.cfg.name, "no acks from the origin; moving on");
            self.which += 1;
            self.session = None;
            self.reconnect().await?;
            self.last_progress = tokio::time::Instant::now();
        }
        Ok(())
    }

    /// Queues one tick for `channel`; returns its publisher id. Waits while the window of
    /// unacknowledged records is full; reconnects (and resends) if the origin is lost.
    pub async fn publish(
        &mut self,
        channel: ChannelId,
        payload: Bytes,
    ) -> Result<u64, PublisherError> {
        if payload.len() > tickcast_proto::tick::MAX_PAYLOAD {
            return Err(PublisherError::TooLarge(payload.len()));
        }
        self.trim_acked();
        self.check_progress().await?;
        while self.unacked.len() >= self.cfg.window {
            self.wait_ack().await?;
        }
        let p = Publish {
            id: self.next_id,
            channel,
            payload,
        };
        self.next_id += 1;
        self.unacked.push_back(p.clone());
        self.write(&p).await?;
        Ok(p.id)
    }

    async fn write(&mut self, p: &Publish) -> Result<(), PublisherError> {
        loop {
            if self.session.is_none() {
                self.reconnect().await?; // resends `p` too: it is already in `unacked`
                return Ok(());
            }
            let s = self.session.as_mut().expect("session");
            match write_chunks(&mut s.send, &mut codec::encode_publish_frame(p)).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    warn!(publisher = %self.cfg.name, error = %e, "origin lost, reconnecting");
                    self.which += 1;
                    self.session = None;
                }
            }
        }
    }

    async fn wait_ack(&mut self) -> Result<(), PublisherError> {
        let wait = self.cfg.ack_timeout;
        let changed = match &mut self.session {
            Some(s) => timeout(wait, s.acked.changed()).await,
            None => Ok(Ok(())),
        };
        match changed {
            Ok(Ok(())) => {}
            // Ack reader ended (connection lost) or no ack in time: move on and resend.
            _ => {
                self.which += 1;
                self.session = None;
                self.reconnect().await?;
            }
        }
        self.trim_acked();
        Ok(())
    }

    /// Waits until the origin has acknowledged every record published so far.
    pub async fn flush(&mut self) -> Result<(), PublisherError> {
        self.trim_acked();
        while !self.unacked.is_empty() {
            self.wait_ack().await?;
        }
        Ok(())
    }

    /// Records published but not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    /// Closes the connection after [`flush`](Self::flush)ing.
    pub async fn close(mut self) -> Result<(), PublisherError> {
        self.flush().await?;
        if let Some(mut s) = self.session.take() {
            let _ = s.send.finish();
            s.conn.close(tickcast_transport::CLOSE_OK, b"done");
        }
        Ok(())
    }
}
