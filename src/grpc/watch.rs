//! `WatchSegments`: an application [`Subscription`] as a gRPC response stream. Each batch
//! of events is yielded back to back (all ready at once), so tonic encodes a batch into
//! one HTTP/2 DATA frame; the subscription's ending error becomes the final status.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio_stream::Stream;
use tonic::Status;

use crate::app::Subscription;

use super::convert;
use super::pb;
use super::status::status_of;

pub type EventStream = Pin<Box<dyn Stream<Item = Result<pb::SegmentEvent, Status>> + Send + 'static>>;

pub fn event_stream(sub: Subscription) -> EventStream {
    Box::pin(Flatten { sub, current: Vec::new().into_iter() })
}

/// The events of each batch received, back to back.
struct Flatten {
    sub: Subscription,
    current: std::vec::IntoIter<crate::segments::SegmentEvent>,
}

impl Stream for Flatten {
    type Item = Result<pb::SegmentEvent, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(e) = self.current.next() {
                return Poll::Ready(Some(Ok(convert::event_pb(e))));
            }
            match Pin::new(&mut self.sub).poll_next(cx) {
                Poll::Ready(Some(Ok(batch))) => self.current = batch.into_iter(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(status_of(e)))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
