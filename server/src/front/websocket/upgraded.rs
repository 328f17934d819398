//! The socket a WebSocket upgrade hands over: plain TCP from the HTTP port, or TLS from the HTTPS one.
//! Until the connection is registered it is written with async writes (the greeting, queued private
//! messages, a refusal); then it becomes the outbox's [`Socket`], written in place by publishers.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::front::tls::{TlsSocket, TlsStream};
use crate::hub::Socket;
use bytes::BytesMut;
use hyper::upgrade::Upgraded as HyperUpgraded;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

pub(super) enum Upgraded {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Upgraded {
    /// The socket under hyper's upgrade, and what hyper read past the request (already decrypted). Our
    /// accept loops serve TCP or TLS over TCP, so anything else is a bug, reported as an error.
    pub(super) fn take(upgraded: HyperUpgraded) -> io::Result<(Upgraded, BytesMut)> {
        let upgraded = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                let early = BytesMut::from(&parts.read_buf[..]);
                return Ok((Upgraded::Tcp(parts.io.into_inner()), early));
            }
            Err(other) => other,
        };
        match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
            Ok(parts) => {
                let early = BytesMut::from(&parts.read_buf[..]);
                Ok((Upgraded::Tls(Box::new(parts.io.into_inner())), early))
            }
            Err(_) => Err(io::Error::other(
                "the upgraded connection is neither TCP nor TLS",
            )),
        }
    }

    /// From now on, frames are written without waiting, by whoever delivers them.
    pub(super) fn into_socket(self) -> Box<dyn Socket> {
        match self {
            Upgraded::Tcp(tcp) => Box::new(tcp),
            Upgraded::Tls(tls) => {
                let (tcp, session) = tls.into_inner();
                Box::new(TlsSocket::new(tcp.into_inner(), session))
            }
        }
    }
}

impl AsyncWrite for Upgraded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Upgraded::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Upgraded::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upgraded::Tcp(s) => Pin::new(s).poll_flush(cx),
            Upgraded::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Upgraded::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Upgraded::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
