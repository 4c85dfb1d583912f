//! Ctrl-C: the first one asks for a graceful stop, a second one exits at once.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first Ctrl-C. A second Ctrl-C exits the process with status
/// 130 (for when the graceful stop itself hangs).
pub fn interrupt_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_err() {
            return;
        }
        eprintln!("interrupted: stopping (Ctrl-C again to exit at once)");
        t.cancel();
        if tokio::signal::ctrl_c().await.is_ok() {
            std::process::exit(130);
        }
    });
    token
}
