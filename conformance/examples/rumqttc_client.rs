//! rumqttc as a client for conformance recordings: `rumqttc_client PORT SCENARIO`.
//!
//! Run by `conformance/record/record.py` (scenarios `rumqttc_*`); each scenario waits for what it
//! expects and exits non-zero if it does not come within 5 s.

use std::process::ExitCode;
use std::time::Duration;

use tokio::time::{sleep, timeout};

const WAIT: Duration = Duration::from_secs(5);

mod v311 {
    use super::*;
    use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Packet, QoS};

    pub(crate) fn options(port: u16, id: &str, clean: bool) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_clean_session(clean);
        o
    }

    /// Polls until `pred` accepts an event.
    pub(crate) async fn until(
        lp: &mut EventLoop,
        pred: impl Fn(&Event) -> bool,
    ) -> Result<(), String> {
        loop {
            let e = timeout(WAIT, lp.poll())
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if pred(&e) {
                return Ok(());
            }
        }
    }

    fn is_publish(e: &Event) -> bool {
        matches!(e, Event::Incoming(Packet::Publish(_)))
    }

    fn is_suback(e: &Event) -> bool {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    }

    async fn disconnect(c: &AsyncClient, lp: &mut EventLoop) {
        let _ = c.disconnect().await;
        let _ = timeout(Duration::from_millis(500), async {
            while lp.poll().await.is_ok() {}
        })
        .await;
    }

    pub(crate) async fn qos(port: u16, qos: QoS) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq-self", true), 16);
        c.subscribe("rumq/t", qos)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_suback).await?;
        c.publish("rumq/t", qos, false, "hello")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_publish).await?;
        // Let the acknowledgements of both directions finish.
        let _ = timeout(Duration::from_millis(300), async {
            while lp.poll().await.is_ok() {}
        })
        .await;
        disconnect(&c, &mut lp).await;
        Ok(())
    }

    pub(crate) async fn retained(port: u16) -> Result<(), String> {
        let (p, mut plp) = AsyncClient::new(options(port, "rumq-pub", true), 16);
        p.publish("rumq/r", QoS::AtLeastOnce, true, "kept")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut plp, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        })
        .await?;
        let (s, mut slp) = AsyncClient::new(options(port, "rumq-sub", true), 16);
        s.subscribe("rumq/r", QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut slp, is_publish).await?;
        p.publish("rumq/r", QoS::AtLeastOnce, true, "")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut plp, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        })
        .await?;
        disconnect(&s, &mut slp).await;
        disconnect(&p, &mut plp).await;
        Ok(())
    }

    pub(crate) async fn will(port: u16) -> Result<(), String> {
        let (s, mut slp) = AsyncClient::new(options(port, "rumq-watch", true), 16);
        s.subscribe("rumq/will", QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut slp, is_suback).await?;
        let mut o = options(port, "rumq-dying", true);
        o.set_last_will(LastWill::new("rumq/will", "gone", QoS::AtLeastOnce, false));
        let (d, mut dlp) = AsyncClient::new(o, 16);
        until(&mut dlp, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_)))
        })
        .await?;
        // Gone without DISCONNECT.
        drop(d);
        drop(dlp);
        until(&mut slp, is_publish).await?;
        let _ = timeout(Duration::from_millis(200), async {
            while slp.poll().await.is_ok() {}
        })
        .await;
        disconnect(&s, &mut slp).await;
        Ok(())
    }

    pub(crate) async fn persistent(port: u16) -> Result<(), String> {
        let (s, mut slp) = AsyncClient::new(options(port, "rumq-persist", false), 16);
        s.subscribe("rumq/p", QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut slp, is_suback).await?;
        disconnect(&s, &mut slp).await;
        let (p, mut plp) = AsyncClient::new(options(port, "rumq-pub", true), 16);
        p.publish("rumq/p", QoS::AtLeastOnce, false, "queued")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut plp, |e| {
            matches!(e, Event::Incoming(Packet::PubAck(_)))
        })
        .await?;
        disconnect(&p, &mut plp).await;
        let (s, mut slp) = AsyncClient::new(options(port, "rumq-persist", false), 16);
        until(&mut slp, is_publish).await?;
        let _ = timeout(Duration::from_millis(200), async {
            while slp.poll().await.is_ok() {}
        })
        .await;
        disconnect(&s, &mut slp).await;
        Ok(())
    }

    pub(crate) async fn unsubscribe(port: u16) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq-unsub", true), 16);
        c.subscribe("rumq/u", QoS::AtMostOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_suback).await?;
        c.unsubscribe("rumq/u").await.map_err(|e| e.to_string())?;
        until(&mut lp, |e| {
            matches!(e, Event::Incoming(Packet::UnsubAck(_)))
        })
        .await?;
        c.publish("rumq/u", QoS::AtMostOnce, false, "nobody")
            .await
            .map_err(|e| e.to_string())?;
        let _ = timeout(Duration::from_millis(300), async {
            while lp.poll().await.is_ok() {}
        })
        .await;
        disconnect(&c, &mut lp).await;
        Ok(())
    }
}

