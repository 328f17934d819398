//! The stream a handshake runs on, holding the handshake's slot (one of `max_concurrent_handshakes`) only
//! while the server has work to do. The slot is taken once the client's hello has arrived and is given
//! back the first time the handshake waits for the client again (a read that is not ready): the server's
//! key exchange and signature are computed with it, the round trips are not. After the handshake the
//! meter is empty and the stream passes through.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::OwnedSemaphorePermit;

/// Where a handshake keeps its slot while it holds one.
#[derive(Debug, Default)]
pub(crate) struct Slot(Mutex<Option<OwnedSemaphorePermit>>);

impl Slot {
    pub(crate) fn hold(&self, permit: OwnedSemaphorePermit) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(permit);
    }

    fn release(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

#[derive(Debug)]
pub struct Metered<S> {
    inner: S,
    slot: Option<Arc<Slot>>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S) -> (Metered<S>, Arc<Slot>) {
        let slot = Arc::new(Slot::default());
        let io = Metered {
            inner,
            slot: Some(slot.clone()),
        };
        (io, slot)
    }

    /// The handshake is over: no slot to give back ever again.
    pub(crate) fn done(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.release();
        }
    }

    pub fn into_inner(self) -> S {
        self.inner
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_pending() {
            if let Some(slot) = &self.slot {
                slot.release();
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
