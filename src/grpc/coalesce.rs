//! Coalesced writes on a server connection: the answers of HTTP/2 streams that finish in
//! the same turn of the runtime leave in one `write` instead of one each.
//!
//! Why: hyper runs each HTTP/2 stream (each unary call) as its own task, and the
//! connection task writes and flushes as soon as one stream has queued its frames; the
//! runtime runs a woken task next (tokio's LIFO slot), so with 5 calls in flight on a
//! connection the connection still flushed once per call: ~0.95 `writev` per IsMember,
//! and the kernel's send path (on loopback, the delivery to the client too) was the
//! largest share of an IsMember's server CPU (BENCHMARKS.md §7).
//!
//! How: writes are appended to a buffer; the first flush of a buffer yields once (wakes
//! its own task and returns Pending, which puts the connection task at the back of the
//! run queue), so the stream tasks already queued run and add their frames; the next
//! flush writes everything. Nothing waits on a timer: an idle runtime re-polls the
//! connection at once. Bytes on the wire are the same as without it.
//!
//! A yield is not free when nothing else is queued: with one call in flight it cost ~12
//! µs of server CPU per call (the runtime wakes a parked worker for the yielded task). So
//! a yield that gathered nothing (the buffer did not grow before the next flush) backs
//! off: the next 2, 4, ... 64 flushes write at once, and one useful yield resets it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A buffer that grew past this (one large answer) is given back after it is written.
const KEEP_CAPACITY: usize = 256 << 10;
/// At most 2^this flushes write at once after useless yields.
const MAX_BACKOFF: u32 = 6;

pub struct Coalesced<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// The current buffer's flush yielded when the buffer held this many bytes.
    yielded_at: Option<usize>,
    /// The current buffer is being written out (its yield, if any, is decided).
    draining: bool,
    /// Flushes left that write without yielding, and the exponent of the last backoff.
    skip: u32,
    backoff: u32,
}

impl<T> Coalesced<T> {
    pub fn new(inner: T) -> Self {
        Coalesced {
            inner,
            buf: Vec::new(),
            written: 0,
            yielded_at: None,
            draining: false,
            skip: 0,
            backoff: 0,
        }
    }

    /// Whether this flush should yield first; once per buffer, it also learns whether the
    /// last yield gathered anything.
    fn should_yield(&mut self) -> bool {
        if self.draining {
            return false;
        }
        match self.yielded_at.take() {
            Some(at) => {
                if self.buf.len() > at {
                    self.backoff = 0;
                } else {
                    self.backoff = (self.backoff + 1).min(MAX_BACKOFF);
                    self.skip = 1 << self.backoff;
                }
            }
            None if self.skip > 0 => self.skip -= 1,
            None => {
                self.yielded_at = Some(self.buf.len());
                return true;
            }
        }
        self.draining = true;
        false
    }
}

impl<T: AsyncWrite + Unpin> Coalesced<T> {
    /// Writes out the whole buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        self.draining = false;
        if self.buf.capacity() > KEEP_CAPACITY {
            self.buf = Vec::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Coalesced<T> {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.get_mut().buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut n = 0;
        for b in bufs {
            this.buf.extend_from_slice(b);
            n += b.len();
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.buf.len() > this.written {
            if this.should_yield() {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.yielded_at = None;
        this.draining = true;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Coalesced<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: Connected> Connected for Coalesced<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn bytes_arrive_whole_and_in_order_only_after_a_flush() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesced::new(a);
        w.write_all(b"hello ").await.unwrap();
        let n = w.write_vectored(&[IoSlice::new(b"wor"), IoSlice::new(b"ld")]).await.unwrap();
        assert_eq!(n, 5, "a vectored write takes every slice");
        let mut got = [0u8; 11];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut got)).await;
        assert!(early.is_err(), "nothing is sent before a flush");
        w.flush().await.unwrap();
        b.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello world");
        // A large write through a small pipe: drained across many polls, nothing lost.
        let (a, mut b) = tokio::io::duplex(1000);
        let mut w = Coalesced::new(a);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let reader = tokio::spawn(async move {
            let mut v = vec![];
            b.read_to_end(&mut v).await.unwrap();
            v
        });
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), big);
    }

    /// Flushes of a lone writer (nothing added while it yields) back off to writing at
    /// once; a yield that gathers more resets the backoff.
    #[test]
    fn useless_yields_back_off() {
        let (a, _b) = tokio::io::duplex(1 << 20);
        let mut w = Coalesced::new(a);
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        // Returns whether the flush yielded before writing.
        let mut flush = |w: &mut Coalesced<_>, more: &[u8]| {
            let _ = Pin::new(&mut *w).poll_write(&mut cx, b"answer");
            let first = Pin::new(&mut *w).poll_flush(&mut cx);
            if first.is_ready() {
                return false;
            }
            let _ = Pin::new(&mut *w).poll_write(&mut cx, more);
            assert!(Pin::new(&mut *w).poll_flush(&mut cx).is_ready(), "the second flush writes");
            true
        };
        let yields: Vec<bool> = (0..12).map(|_| flush(&mut w, b"")).collect();
        // yield (useless), skip 2, yield, skip 4, yield, ...
        let want = [true, false, false, true, false, false, false, false, true, false, false, false];
        assert_eq!(yields, want);
        let (a2, _b2) = tokio::io::duplex(1 << 20);
        let mut w2 = Coalesced::new(a2);
        assert!(flush(&mut w2, b"more"), "the first flush yields");
        assert!(flush(&mut w2, b"more"), "a useful yield keeps yielding");
        assert!(flush(&mut w2, b""), "still yielding after a useful one");
        assert!(!flush(&mut w2, b""), "a useless yield backs off");
    }
}
