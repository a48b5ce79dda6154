//! `--rpc stream-is-member`: each worker holds one `StreamIsMember` stream and keeps
//! `--pipeline` questions in flight on it, each timed from its send to its answer. The
//! answers must come back in question order with their tags; one that does not is a
//! BAD_RESPONSE. A question names its segment only when it differs from the previous
//! question's (the stream reuses it), as a hot-path client would.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use rand::rngs::SmallRng;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{code_name, Answer, Clients, Failure, Plan, Req, Tally, Workload};
use segd::grpc::pb;

/// An answer as the figures count it: its error as the question's failure.
pub(super) fn answer(tag: u64, a: pb::StreamIsMemberResponse) -> Result<Answer, Failure> {
    let pb::StreamIsMemberResponse { tag: got, is_member, customer_found, error } = a;
    if got != tag {
        return Err(("BAD_RESPONSE", format!("answer tagged {got} where question {tag} was due")));
    }
    match error {
        Some(pb::QuestionError { code, message }) => Err((code_name(tonic::Code::from(code)), message)),
        None => Ok(Answer::Member { found: customer_found, member: is_member }),
    }
}

pub(super) async fn worker(
    clients: Clients,
    workload: Arc<Workload>,
    plan: Arc<Plan>,
    mut rng: SmallRng,
    pipeline: usize,
) -> (Tally, Instant) {
    let mut tally = Tally::default();
    let (tx, rx) = mpsc::channel::<pb::StreamIsMemberRequest>(pipeline);
    let mut seg = clients.seg;
    // Questions sent, not yet answered: (tag, sent at).
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::with_capacity(pipeline);
    let mut last_segment: Option<usize> = None;
    let mut exhausted = false;
    // The call's headers are answered before any question is: open it first.
    let mut answers = match seg.stream_is_member(ReceiverStream::new(rx)).await {
        Ok(r) => r.into_inner(),
        Err(s) => {
            tally.record(std::time::Duration::ZERO, Err((code_name(s.code()), s.message().to_string())));
            return (tally, Instant::now());
        }
    };
    let mut last = Instant::now();
    loop {
        while !exhausted && in_flight.len() < pipeline {
            let i = plan.next.fetch_add(1, Ordering::Relaxed);
            if plan.limit.is_some_and(|l| i >= l) || plan.deadline.is_some_and(|d| Instant::now() >= d) {
                exhausted = true;
                break;
            }
            let n = plan.offset + i;
            let Req::Stream(mut q) = workload.build(n, &mut rng) else {
                unreachable!("a stream-is-member workload builds stream questions")
            };
            let segment = (n % workload.segments.len() as u64) as usize;
            if last_segment == Some(segment) {
                q.segment = None;
            }
            last_segment = Some(segment);
            in_flight.push_back((q.tag, Instant::now()));
            if tx.send(q).await.is_err() {
                break;
            }
        }
        let Some(&(tag, sent)) = in_flight.front() else { break };
        // An answer (even one with an error) keeps the stream going; an ended or failed
        // stream loses every question still in flight.
        let (r, over) = match answers.message().await {
            Ok(Some(a)) => (answer(tag, a), false),
            Ok(None) => {
                (Err(("BAD_RESPONSE", "the stream ended before every question was answered".into())), true)
            }
            Err(s) => (Err((code_name(s.code()), s.message().to_string())), true),
        };
        last = Instant::now();
        in_flight.pop_front();
        tally.record(last.duration_since(sent), r);
        if over {
            // The stream is over: the questions still in flight are lost.
            for (_, sent) in in_flight.drain(..) {
                tally.record(last.duration_since(sent), Err(("BAD_RESPONSE", "stream ended".into())));
            }
            break;
        }
    }
    drop(tx);
    (tally, last)
}
