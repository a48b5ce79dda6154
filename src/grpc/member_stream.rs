//! `StreamIsMember`: each question read from the request stream is answered inline, as it
//! is read, through one [`MemberSession`]; the answers are the response stream, in
//! question order.
//!
//! No task and no channel between the two streams: the response stream pulls the next
//! question itself. Questions that arrived together (one read from the socket) are
//! decoded and answered back to back, so tonic encodes their answers into one DATA frame
//! and HTTP/2 sends them with one write, the way a pipelined Redis client's replies go.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use tokio_stream::Stream;
use tonic::{Status, Streaming};

use crate::app::{AppError, MemberSession};
use crate::metrics::Rpc;

use super::convert::segment_ref;
use super::pb;
use super::service::Ctx;
use super::status::status_of;

pub type AnswerStream = Pin<Box<dyn Stream<Item = Result<pb::StreamIsMemberResponse, Status>> + Send>>;

pub fn answers(ctx: Arc<Ctx>, questions: Streaming<pb::StreamIsMemberRequest>) -> AnswerStream {
    let mut closing = ctx.app.closing();
    let closing = Box::pin(async move { closing.wait().await });
    Box::pin(Answers { session: ctx.app.member_session(), ctx, questions, closing, done: false })
}

struct Answers {
    ctx: Arc<Ctx>,
    session: MemberSession,
    questions: Streaming<pb::StreamIsMemberRequest>,
    /// Resolves when the server stops: the stream then ends UNAVAILABLE so the drain
    /// does not wait for a client that never closes its side.
    closing: Pin<Box<dyn Future<Output = ()> + Send>>,
    /// After a final status: nothing more.
    done: bool,
}

impl Answers {
    fn answer(&mut self, q: pb::StreamIsMemberRequest) -> pb::StreamIsMemberResponse {
        let t = Instant::now();
        let pb::StreamIsMemberRequest { tag, customer_id, segment } = q;
        let asked = match segment {
            Some(s) => segment_ref(Some(s)).map(Some),
            None => Ok(None),
        };
        let result = asked.and_then(|segment| self.session.ask(customer_id, segment)).map_err(|e| {
            if matches!(e, AppError::Internal(_)) {
                tracing::error!(rpc = Rpc::StreamIsMember.name(), tag, message = %e, "failed");
            }
            status_of(e)
        });
        let code = result.as_ref().err().map_or(tonic::Code::Ok, |s| s.code());
        self.ctx.metrics.observe(Rpc::StreamIsMember, code as i32, t.elapsed());
        match result {
            Ok(m) => pb::StreamIsMemberResponse {
                tag,
                is_member: m.is_member,
                customer_found: m.customer_found,
                error: None,
            },
            Err(s) => pb::StreamIsMemberResponse {
                tag,
                is_member: false,
                customer_found: false,
                error: Some(pb::QuestionError { code: s.code() as i32, message: s.message().to_string() }),
            },
        }
    }
}

impl Stream for Answers {
    type Item = Result<pb::StreamIsMemberResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.closing.as_mut().poll(cx).is_ready() {
            self.done = true;
            return Poll::Ready(Some(Err(status_of(AppError::ShuttingDown))));
        }
        match Pin::new(&mut self.questions).poll_next(cx) {
            Poll::Ready(Some(Ok(q))) => Poll::Ready(Some(Ok(self.answer(q)))),
            // A message that does not decode (or a broken request stream): the stream
            // cannot tell where the next question starts, so it ends with that status.
            Poll::Ready(Some(Err(s))) => {
                self.done = true;
                Poll::Ready(Some(Err(s)))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
