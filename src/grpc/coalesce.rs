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
//! connection at once, so a lone call pays one extra task poll, not a delay. Bytes on the
//! wire are the same as without it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tonic::transport::server::Connected;

/// A buffer that grew past this (one large answer) is given back after it is written.
const KEEP_CAPACITY: usize = 256 << 10;

pub struct Coalesced<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// The current buffer's flush has yielded once.
    yielded: bool,
}

impl<T> Coalesced<T> {
    pub fn new(inner: T) -> Self {
        Coalesced { inner, buf: Vec::new(), written: 0, yielded: false }
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
            if !this.yielded {
                this.yielded = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        this.yielded = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
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
        w.write_vectored(&[IoSlice::new(b"wor"), IoSlice::new(b"ld")]).await.unwrap();
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
}
