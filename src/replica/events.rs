//! Segment events and achievements published to JetStream (`--publish-events`), for
//! campaign engines consuming them as durable consumers: at-least-once delivery that
//! survives restarts of either side, and retention beyond this node's memory.
//!
//! Subjects: `segd.events.<segment_id>` (a customer entering or leaving a saved segment)
//! and `segd.achievements.<kind>` (`tier_changed`, `level_up`, `badge_awarded`,
//! `challenge_completed`, `streak_milestone`), stored in the stream `<stream>-events`
//! (created when missing, with the log stream's replicas). Each message is a JSON object
//! carrying its log `sequence`, also in the header `Segd-Sequence`.
//!
//! Every node that publishes derives the same messages from the same log, and gives each
//! the same `Nats-Msg-Id`: `<sequence>.<segment_id>.<customer_id>` for a segment event (a
//! mutation moves a customer in or out of a segment at most once), `<sequence>.a<index>`
//! for the index-th achievement of that sequence (apply is deterministic, so the order is
//! every node's). So all members of a cluster may publish: JetStream drops the copies
//! within its duplicate window (two minutes by default), and a copy published later (a
//! node catching up from far behind) has the same content. A node starts publishing after
//! the last sequence the stream holds, so a restart does not publish everything again.
//!
//! A node publishes what it applied since it started (events are not kept across a
//! restart); a publish JetStream does not acknowledge is retried until it is, in order.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use serde_json::json;

use super::{block_on, ReplicaError, Runtime};
use crate::app::App;
use crate::engine::{AchievementEvent, Gone};
use crate::gamify::applied::{Achievement, TierReason};
use crate::segments::{Change, SegmentEvent};

/// Events read from the node's event logs per round.
const READ_MAX: usize = 4096;

/// The header carrying a message's log sequence.
pub const SEQUENCE_HEADER: &str = "Segd-Sequence";

/// The stream holding the events of the log stream `stream`.
pub fn events_stream(stream: &str) -> String {
    format!("{stream}-events")
}

/// A running publisher; dropping it stops it.
pub struct Publishing {
    _rt: Runtime,
}

/// Connects, creates the events stream when missing, and publishes `app`'s events from
/// now on (or after the stream's last sequence, when later) until dropped.
pub fn start(url: &str, stream: &str, replicas: usize, app: App) -> Result<Publishing, ReplicaError> {
    let rt = Runtime::new()?;
    let name = events_stream(stream);
    let (js, after) = block_on(&rt, async {
        let js = jetstream::new(super::connect(url).await?);
        let mut s = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec!["segd.events.>".into(), "segd.achievements.>".into()],
                storage: stream::StorageType::File,
                num_replicas: replicas,
                description: Some("segd segment events and achievements".into()),
                ..Default::default()
            })
            .await
            .map_err(|e| ReplicaError::Nats(format!("creating stream '{name}': {e}")))?;
        let info = s.info().await.map_err(|e| ReplicaError::Nats(format!("stream '{name}': {e}")))?.clone();
        // The log sequence of the stream's last message: everything before it was
        // published by some node (its own sequence may be only partly there).
        let after = match info.state.messages {
            0 => 0,
            _ => {
                let last = s
                    .get_raw_message(info.state.last_sequence)
                    .await
                    .map_err(|e| ReplicaError::Nats(format!("stream '{name}': last message: {e}")))?;
                let seq = last.headers.get(SEQUENCE_HEADER).and_then(|v| v.as_str().parse::<u64>().ok());
                seq.unwrap_or(0).saturating_sub(1)
            }
        };
        Ok::<_, ReplicaError>((js, after))
    })?;
    let from = after.max(app.applied_sequence()) + 1;
    tracing::info!(stream = name, from, "publishing segment events and achievements to JetStream");
    rt.handle().spawn(publish_loop(js, app, from));
    Ok(Publishing { _rt: rt })
}

