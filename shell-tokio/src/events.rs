//! Log lines for the engine's events about clients, the same from `cicada` and `cicada-uring`.

use cicada_engine::{CloseReason, ConnId, Event};
use tracing::{debug, info, warn};

/// Logs `event` if it is about a client (connected, disconnected, refused, a dropped message, an
/// expired session); `peer` gives a connection's peer address and listener name.
pub fn log(event: &Event, peer: impl FnOnce(ConnId) -> (String, String)) {
    match event {
        Event::Refused { client_id, what } => {
            warn!(client_id = %client_id, refused = ?what, "refused");
        }
        Event::ClientConnected {
            conn,
            client_id,
            protocol,
            session_present,
        } => {
            let (peer, listener) = peer(*conn);
            info!(%conn, client_id = %client_id, %peer, %listener, %protocol, session_present, "client connected");
        }
        Event::ClientDisconnected {
            conn,
            client_id,
            reason,
        } => {
            let (peer, _) = peer(*conn);
            let client = client_id.as_deref().unwrap_or("-");
            match reason {
                CloseReason::ProtocolViolation { reason, rule } => warn!(
                    %conn, client_id = %client, %peer, reason = ?reason, rule = %rule,
                    "client disconnected: protocol violation"
                ),
                other => {
                    info!(%conn, client_id = %client, %peer, reason = ?other, "client disconnected")
                }
            }
        }
        Event::MessageDropped {
            client_id,
            topic,
            reason,
        } => {
            debug!(client_id = %client_id, topic = %topic.as_str(), reason = ?reason, "message dropped")
        }
        Event::SessionExpired { client_id } => info!(client_id = %client_id, "session expired"),
        Event::ClusterFrameRejected { from, why } => {
            warn!(node = from, why = %why, "cluster: frame from node rejected")
        }
        _ => {}
    }
}
