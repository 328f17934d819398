//! What an outbox writes to and its connection's task reads from: the TCP socket itself, or TLS over it
//! (`front::tls::TlsSocket`, which the front floor implements, so the hub names no TLS type).

use std::io::{self, IoSlice};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::net::TcpStream;

/// What an outbox writes to and its connection's task reads from. Every call returns at once
/// (`WouldBlock` when the kernel has no room or nothing to read). A socket may take bytes it has not yet
/// sent (TLS seals a frame into records and keeps what the kernel did not take): `pending` says so, and
/// nothing else is written before `try_flush` has sent them.
pub trait Socket: Send + 'static {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize>;
    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Bytes taken but not yet on the wire.
    fn pending(&self) -> bool {
        false
    }
    /// Sends what is pending; `WouldBlock` while some remains.
    fn try_flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize>;
}

impl Socket for TcpStream {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        TcpStream::try_write(self, buf)
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        TcpStream::try_write_vectored(self, bufs)
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_write_ready(self, cx)
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        TcpStream::try_read_buf(self, buf)
    }
}