/// Publishes every event and achievement from sequence `seq` on, in order.
async fn publish_loop(js: jetstream::Context, app: App, mut seq: u64) {
    loop {
        // Read first: every event of a sequence up to it is in the logs below.
        let applied = app.applied_sequence();
        let (events, achievements, through) = match read(&app, seq) {
            Ok(found) => found,
            Err(gone) => {
                tracing::warn!(
                    asked = gone.asked,
                    oldest = gone.oldest,
                    "events were dropped from memory before they were published (other nodes may have published \
                     them): going on from the oldest kept"
                );
                seq = gone.oldest;
                continue;
            }
        };
        if events.is_empty() && achievements.is_empty() {
            seq = seq.max(applied + 1);
            // Wakes at the next commit (or after the configured wait: then looks again).
            let _ = app.wait_applied(seq).await;
            continue;
        }
        let messages: Vec<Message> = segment_messages(&events, through)
            .into_iter()
            .chain(achievement_messages(&achievements, through))
            .collect();
        let mut pause = Duration::from_millis(100);
        while let Err(e) = publish(&js, &messages).await {
            tracing::warn!(error = %e, "publishing events: retrying");
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        }
        seq = through + 1;
    }
}

/// The events and achievements of whole sequences from `seq` on, and the last sequence
/// they cover: a read cut by [`READ_MAX`] ends before the sequence it cut (read whole
/// when it is the first: one upsert can move many customers).
#[allow(clippy::type_complexity)]
fn read(app: &App, seq: u64) -> Result<(Vec<SegmentEvent>, Vec<AchievementEvent>, u64), Gone> {
    let (events, achievements) = app.events_from(seq, READ_MAX)?;
    let mut through = u64::MAX;
    let last_e = events.last().map(|e| e.sequence);
    let last_a = achievements.last().map(|a| a.sequence);
    for (len, last) in [(events.len(), last_e), (achievements.len(), last_a)] {
        if let (true, Some(last)) = (len >= READ_MAX, last) {
            through = through.min(last - 1);
        }
    }
    if through == u64::MAX {
        return Ok((events, achievements, last_e.max(last_a).unwrap_or(seq)));
    }
    if through >= seq {
        return Ok((events, achievements, through));
    }
    let (events, achievements) = app.events_from(seq, usize::MAX)?;
    Ok((events, achievements, seq))
}

/// One message to publish.
#[derive(Debug, PartialEq)]
pub struct Message {
    pub subject: String,
    pub id: String,
    pub sequence: u64,
    pub payload: Vec<u8>,
}

