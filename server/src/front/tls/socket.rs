//! A WebSocket's TLS once the handshake and the upgrade are done: the TCP socket and its rustls session,
//! driven without waiting so that the outbox can seal and send a frame in place on the publisher's thread,
//! as it does on a plain socket (see `hub::Socket`). What the kernel does not take stays sealed in the
//! session (`pending`), at most one batch of frames, and goes out before anything else.

use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;

use crate::hub::Socket;

/// Plaintext read from the session per call.
const READ_CHUNK: usize = 8 * 1024;

pub(crate) struct TlsSocket {
    tcp: TcpStream,
    tls: ServerConnection,
    /// The session may hold decrypted bytes not yet taken (or the peer's close_notify).
    readable: bool,
}

impl TlsSocket {
    pub(crate) fn new(tcp: TcpStream, tls: ServerConnection) -> TlsSocket {
        // Whoever read from the session before (hyper, for the upgrade request) may have left bytes in it.
        TlsSocket {
            tcp,
            tls,
            readable: true,
        }
    }
}

impl Drop for TlsSocket {
    /// Ends the TLS stream properly (close_notify) if the kernel takes it now; a peer that is not reading
    /// gets the TCP close alone.
    fn drop(&mut self) {
        self.tls.send_close_notify();
        let _ = self.try_flush();
    }
}

/// The TCP socket as blocking-style I/O that never blocks: `WouldBlock` instead.
struct NoWait<'a>(&'a TcpStream);

