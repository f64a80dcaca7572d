//! The listener's guard, between the socket and HTTP: every connection gets Nagle's
//! algorithm off; at most `HARK_MAX_CONNECTIONS` are open at once (one more is
//! answered 503 `too_many_connections` and closed); a connection's first request head
//! must arrive within `HARK_HEADER_TIMEOUT_MS` and `HARK_MAX_HEADER_BYTES`, or the
//! connection is closed, so that half-sent requests cannot pile up; and a failed
//! accept (out of file descriptors) is retried after a pause that grows, instead of
//! at once in a loop that would take a core.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use poem::{
    http::uri::Scheme,
    listener::{Acceptor, TcpAcceptor},
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};

/// The first and the longest pause after a failed accept.
const BACKOFF_FIRST: Duration = Duration::from_millis(10);
const BACKOFF_LONGEST: Duration = Duration::from_secs(1);

/// The answer to a connection over the cap, written before it is closed.
const REFUSAL_BODY: &str = r#"{"code":"too_many_connections","message":"This instance holds as many connections as it may; retry shortly or elsewhere"}"#;

/// How connections are guarded.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// How long the first request head may take to arrive.
    pub header_timeout: Duration,
    /// How many bytes the first request head may have.
    pub max_header_bytes: usize,
}

/// A TCP acceptor with the guards above.
pub struct GuardedAcceptor {
    /// The listener.
    inner: TcpAcceptor,
    /// One permit per open connection; a connection holds its permit until dropped.
    open: Arc<Semaphore>,
    /// The limits.
    limits: ConnectionLimits,
    /// The pause before the next accept after a failure.
    backoff: Duration,
}

impl GuardedAcceptor {
    /// Guards the listener's connections.
    pub fn new(inner: TcpAcceptor, limits: ConnectionLimits) -> Self {
        Self {
            inner,
            open: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            backoff: BACKOFF_FIRST,
        }
    }
}

impl Acceptor for GuardedAcceptor {
    type Io = GuardedStream;

    fn local_addr(&self) -> Vec<LocalAddr> {
        self.inner.local_addr()
    }

    async fn accept(&mut self) -> io::Result<(Self::Io, LocalAddr, RemoteAddr, Scheme)> {
        loop {
            let (stream, local, remote, scheme) = match self.inner.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, retry_in_ms = self.backoff.as_millis() as u64, "could not accept a connection");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(BACKOFF_LONGEST);
                    continue;
                }
            };
            self.backoff = BACKOFF_FIRST;
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "could not turn Nagle's algorithm off");
            }
            let Ok(permit) = self.open.clone().try_acquire_owned() else {
                tokio::spawn(refuse(stream));
                continue;
            };
            let head = HeadGuard {
                deadline: Box::pin(tokio::time::sleep(self.limits.header_timeout)),
                seen: 0,
                matched: 0,
                limit: self.limits.max_header_bytes,
            };
            let guarded = GuardedStream {
                stream,
                head: Some(head),
                _permit: permit,
            };
            return Ok((guarded, local, remote, scheme));
        }
    }
}

/// Answers a connection over the cap with 503 and closes it.
async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{REFUSAL_BODY}",
        REFUSAL_BODY.len()
    );
    let written = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
    if !matches!(written, Ok(Ok(()))) {
        tracing::debug!("could not answer a connection over the cap");
    }
}

/// A connection's first request head, while it arrives.
struct HeadGuard {
    /// When it must be complete.
    deadline: Pin<Box<Sleep>>,
    /// Bytes read so far.
    seen: usize,
    /// How much of the blank line that ends a head ("\r\n\r\n") the last bytes match.
    matched: usize,
    /// The most bytes a head may have.
    limit: usize,
}

impl HeadGuard {
    /// Takes newly read bytes: answers whether the head is complete.
    fn complete_after(&mut self, bytes: &[u8]) -> bool {
        const END: &[u8] = b"\r\n\r\n";
        for byte in bytes {
            self.seen += 1;
            self.matched = if *byte == END[self.matched] {
                self.matched + 1
            } else if *byte == b'\r' {
                1
            } else {
                0
            };
            if self.matched == END.len() {
                return true;
            }
        }
        false
    }
}

/// An accepted connection: its place under the cap, and its first request head's
/// guard until that head is complete.
pub struct GuardedStream {
    /// The socket.
    stream: TcpStream,
    /// The first request head's guard, until it is complete.
    head: Option<HeadGuard>,
    /// The connection's place under the cap, given back when it is dropped.
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for GuardedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(head) = &mut this.head
            && head.deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            )));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if let (Poll::Ready(Ok(())), Some(head)) = (&polled, &mut this.head) {
            if head.complete_after(&buf.filled()[before..]) {
                this.head = None;
            } else if head.seen > head.limit {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the request head is too large",
                )));
            }
        }
        polled
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
