//! One connection's clock: the header-read and idle timeouts, kept by the connection's socket
//! (`Watched`) from what its requests do (`Counted`, the service wrapper that marks a request
//! begun when hyper has read its head and done when its answer is ready).
//!
//! hyper's own `header_read_timeout` starts when the previous answer was sent, so on a
//! keep-alive connection it is the idle timeout as well; the two are kept apart here:
//! - a new connection must send a whole request head within the header timeout;
//! - on a kept-alive connection, the first byte of the next head must come within the idle
//!   timeout of the last answer (or of the last byte written: a streamed answer is not idle),
//!   and the rest of the head within the header timeout of that byte;
//! - while a request is in flight, neither applies (each service bounds its own requests).
//!
//! The deadline is worked out when hyper reads and finds nothing; the one timer is moved only
//! to an earlier deadline, and a later one is taken when it fires.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::service::{TowerToHyperService, TowerToHyperServiceFuture};
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

use super::limits::ConnectionLimits;

/// What the connection's requests are doing, shared by its socket and its service.
pub(super) struct Activity {
    opened: Instant,
    /// Requests whose answer is not ready yet.
    busy: AtomicU32,
    /// Requests begun so far: a head whose first byte came under an older count is done.
    begun: AtomicU64,
    /// When the last answer was ready, in milliseconds since `opened`.
    idle_since_ms: AtomicU64,
}

impl Activity {
    pub(super) fn new() -> Arc<Activity> {
        Arc::new(Activity {
            opened: Instant::now(),
            busy: AtomicU32::new(0),
            begun: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(0),
        })
    }

    fn begin(&self) {
        self.begun.fetch_add(1, Ordering::Relaxed);
        self.busy.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        let ms = self.opened.elapsed().as_millis() as u64;
        self.idle_since_ms.store(ms, Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The connection's socket, failing a read with `TimedOut` once the client has been silent past
/// the deadline that applies (see the module docs); hyper then closes the connection.
pub(super) struct Watched {
    stream: TcpStream,
    activity: Arc<Activity>,
    header_timeout: Duration,
    idle_timeout: Duration,
    /// The first byte of a request head, and the requests begun at that moment.
    head: Option<(Instant, u64)>,
    /// Bytes were written since the deadline was last worked out.
    wrote: bool,
    last_write: Instant,
    /// One timer for the connection's life, moved to each new deadline.
    timer: Pin<Box<Sleep>>,
}

impl Watched {
    pub(super) fn new(
        stream: TcpStream,
        activity: Arc<Activity>,
        limits: &ConnectionLimits,
    ) -> Watched {
        let opened = activity.opened;
        let header_timeout = limits.header_read_timeout();
        Watched {
            stream,
            activity,
            header_timeout,
            idle_timeout: limits.idle_timeout(),
            head: None,
            wrote: false,
            last_write: opened,
            timer: Box::pin(tokio::time::sleep_until((opened + header_timeout).into())),
        }
    }

    /// When the client's silence ends the connection. While a request is in flight, a time to
    /// look again instead: hyper need not read again when the answer is sent, so nothing else
    /// would start the idle clock, and the idle deadline cannot come before this.
    fn deadline(&mut self) -> Instant {
        let activity = &self.activity;
        if activity.busy.load(Ordering::Relaxed) > 0 {
            return Instant::now() + self.idle_timeout;
        }
        let begun = activity.begun.load(Ordering::Relaxed);
        if let Some((first_byte, during)) = self.head {
            if during == begun {
                return first_byte + self.header_timeout;
            }
        }
        if begun == 0 {
            return activity.opened + self.header_timeout;
        }
        if std::mem::take(&mut self.wrote) {
            self.last_write = Instant::now();
        }
        let answered =
            activity.opened + Duration::from_millis(activity.idle_since_ms.load(Ordering::Relaxed));
        answered.max(self.last_write) + self.idle_timeout
    }

    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let at = tokio::time::Instant::from_std(self.deadline());
        // Moved at once only to an earlier deadline; a later one is taken when the timer fires,
        // so a connection serving request after request does not move it for each of them.
        if at < self.timer.deadline() {
            self.timer.as_mut().reset(at);
        }
        while self.timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= at {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client was silent too long",
                )));
            }
            self.timer.as_mut().reset(at);
        }
        Poll::Pending
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Pending => this.poll_deadline(cx),
            Poll::Ready(Ok(())) => {
                let activity = &this.activity;
                let begun = activity.begun.load(Ordering::Relaxed);
                let in_head = this.head.is_some_and(|(_, during)| during == begun);
                if buf.filled().len() > before
                    && !in_head
                    && activity.busy.load(Ordering::Relaxed) == 0
                {
                    this.head = Some((Instant::now(), begun));
                }
                Poll::Ready(Ok(()))
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.wrote = true;
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// The service of one connection as hyper calls it: marks each request begun and done for the
/// clock, drops a malformed `X-Request-Id` (the service then gives the request a fresh one),
/// and calls the service with axum's body type.
pub(super) struct Counted<S> {
    inner: TowerToHyperService<S>,
    activity: Arc<Activity>,
}

impl<S> Counted<S> {
    pub(super) fn new(service: S, activity: Arc<Activity>) -> Counted<S> {
        Counted {
            inner: TowerToHyperService::new(service),
            activity,
        }
    }
}

impl<S> hyper::service::Service<hyper::Request<Incoming>> for Counted<S>
where
    S: tower_service::Service<Request, Response = Response, Error = Infallible> + Clone,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<TowerToHyperServiceFuture<S, Request>>;

    fn call(&self, request: hyper::Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        crate::trace::drop_invalid_request_id(request.headers_mut());
        self.activity.begin();
        Tracked {
            inner: hyper::service::Service::call(&self.inner, request),
            _busy: Busy(self.activity.clone()),
        }
    }
}

pin_project! {
    /// A request's answer future; the request counts as in flight until it is ready (or
    /// dropped, when the client went away).
    pub(super) struct Tracked<F> {
        #[pin]
        inner: F,
        _busy: Busy,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.project().inner.poll(cx)
    }
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end();
    }
}
