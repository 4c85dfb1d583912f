//! A minimal consumer application.
//!
//! ```sh
//! tickcast certs --out certs                     # once
//! tickcast origin --name origin --rate 1000 &     # and the relays, or `tickcast up`
//! cargo run -p tickcast-client --example consume -- certs c-use-01 relay-use@127.0.0.1:7201 relay-use-b@127.0.0.1:7202
//! ```
//!
//! Arguments: certificate dir, this consumer's name, then candidate relays as `name@addr`.

use std::sync::Arc;

use tickcast_client::{Client, ClientConfig, Event, Upstream};
use tickcast_transport::{QuicTuning, TokioClock, bind, client_config, load_ca, load_identity};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, name, relays @ ..] = args.as_slice() else {
        return Err("usage: consume CERT_DIR NAME RELAY@ADDR...".into());
    };
    let upstreams = relays
        .iter()
        .map(|r| {
            let (n, a) = r.split_once('@').ok_or("relay must be name@addr")?;
            Ok(Upstream {
                name: n.to_string(),
                addr: a.parse()?,
            })
        })
        .collect::<Result<Vec<_>, Box<dyn std::error::Error>>>()?;
    let dir = std::path::Path::new(dir);
    let id = load_identity(dir, name)?;
    let ca = load_ca(dir)?;
    let endpoint = bind(
        "127.0.0.1:0".parse()?,
        None,
        client_config(&id, &ca, &QuicTuning::default())?,
    )?;

    let shutdown = CancellationToken::new();
    let cfg = ClientConfig::new(name.clone(), upstreams, vec![1]);
    let (client, mut events) = Client::new(cfg, endpoint, Arc::new(TokioClock::new()));
    tokio::spawn(client.run(shutdown.clone()));
    while let Some(ev) = events.recv().await {
        match ev {
            Event::Tick(t) => println!("{} #{} {} bytes", t.channel, t.seq, t.payload.len()),
            Event::Lost { channel, range } => println!("{channel} LOST {range}"),
            Event::Connected { upstream } => println!("connected via {upstream}"),
            Event::Disconnected { upstream, reason } => println!("left {upstream}: {reason}"),
        }
    }
    Ok(())
}