impl Read for NoWait<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for NoWait<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.try_write(buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for TlsSocket {
    fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.try_write_vectored(&[IoSlice::new(buf)])
    }

    fn try_write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Nothing new is sealed while older records wait: they would pile up in the session unbounded.
        self.try_flush()?;
        let taken = self.tls.writer().write_vectored(bufs)?;
        match self.try_flush() {
            Ok(()) => Ok(taken),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(taken),
            Err(e) => Err(e),
        }
    }

    fn pending(&self) -> bool {
        self.tls.wants_write()
    }

    fn try_flush(&mut self) -> io::Result<()> {
        while self.tls.wants_write() {
            if self.tls.write_tls(&mut NoWait(&self.tcp))? == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
        }
        Ok(())
    }

    fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_write_ready(cx)
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.readable {
            return Poll::Ready(Ok(()));
        }
        self.tcp.poll_read_ready(cx)
    }

    fn try_read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        loop {
            if self.readable {
                let mut chunk = [0u8; READ_CHUNK];
                match self.tls.reader().read(&mut chunk) {
                    // The peer's close_notify: the end of the stream.
                    Ok(0) => return Ok(0),
                    Ok(n) => {
                        buf.extend_from_slice(&chunk[..n]);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                    Err(e) => return Err(e),
                }
            }
            if self.tls.read_tls(&mut NoWait(&self.tcp))? == 0 {
                return Ok(0);
            }
            let state = self.tls.process_new_packets().map_err(|e| {
                // Tell the peer why (the alert is queued), then give up on the connection.
                let _ = self.try_flush();
                io::Error::new(io::ErrorKind::InvalidData, e)
            })?;
            // Key updates and the like queue records of their own.
            if self.tls.wants_write() {
                match self.try_flush() {
                    Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                    _ => {}
                }
            }
            self.readable = state.plaintext_bytes_to_read() > 0 || state.peer_has_closed();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::hub::{ConnInfo, Era, Flush, Outbox, OutboxRx, Pushed};
    use crate::ids::{ConnId, UserId};

    /// A TLS connection over loopback: the server's side as the outbox's socket, the client's as a stream.
    async fn pair() -> (TlsSocket, tokio_rustls::client::TlsStream<TcpStream>) {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = rustls::pki_types::PrivateKeyDer::try_from(ck.key_pair.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ck.cert.der().clone()).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connect = async {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(name, tcp)
                .await
                .unwrap()
        };
        let accept = async {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio_rustls::TlsAcceptor::from(Arc::new(server))
                .accept(tcp)
                .await
                .unwrap()
        };
        let (client, server) = tokio::join!(connect, accept);
        let (tcp, session) = server.into_inner();
        (TlsSocket::new(tcp, session), client)
    }

    fn outbox(capacity: usize) -> (Outbox, OutboxRx) {
        let info = ConnInfo {
            conn: ConnId(1),
            era: Era::Modern,
            user_id: UserId(0),
            uuid: String::new(),
            ip: String::new(),
            user_agent: String::new(),
            origin: String::new(),
            language: String::new(),
            msg_ids: false,
        };
        Outbox::new(info, capacity)
    }

    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// A publisher's frame that the session took whole but the kernel did not (the client is not
    /// reading) leaves records behind with nothing in the outbox's queue: the idle task must be woken to
    /// send them, or the client would never get that frame. Then everything arrives, in order.
    #[tokio::test]
    async fn records_left_behind_wake_the_idle_task() {
        use std::sync::atomic::Ordering::SeqCst;
        let (socket, mut client) = pair().await;
        let (outbox, rx) = outbox(1 << 16);
        rx.attach(Box::new(socket));
        let flag = Arc::new(Flag(false.into()));
        let waker = std::task::Waker::from(flag.clone());
        // The task, idle: nothing to write, its waker registered.
        let idle = rx.poll_flush(&mut Context::from_waker(&waker));
        assert!(matches!(idle, Ok(Flush::Done)));
        let frame = |i: usize| Bytes::from(format!("{i:08}").repeat(2048));
        let mut sent = 0;
        while !flag.0.load(SeqCst) {
            assert!(sent < 10_000, "the socket never filled");
            assert_eq!(outbox.push(&frame(sent)), Pushed::Accepted);
            sent += 1;
        }
        assert_eq!(rx.backlog(), 0, "woken for records, not for a queued frame");
        let reader = tokio::spawn(async move {
            let mut got = vec![0u8; sent * 16 * 1024];
            client.read_exact(&mut got).await.unwrap();
            got
        });
        let flushed = std::future::poll_fn(|cx| match rx.poll_flush(cx) {
            Ok(Flush::Done) => Poll::Ready(()),
            Ok(Flush::Blocked { .. }) => Poll::Pending,
            Err(e) => panic!("flush failed: {e}"),
        });
        let limit = std::time::Duration::from_secs(20);
        tokio::time::timeout(limit, flushed).await.expect("flushed");
        let got = tokio::time::timeout(limit, reader)
            .await
            .expect("read")
            .unwrap();
        for (i, chunk) in got.chunks(16 * 1024).enumerate() {
            assert_eq!(chunk, &frame(i)[..], "frame {i}");
        }
    }

    /// Far more than the socket buffers hold, pushed at once by "publishers" while the client is not
    /// reading: the first frames go in place, the session keeps at most what the kernel refused, the rest
    /// queue; the task's flushes send it all, whole and in order.
    #[tokio::test]
    async fn frames_sealed_in_place_and_in_batches_arrive_whole_and_in_order() {
        let (socket, mut client) = pair().await;
        let (outbox, rx) = outbox(10_000);
        rx.attach(Box::new(socket));
        const FRAMES: usize = 4_000;
        let frame = |i: usize| Bytes::from(format!("{i:08}").repeat(125));
        for i in 0..FRAMES {
            assert_eq!(outbox.push(&frame(i)), Pushed::Accepted);
        }
        let flusher = tokio::spawn(async move {
            std::future::poll_fn(|cx| match rx.poll_flush(cx) {
                Ok(Flush::Done) => Poll::Ready(()),
                Ok(Flush::Blocked { .. }) => Poll::Pending,
                Err(e) => panic!("flush failed: {e}"),
            })
            .await;
            rx
        });
        let mut got = vec![0u8; FRAMES * 1000];
        client.read_exact(&mut got).await.unwrap();
        for (i, chunk) in got.chunks(1000).enumerate() {
            assert_eq!(chunk, &frame(i)[..], "frame {i}");
        }
        let rx = flusher.await.unwrap();

        // Reading: what the client sends comes out decrypted, and its close_notify is the end.
        client.write_all(b"hello over tls").await.unwrap();
        client.flush().await.unwrap();
        let mut buf = BytesMut::new();
        while buf.len() < 14 {
            std::future::poll_fn(|cx| rx.poll_read_ready(cx))
                .await
                .unwrap();
            match rx.try_read_buf(&mut buf) {
                Ok(n) => assert!(n > 0, "no end yet"),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
        assert_eq!(&buf[..], b"hello over tls");
        client.shutdown().await.unwrap();
        let end = loop {
            std::future::poll_fn(|cx| rx.poll_read_ready(cx))
                .await
                .unwrap();
            match rx.try_read_buf(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => break other,
            }
        };
        assert_eq!(end.unwrap(), 0, "close_notify ends the stream");
    }
}