/// Pipelined publishes, then every acknowledgement (a duplicate's too).
async fn publish(js: &jetstream::Context, messages: &[Message]) -> Result<(), String> {
    let mut acks = Vec::with_capacity(messages.len());
    for m in messages {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, m.id.as_str());
        headers.insert(SEQUENCE_HEADER, m.sequence.to_string().as_str());
        let ack = js
            .publish_with_headers(m.subject.clone(), headers, m.payload.clone().into())
            .await
            .map_err(|e| format!("{}: {e}", m.subject))?;
        acks.push(ack);
    }
    for ack in acks {
        ack.await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The messages of segment events with sequences up to `through`.
pub fn segment_messages(events: &[SegmentEvent], through: u64) -> Vec<Message> {
    events
        .iter()
        .filter(|e| e.sequence <= through)
        .map(|e| {
            let change = match e.change {
                Change::Entered => "ENTERED",
                Change::Left => "LEFT",
            };
            let body = json!({
                "sequence": e.sequence,
                "segment_id": &*e.segment_id,
                "customer_id": e.customer_id,
                "change": change,
            });
            Message {
                subject: format!("segd.events.{}", e.segment_id),
                id: format!("{}.{}.{}", e.sequence, e.segment_id, e.customer_id),
                sequence: e.sequence,
                payload: body.to_string().into_bytes(),
            }
        })
        .collect()
}

/// The messages of achievements with sequences up to `through` (`index`: the position
/// among its sequence's achievements).
pub fn achievement_messages(achievements: &[AchievementEvent], through: u64) -> Vec<Message> {
    let mut out = vec![];
    let mut index = 0;
    let mut at = 0;
    for a in achievements.iter().filter(|a| a.sequence <= through) {
        if a.sequence != at {
            (at, index) = (a.sequence, 0);
        }
        let (kind, body) = achievement_json(a);
        out.push(Message {
            subject: format!("segd.achievements.{kind}"),
            id: format!("{}.a{index}", a.sequence),
            sequence: a.sequence,
            payload: body.to_string().into_bytes(),
        });
        index += 1;
    }
    out
}

fn achievement_json(a: &AchievementEvent) -> (&'static str, serde_json::Value) {
    let seq = a.sequence;
    match &a.achievement {
        Achievement::TierChanged { customer_id, from, to, reason, at_ms } => {
            let reason = match reason {
                TierReason::Qualified => "QUALIFIED",
                TierReason::PeriodEnd => "PERIOD_END",
                TierReason::Manual => "MANUAL",
                TierReason::Program => "PROGRAM",
            };
            let body = json!({"sequence": seq, "customer_id": customer_id, "from": from, "to": to,
                "reason": reason, "at_ms": at_ms});
            ("tier_changed", body)
        }
        Achievement::LevelUp { customer_id, from, to, at_ms } => (
            "level_up",
            json!({"sequence": seq, "customer_id": customer_id, "from": from, "to": to, "at_ms": at_ms}),
        ),
        Achievement::BadgeAwarded { customer_id, badge, count, at_ms } => (
            "badge_awarded",
            json!({"sequence": seq, "customer_id": customer_id, "badge": badge, "count": count, "at_ms": at_ms}),
        ),
        Achievement::ChallengeCompleted { customer_id, challenge, window_start_ms, at_ms } => (
            "challenge_completed",
            json!({"sequence": seq, "customer_id": customer_id, "challenge": challenge,
                "window_start_ms": window_start_ms, "at_ms": at_ms}),
        ),
        Achievement::StreakMilestone { customer_id, streak, milestone, at_ms } => (
            "streak_milestone",
            json!({"sequence": seq, "customer_id": customer_id, "streak": streak, "milestone": milestone,
                "at_ms": at_ms}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn badge(sequence: u64, customer_id: u64) -> AchievementEvent {
        let achievement =
            Achievement::BadgeAwarded { customer_id, badge: "first".into(), count: 1, at_ms: 5 };
        AchievementEvent { sequence, achievement }
    }

    #[test]
    fn message_ids_come_from_the_log_alone_and_a_cut_sequence_waits() {
        let ev = |sequence, customer_id, change| SegmentEvent {
            segment_id: "vip.eu".into(),
            customer_id,
            change,
            sequence,
        };
        let events = [ev(3, 7, Change::Entered), ev(3, 8, Change::Left), ev(4, 7, Change::Left)];
        let m = segment_messages(&events, 3);
        let ids: Vec<(&str, &str, u64)> =
            m.iter().map(|m| (m.subject.as_str(), m.id.as_str(), m.sequence)).collect();
        assert_eq!(ids, [("segd.events.vip.eu", "3.vip.eu.7", 3), ("segd.events.vip.eu", "3.vip.eu.8", 3)]);
        let body: serde_json::Value = serde_json::from_slice(&m[1].payload).unwrap();
        assert_eq!(body, json!({"sequence": 3, "segment_id": "vip.eu", "customer_id": 8, "change": "LEFT"}));

        // The index restarts with each sequence.
        let a = achievement_messages(&[badge(3, 1), badge(3, 2), badge(5, 1), badge(6, 1)], 5);
        let ids: Vec<(&str, &str)> = a.iter().map(|m| (m.subject.as_str(), m.id.as_str())).collect();
        assert_eq!(
            ids,
            [
                ("segd.achievements.badge_awarded", "3.a0"),
                ("segd.achievements.badge_awarded", "3.a1"),
                ("segd.achievements.badge_awarded", "5.a0")
            ]
        );
        let body: serde_json::Value = serde_json::from_slice(&a[1].payload).unwrap();
        assert_eq!(body, json!({"sequence": 3, "customer_id": 2, "badge": "first", "count": 1, "at_ms": 5}));
    }
}
