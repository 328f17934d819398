//! One connection: greeting, TLS when the client asks for it and a certificate is configured, login (see
//! `login`), then one command at a time until the client quits or hangs up, the session is closed from
//! outside (`Handler::closer`), or a timeout fires.

use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::time::{sleep, timeout, timeout_at, Instant};

use super::login;
use super::{ConnConfig, ConnInfo, Handler};
use crate::front::tls::{self, Rewind, Tls};
use crate::mysql::command::{self, Command, CommandError, COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA};
use crate::mysql::handshake::{self, ClientHello, HandshakeError};
use crate::mysql::packet::{Packet, PacketDecoder, PacketError, PacketWriter};
use crate::mysql::{auth, codes, response};
use crate::mysql::{ErrorPacket, Reply, SALT_LEN};

/// Size of one socket read. The decoder holds at most one command plus one read.
const READ_CHUNK: usize = 16 * 1024;

/// A streamed result is written whenever this much of it is waiting.
const STREAM_CHUNK: usize = 64 * 1024;

/// How long to keep discarding input after a final ERR, so that closing a socket with unread data (which
/// resets the connection) does not destroy the ERR before the client reads it.
const LINGER: Duration = Duration::from_secs(2);

const PREPARE_NOT_SUPPORTED: &str = "Prepared statements (COM_STMT_PREPARE) are not supported by \
    CometQL; use plain queries (PDO: ATTR_EMULATE_PREPARES=true)";

