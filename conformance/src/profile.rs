//! Broker profiles: the settings a trace was recorded with, for the engine and for the `cicada` binary.
//!
//! `conformance/record/record.py` gives mosquitto the same settings (its `PROFILES`); a trace names its
//! profile in the `profile` header.

use std::time::Duration;

use cicada_engine::Config;

/// The profiles traces may name.
pub const PROFILES: [&str; 2] = ["default", "limits"];

/// The engine configuration of `profile`, or `None` for an unknown profile.
///
/// `default` is mosquitto's defaults where they are observable on the wire (Receive Maximum 20, Topic
/// Alias Maximum 10) with a 1 MiB packet limit; `limits` makes the limits small enough to hit in a trace.
/// Outbound topic aliases stay on: the replayer resolves them, as the specification leaves their use
/// to the sender.
pub fn engine_config(profile: &str) -> Option<Config> {
    let mut c = Config {
        receive_maximum: 20,
        max_inflight: 20,
        topic_alias_maximum: 10,
        max_packet_size: 1_048_576,
        max_queued_messages: 1000,
        connect_timeout: Duration::from_secs(10),
        ..Config::default()
    };
    match profile {
        "default" => {}
        "limits" => {
            c.receive_maximum = 2;
            c.max_inflight = 2;
            c.topic_alias_maximum = 2;
            c.max_packet_size = 256;
            c.max_queued_messages = 3;
            c.max_keep_alive = Some(10);
        }
        _ => return None,
    }
    Some(c)
}

/// The `[limits]` section of a `cicada` configuration file for `profile`, matching
/// [`engine_config`].
pub fn cicada_limits(profile: &str) -> Option<String> {
    let c = engine_config(profile)?;
    let mut s = format!(
        "[limits]\nreceive_maximum = {}\nmax_inflight = {}\ntopic_alias_maximum = {}\n\
         max_packet_size = {}\nmax_queued_messages = {}\n",
        c.receive_maximum,
        c.max_inflight,
        c.topic_alias_maximum,
        c.max_packet_size,
        c.max_queued_messages
    );
    if let Some(ka) = c.max_keep_alive {
        s.push_str(&format!("max_keep_alive_secs = {ka}\n"));
    }
    Some(s)
}
