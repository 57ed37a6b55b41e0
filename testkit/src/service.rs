//! A service serving in this process for a test: bound to fresh loopback ports (its API and
//! its operations listener), stopped gracefully by [`TestService::stop`], aborted if dropped
//! (a test that panicked).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use wire::server::Listeners;

/// A running service: its addresses, and what stops it.
#[derive(Debug)]
pub struct TestService {
    addr: SocketAddr,
    ops_addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestService {
    /// Binds two `127.0.0.1:0` ports and runs `serve` on them until [`TestService::stop`].
    pub async fn start<F, Fut>(serve: F) -> anyhow::Result<TestService>
    where
        F: FnOnce(Listeners, wire::Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listeners = Listeners::loopback()
            .await
            .context("binding loopback ports")?;
        TestService::start_on(listeners, serve)
    }

    /// Runs `serve` on listeners the test bound itself, for a service that must be found at a
    /// particular address.
    pub fn start_on<F, Fut>(listeners: Listeners, serve: F) -> anyhow::Result<TestService>
    where
        F: FnOnce(Listeners, wire::Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listeners.api_addr().context("the listener's address")?;
        let ops_addr = listeners.ops_addr().context("the listener's address")?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listeners,
            Box::pin(async move {
                // A dropped sender stops the service too.
                let _ = stop.await;
            }),
        ));
        Ok(TestService {
            addr,
            ops_addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Runs service `S` with `config` on fresh loopback ports (the config's own listen
    /// addresses are not used, so tests never collide on ports).
    pub async fn start_service<S>(config: S::Config) -> anyhow::Result<TestService>
    where
        S: wire::Service + 'static,
        S::Config: Send + 'static,
    {
        TestService::start(move |listeners, shutdown| S::serve(config, listeners, shutdown)).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The operations listener's address.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// `http://127.0.0.1:<ops port>`: `/metrics`, `/cluster`.
    pub fn ops_url(&self) -> String {
        format!("http://{}", self.ops_addr)
    }

    /// Graceful stop: in-flight requests finish; then the service's own result.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.context("the service task panicked")??;
        }
        Ok(())
    }
}

impl Drop for TestService {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