/// Why a connection ended other than by the client quitting, hanging up, or `Handler::closer`.
#[derive(Debug, Error)]
pub enum ConnError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("handshake not completed in time")]
    HandshakeTimeout,
    #[error("no command within the idle timeout")]
    IdleTimeout,
    #[error("the client did not read a reply within the idle timeout")]
    WriteTimeout,
    #[error("connection closed by the client in the middle of a packet or a handshake")]
    UnexpectedEof,
    #[error(transparent)]
    Packet(#[from] PacketError),
    #[error("bad handshake response: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("the client asked for TLS, which this server does not offer")]
    SslRequested,
    #[error(transparent)]
    Tls(#[from] tls::HandshakeError),
    #[error("login refused: {} {}", .0.code, .0.message)]
    Refused(ErrorPacket),
    #[error(transparent)]
    Command(#[from] CommandError),
}

/// Serves one client connection until it ends. The caller owns accepting, the connection id and logging
/// the outcome; `Ok` means the client quit or hung up, or the session was closed through its closer.
/// With `tls`, the greeting offers TLS and an SSLRequest upgrades the connection in place; everything up
/// to the logged-in session (a PROXY header read before, the TLS handshake included) must be done by
/// `deadline`, `handshake_timeout` after the accept.
pub async fn serve_connection<H: Handler, S: AsyncRead + AsyncWrite + Unpin + Send>(
    stream: S,
    conn: ConnInfo,
    conn_id: u32,
    handler: &H,
    cfg: &ConnConfig,
    tls: Option<&Tls>,
    deadline: Instant,
) -> Result<(), ConnError> {
    let mut io = Io::new(stream, cfg.max_packet);
    let salt = auth::new_salt();
    let greet = login::greet(&mut io, conn_id, &salt, cfg, tls.is_some());
    let first = timeout_at(deadline, greet)
        .await
        .map_err(|_| ConnError::HandshakeTimeout)??;
    let wants_tls = matches!(
        handshake::parse_response(&first.payload),
        Ok(ClientHello::SslRequest)
    );
    match tls {
        Some(tls) if wants_tls => {
            // What the client sent after its SSLRequest (often the start of its ClientHello, in the same
            // segment) is already in the packet reader: the TLS stream reads it first.
            let (stream, buffered) = io.into_parts();
            let stream = tls
                .accept(tls::Port::Cometql, Rewind::new(buffered, stream), deadline)
                .await?;
            let mut io = Io::new(stream, cfg.max_packet);
            let response = timeout_at(deadline, login::read_response(&mut io, cfg))
                .await
                .map_err(|_| ConnError::HandshakeTimeout)??;
            let conn = ConnInfo { tls: true, ..conn };
            serve_session(io, response, conn, handler, cfg, &salt, deadline).await
        }
        _ => serve_session(io, first, conn, handler, cfg, &salt, deadline).await,
    }
}

/// Login with the client's handshake response, then commands until the end.
async fn serve_session<H: Handler, S: AsyncRead + AsyncWrite + Unpin + Send>(
    mut io: Io<S>,
    response: Packet,
    conn: ConnInfo,
    handler: &H,
    cfg: &ConnConfig,
    salt: &[u8; SALT_LEN],
    deadline: Instant,
) -> Result<(), ConnError> {
    let login = login::login(&mut io, response, handler, conn, salt, cfg);
    let logged_in = timeout_at(deadline, login)
        .await
        .map_err(|_| ConnError::HandshakeTimeout)??;
    let mut guard = SessionGuard {
        handler,
        session: Some(logged_in.session),
    };
    io.out.set_seq(logged_in.ok_seq);
    response::ok(&mut io.out, 0, 0);
    timeout(cfg.handshake_timeout, io.flush())
        .await
        .map_err(|_| ConnError::WriteTimeout)??;
    command_loop(&mut io, &mut guard, logged_in.capabilities, salt, conn, cfg).await
}

async fn command_loop<H: Handler, S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: &mut Io<S>,
    guard: &mut SessionGuard<'_, H>,
    capabilities: u32,
    salt: &[u8; SALT_LEN],
    conn: ConnInfo,
    cfg: &ConnConfig,
) -> Result<(), ConnError> {
    let handler = guard.handler;
    loop {
        // `session` is only `None` once the guard is dropped.
        let Some(session) = guard.session.as_mut() else {
            return Ok(());
        };
        let closer = handler.closer(session);
        let packet = tokio::select! {
            biased;
            _ = closer.notified() => return Ok(()),
            read = io.read_packet() => read,
            _ = sleep(cfg.idle_timeout) => return Err(ConnError::IdleTimeout),
        };
        let packet = match packet {
            Ok(Some(packet)) => packet,
            Ok(None) => return Ok(()),
            Err(ConnError::Packet(e @ PacketError::TooLong { seq, .. })) => {
                let too_long = ErrorPacket::new(codes::TOO_LONG, "Data is too long");
                io.fail(seq.wrapping_add(1), &too_long).await;
                return Err(e.into());
            }
            Err(e) => return Err(e),
        };
        io.out.set_seq(packet.seq.wrapping_add(1));
        let out = &mut io.out;
        match command::parse(&packet.payload, capabilities) {
            Ok(Command::Quit) => return Ok(()),
            Ok(Command::Ping) => response::ok(out, 0, 0),
            Ok(Command::Query(sql)) => match handler.query(session, sql).await {
                Reply::Stream(s) => {
                    response::stream_start(out, &s);
                    let width = s.columns.len();
                    drop(s);
                    if !stream_rest(io, handler, session, width, &closer, cfg).await? {
                        return Ok(());
                    }
                }
                reply => response::reply(out, &reply),
            },
            Ok(Command::InitDb(db)) => match handler.init_db(session, &db).await {
                Ok(()) => response::ok(out, 0, 0),
                Err(e) => response::err(out, &e),
            },
            Ok(Command::FieldList) => response::eof(out),
            Ok(Command::StmtPrepare) => response::err(
                out,
                &ErrorPacket::new(codes::NOT_SUPPORTED, PREPARE_NOT_SUPPORTED),
            ),
            Ok(Command::ChangeUser(cu)) => {
                login::change_user(io, guard, cu, salt, conn, cfg).await?;
            }
            // These two never get a reply, not even an error: the client does not read one.
            Ok(Command::Other(COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA)) => continue,
            Ok(Command::Other(code)) => {
                let msg = format!("Command 0x{code:02x} is not supported");
                response::err(out, &ErrorPacket::new(codes::NOT_SUPPORTED, msg));
            }
            Err(CommandError::Empty) => {
                response::err(
                    out,
                    &ErrorPacket::new(codes::NOT_SUPPORTED, "Empty command packet"),
                );
            }
            // A malformed COM_CHANGE_USER is a failed login: refuse and close.
            Err(e) => {
                let seq = io.out.seq();
                io.fail(seq, &ErrorPacket::new(codes::BAD_HANDSHAKE, e.to_string()))
                    .await;
                return Err(e.into());
            }
        }
        if !flush_or_close(io, &closer, cfg).await? {
            return Ok(());
        }
    }
}

/// Writes what is built; `false` when the session was closed from outside meanwhile.
async fn flush_or_close<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut Io<S>,
    closer: &Notify,
    cfg: &ConnConfig,
) -> Result<bool, ConnError> {
    let write = tokio::select! {
        biased;
        write = timeout(cfg.idle_timeout, io.flush()) => write,
        _ = closer.notified() => return Ok(false),
    };
    write.map_err(|_| ConnError::WriteTimeout)??;
    Ok(true)
}

