//! `vitalsd simulate DRIVER --mqtt URL --topic T`: a device behind a BLE→MQTT gateway (or any
//! MQTT-speaking bridge), publishing its real payloads at QoS 1.
//!
//! - `ble-gatt`: each measurement (blood pressure, temperature, SpO2, weight in turn) is one
//!   binary characteristic value, published on a topic whose LAST SEGMENT is the
//!   characteristic (`2A35`, `2A1C`, `2A5E`, `2A9D`), as gateways do: `T` ending in `/+` has
//!   the `+` replaced (`gw/exam3/+` → `gw/exam3/2A35`); a `T` without wildcards gets the
//!   characteristic appended (`gw/exam3` → `gw/exam3/2A35`). Subscribe the device to
//!   `gw/exam3/+` either way.
//! - Other drivers: each measurement's bytes (all of its steps, concatenated) are one message
//!   on `T` exactly (no wildcards).
//!
//! Every publish waits for its PUBACK before the next measurement is due; the command ends
//! after `--count` measurements once all are acknowledged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rumqttc::{AsyncClient, Event, Packet, QoS};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::ble_gatt::BleGattSim;
use crate::net::mqtt::{mqtt_options, Broker};

/// The topic of one ble-gatt value (see the module docs).
pub fn gatt_topic(base: &str, chr: u16) -> Result<String, String> {
    let head = base.strip_suffix("/+").unwrap_or(base);
    if head.contains(['+', '#']) {
        return Err(format!(
            "topic `{base}`: only a trailing `/+` may stand for the characteristic"
        ));
    }
    Ok(format!("{head}/{chr:04X}"))
}

/// `vitalsd simulate DRIVER --mqtt URL --topic T`.
pub async fn run_mqtt(
    driver: &str,
    url: &str,
    topic: &str,
    every: Duration,
    count: Option<u64>,
    ecg: super::EcgSettings,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    enum Source {
        Gatt(BleGattSim),
        Bytes(Box<dyn super::Simulator>),
    }
    let seed = fastrand::u64(..);
    let mut sim = match driver {
        "ble-gatt" if !ecg.is_set() => Source::Gatt(BleGattSim::new(seed)),
        _ => Source::Bytes(super::simulator(driver, seed, ecg)?),
    };
    if matches!(sim, Source::Bytes(_)) && topic.contains(['+', '#']) {
        bail!("topic `{topic}`: a publish topic cannot hold wildcards");
    }
    gatt_topic(topic, 0x2A35).map_err(anyhow::Error::msg)?;
    let client_id = format!("vitalsd-simulate-{:08x}", fastrand::u32(..));
    let broker = Broker::from_url(url, &client_id)?;
    let opts = mqtt_options(&broker, &client_id, true)?;
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    let acked = Arc::new(AtomicU64::new(0));
    let ack_seen = Arc::new(Notify::new());
    let poll = {
        let (acked, ack_seen, cancel) = (acked.clone(), ack_seen.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let ev = tokio::select! {
                    () = cancel.cancelled() => return,
                    ev = eventloop.poll() => ev,
                };
                match ev {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        ack_seen.notify_waiters();
                    }
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt broker unreachable; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        })
    };
    let mut sent = 0u64;
    while count.is_none_or(|c| sent < c) {
        let started = tokio::time::Instant::now();
        let now = OffsetDateTime::now_utc();
        let (t, payload) = match &mut sim {
            Source::Gatt(g) => {
                let (chr, bytes) = g.next_payload(now);
                (gatt_topic(topic, chr).map_err(anyhow::Error::msg)?, bytes)
            }
            Source::Bytes(s) => {
                let bytes: Vec<u8> = s
                    .measurement(now)
                    .into_iter()
                    .flat_map(|s| s.bytes)
                    .collect();
                (topic.to_string(), bytes)
            }
        };
        client
            .publish(t, QoS::AtLeastOnce, false, payload)
            .await
            .context("publishing")?;
        sent += 1;
        if !wait_acked(&acked, &ack_seen, sent, &cancel).await {
            break;
        }
        if count.is_some_and(|c| sent >= c) {
            break;
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep_until(started + every) => {}
        }
    }
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poll).await;
    tracing::info!(
        driver,
        published = sent,
        acknowledged = acked.load(Ordering::SeqCst),
        "simulation finished"
    );
    Ok(())
}

/// Waits until `n` publishes are acknowledged; false on cancel.
async fn wait_acked(acked: &AtomicU64, seen: &Notify, n: u64, cancel: &CancellationToken) -> bool {
    loop {
        let notified = seen.notified();
        if acked.load(Ordering::SeqCst) >= n {
            return true;
        }
        tokio::select! {
            () = cancel.cancelled() => return false,
            () = notified => {}
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_characteristic_becomes_the_last_topic_segment() {
        assert_eq!(gatt_topic("gw/exam3/+", 0x2A35).unwrap(), "gw/exam3/2A35");
        assert_eq!(gatt_topic("gw/exam3", 0x2A1C).unwrap(), "gw/exam3/2A1C");
        assert!(gatt_topic("gw/+/x/+", 0x2A1C).is_err());
        assert!(gatt_topic("gw/#", 0x2A1C).is_err());
    }
}
