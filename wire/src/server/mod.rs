//! How both services take connections, in one place: an API listener and an operations
//! listener (`Listeners`), each with a cap on open connections, over the cap a clean `503`
//! (`refuse`), a header-read and an idle timeout per connection (`clock`), TCP_NODELAY, a
//! graceful stop, and the open-file limit raised at start (`open_files`). Settings in
//! `limits` (`connections` in each service's configuration).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::Request;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub mod limits;
pub mod open_files;

mod clock;
mod refuse;

pub use limits::ConnectionLimits;

use clock::{Activity, Counted, Watched};
use refuse::Refusal;

/// The two sockets a service listens on: the API, and the operations endpoints (metrics, the
/// cluster view, health), kept apart so the operations can stay on a private address.
pub struct Listeners {
    pub api: TcpListener,
    pub ops: TcpListener,
}

impl Listeners {
    pub async fn bind(api: SocketAddr, ops: SocketAddr) -> anyhow::Result<Listeners> {
        Ok(Listeners {
            api: TcpListener::bind(api)
                .await
                .with_context(|| format!("binding {api}"))?,
            ops: TcpListener::bind(ops)
                .await
                .with_context(|| format!("binding the operations address {ops}"))?,
        })
    }

    /// Both on fresh loopback ports (tests).
    pub async fn loopback() -> anyhow::Result<Listeners> {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Listeners::bind(any, any).await
    }

    pub fn api_addr(&self) -> io::Result<SocketAddr> {
        self.api.local_addr()
    }

    pub fn ops_addr(&self) -> io::Result<SocketAddr> {
        self.ops.local_addr()
    }
}

/// Serves the API (a service per connection, made by `api` from the peer's address) and the
/// operations service until `shutdown` completes; then stops accepting, lets requests in
/// flight finish and closes idle connections.
///
/// Both services must always be ready (axum's `Router` is; so is the router's `Front`): hyper
/// calls them without waiting.
pub async fn serve<A, M, O>(
    listeners: Listeners,
    limits: &ConnectionLimits,
    mut api: M,
    ops: O,
    shutdown: impl Future<Output = ()>,
) where
    M: FnMut(SocketAddr) -> A,
    A: ConnectionService,
    O: ConnectionService,
    A::Future: Send + 'static,
    O::Future: Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    // Our clock keeps the header timeout (see `clock`); hyper's would also cut idle ones.
    http.keep_alive(true).header_read_timeout(None::<Duration>);
    let api_side = Side {
        listener: &listeners.api,
        cap: Arc::new(Semaphore::new(limits.max)),
    };
    let ops_side = Side {
        listener: &listeners.ops,
        cap: Arc::new(Semaphore::new(limits.max_ops)),
    };
    let refusal = Refusal::new();
    let run = Run {
        graceful: &graceful,
        http: &http,
        limits,
        refusal: &refusal,
    };
    let mut ops = |_: SocketAddr| ops.clone();
    tokio::select! {
        () = shutdown => {}
        () = run.accept(&api_side, &mut api) => {}
        () = run.accept(&ops_side, &mut ops) => {}
    }
    drop(listeners);
    graceful.shutdown().await;
}

/// What a connection is served by: a tower service of axum requests, cloned per request.
pub trait ConnectionService:
    tower_service::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static
{
}

impl<S> ConnectionService for S where
    S: tower_service::Service<Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static
{
}

struct Side<'a> {
    listener: &'a TcpListener,
    cap: Arc<Semaphore>,
}

/// What every connection of this `serve` shares.
struct Run<'a> {
    graceful: &'a GracefulShutdown,
    http: &'a http1::Builder,
    limits: &'a ConnectionLimits,
    refusal: &'a Refusal,
}

impl Run<'_> {
    /// Accepts for ever: each connection is served in a task of its own, or refused when the
    /// side's cap is reached.
    async fn accept<S>(&self, side: &Side<'_>, make: &mut impl FnMut(SocketAddr) -> S)
    where
        S: ConnectionService,
        S::Future: Send + 'static,
    {
        loop {
            let (stream, peer) = match side.listener.accept().await {
                Ok(accepted) => accepted,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            };
            // No Nagle delay on small JSON answers.
            let _ = stream.set_nodelay(true);
            match side.cap.clone().try_acquire_owned() {
                Ok(permit) => self.spawn(stream, make(peer), permit),
                Err(_) => self.refusal.refuse(stream),
            }
        }
    }

    fn spawn<S>(&self, stream: TcpStream, service: S, permit: OwnedSemaphorePermit)
    where
        S: ConnectionService,
        S::Future: Send + 'static,
    {
        let activity = Activity::new();
        let io = TokioIo::new(Watched::new(stream, activity.clone(), self.limits));
        let connection = self
            .http
            .serve_connection(io, Counted::new(service, activity));
        let connection = self.graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed");
            }
            drop(permit);
        });
    }
}

/// After a failed accept: go on at once when only that connection failed; otherwise (out of
/// descriptors, most likely) wait a moment, as retrying at once would spin.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(200)).await;
}