mod v5 {
    use super::*;
    use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};

    fn options(port: u16, id: &str) -> MqttOptions {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(30));
        o
    }

    async fn until(lp: &mut EventLoop, pred: impl Fn(&Event) -> bool) -> Result<(), String> {
        loop {
            let e = timeout(WAIT, lp.poll())
                .await
                .map_err(|_| "timed out".to_string())?
                .map_err(|e| e.to_string())?;
            if pred(&e) {
                return Ok(());
            }
        }
    }

    fn is_publish(e: &Event) -> bool {
        matches!(e, Event::Incoming(Packet::Publish(_)))
    }

    fn is_suback(e: &Event) -> bool {
        matches!(e, Event::Incoming(Packet::SubAck(_)))
    }

    async fn settle_and_disconnect(c: &AsyncClient, lp: &mut EventLoop) {
        let _ = timeout(Duration::from_millis(300), async {
            while lp.poll().await.is_ok() {}
        })
        .await;
        let _ = c.disconnect().await;
        let _ = timeout(Duration::from_millis(500), async {
            while lp.poll().await.is_ok() {}
        })
        .await;
    }

    pub(crate) async fn qos(port: u16, qos: QoS) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq5-self"), 16);
        c.subscribe("rumq5/t", qos)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_suback).await?;
        c.publish("rumq5/t", qos, false, "hello")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_publish).await?;
        settle_and_disconnect(&c, &mut lp).await;
        Ok(())
    }

    pub(crate) async fn retained(port: u16) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq5-ret"), 16);
        c.publish("rumq5/r", QoS::AtLeastOnce, true, "kept")
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, |e| matches!(e, Event::Incoming(Packet::PubAck(_)))).await?;
        c.subscribe("rumq5/r", QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_publish).await?;
        c.publish("rumq5/r", QoS::AtMostOnce, true, "")
            .await
            .map_err(|e| e.to_string())?;
        settle_and_disconnect(&c, &mut lp).await;
        Ok(())
    }

    pub(crate) async fn topic_alias(port: u16) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq5-alias"), 16);
        c.subscribe("rumq5/alias/#", QoS::AtMostOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_suback).await?;
        let alias = |n| PublishProperties {
            topic_alias: Some(n),
            ..Default::default()
        };
        c.publish_with_properties("rumq5/alias/x", QoS::AtMostOnce, false, "1", alias(1))
            .await
            .map_err(|e| e.to_string())?;
        c.publish_with_properties("", QoS::AtMostOnce, false, "2", alias(1))
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_publish).await?;
        until(&mut lp, is_publish).await?;
        settle_and_disconnect(&c, &mut lp).await;
        Ok(())
    }

    pub(crate) async fn user_properties(port: u16) -> Result<(), String> {
        let (c, mut lp) = AsyncClient::new(options(port, "rumq5-props"), 16);
        c.subscribe("rumq5/up", QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_suback).await?;
        let props = PublishProperties {
            user_properties: vec![("b".into(), "1".into()), ("a".into(), "2".into())],
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        c.publish_with_properties("rumq5/up", QoS::AtLeastOnce, false, "props", props)
            .await
            .map_err(|e| e.to_string())?;
        until(&mut lp, is_publish).await?;
        settle_and_disconnect(&c, &mut lp).await;
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(port), Some(scenario)) = (args.get(1).and_then(|p| p.parse().ok()), args.get(2))
    else {
        eprintln!("usage: rumqttc_client PORT SCENARIO");
        return ExitCode::from(2);
    };
    use rumqttc::v5::mqttbytes::QoS as Q5;
    use rumqttc::QoS as Q3;
    let result = match scenario.as_str() {
        "v311_qos0" => v311::qos(port, Q3::AtMostOnce).await,
        "v311_qos1" => v311::qos(port, Q3::AtLeastOnce).await,
        "v311_qos2" => v311::qos(port, Q3::ExactlyOnce).await,
        "v311_retained" => v311::retained(port).await,
        "v311_will" => v311::will(port).await,
        "v311_persistent" => v311::persistent(port).await,
        "v311_unsubscribe" => v311::unsubscribe(port).await,
        "v5_qos0" => v5::qos(port, Q5::AtMostOnce).await,
        "v5_qos1" => v5::qos(port, Q5::AtLeastOnce).await,
        "v5_qos2" => v5::qos(port, Q5::ExactlyOnce).await,
        "v5_retained" => v5::retained(port).await,
        "v5_topic_alias" => v5::topic_alias(port).await,
        "v5_user_properties" => v5::user_properties(port).await,
        other => Err(format!("unknown scenario {other}")),
    };
    sleep(Duration::from_millis(50)).await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rumqttc_client {scenario}: {e}");
            ExitCode::from(1)
        }
    }
}