/// The rest of a streamed result: each part the handler gives is written once `STREAM_CHUNK` bytes are
/// waiting, before the next part is asked for, so the session never holds more than about one part and
/// a client that does not read stops the reading. Ends with EOF, or with ERR if the handler fails
/// midway. `false` when the session was closed from outside.
async fn stream_rest<H: Handler, S: AsyncRead + AsyncWrite + Unpin + Send>(
    io: &mut Io<S>,
    handler: &H,
    session: &mut H::Session,
    width: usize,
    closer: &Notify,
    cfg: &ConnConfig,
) -> Result<bool, ConnError> {
    loop {
        if io.out.len() >= STREAM_CHUNK && !flush_or_close(io, closer, cfg).await? {
            return Ok(false);
        }
        match handler.more_rows(session).await {
            Some(Ok(rows)) => response::rows(&mut io.out, &rows, width),
            Some(Err(e)) => {
                response::err(&mut io.out, &e);
                return Ok(true);
            }
            None => {
                response::eof(&mut io.out);
                return Ok(true);
            }
        }
    }
}

/// Hands the session to `Handler::closed` exactly once, however the connection ends (including the
/// connection's task being cancelled).
pub(super) struct SessionGuard<'h, H: Handler> {
    pub(super) handler: &'h H,
    pub(super) session: Option<H::Session>,
}

impl<H: Handler> Drop for SessionGuard<'_, H> {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            self.handler.closed(session);
        }
    }
}

/// The socket, its packet decoder and the reply being built.
pub(super) struct Io<S> {
    stream: S,
    decoder: PacketDecoder,
    read_buf: Box<[u8]>,
    pub(super) out: PacketWriter,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Io<S> {
    fn new(stream: S, max_packet: usize) -> Self {
        Self {
            stream,
            decoder: PacketDecoder::new(max_packet),
            read_buf: vec![0; READ_CHUNK].into_boxed_slice(),
            out: PacketWriter::new(),
        }
    }

    /// The socket and the bytes read from it but not yet taken as packets.
    fn into_parts(mut self) -> (S, bytes::Bytes) {
        let buffered = self.decoder.take_buffered();
        (self.stream, buffered)
    }

    pub(super) fn set_max_packet(&mut self, max_packet: usize) {
        self.decoder.set_max_packet(max_packet);
    }

    /// The next packet, or `None` if the client closed the connection between packets. Cancel-safe: bytes
    /// already read stay in the decoder.
    pub(super) async fn read_packet(&mut self) -> Result<Option<Packet>, ConnError> {
        loop {
            if let Some(packet) = self.decoder.next_packet()? {
                return Ok(Some(packet));
            }
            let n = self.stream.read(&mut self.read_buf).await?;
            if n == 0 {
                return match self.decoder.buffered() {
                    0 => Ok(None),
                    _ => Err(ConnError::UnexpectedEof),
                };
            }
            self.decoder.feed(&self.read_buf[..n])?;
        }
    }

    /// Writes the reply built in `out` in one go.
    pub(super) async fn flush(&mut self) -> Result<(), ConnError> {
        if !self.out.is_empty() {
            self.stream.write_all(self.out.as_bytes()).await?;
            self.out.clear();
        }
        self.stream.flush().await?;
        Ok(())
    }

    /// Sends a final ERR and winds the connection down; the caller then returns, which closes it.
    pub(super) async fn fail(&mut self, seq: u8, e: &ErrorPacket) {
        self.out.clear();
        self.out.set_seq(seq);
        response::err(&mut self.out, e);
        if self.flush().await.is_err() {
            return;
        }
        let _ = self.stream.shutdown().await;
        let drain = async {
            while let Ok(n) = self.stream.read(&mut self.read_buf).await {
                if n == 0 {
                    break;
                }
            }
        };
        let _ = timeout(LINGER, drain).await;
    }
}
