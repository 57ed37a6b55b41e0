//! A service serving in this process for a test: bound to a fresh loopback port, stopped
//! gracefully by [`TestService::stop`], aborted if dropped (a test that panicked).

use std::future::Future;
use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running service: its address, and what stops it.
#[derive(Debug)]
pub struct TestService {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestService {
    /// Binds `127.0.0.1:0` and runs `serve` on it until [`TestService::stop`].
    pub async fn start<F, Fut>(serve: F) -> anyhow::Result<TestService>
    where
        F: FnOnce(TcpListener, wire::Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding a loopback port")?;
        TestService::start_on(listener, serve)
    }

    /// Runs `serve` on a listener the test bound itself, for a service that must be found at a
    /// particular address.
    pub fn start_on<F, Fut>(listener: TcpListener, serve: F) -> anyhow::Result<TestService>
    where
        F: FnOnce(TcpListener, wire::Shutdown) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let addr = listener.local_addr().context("the listener's address")?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(
            listener,
            Box::pin(async move {
                // A dropped sender stops the service too.
                let _ = stop.await;
            }),
        ));
        Ok(TestService {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    /// Runs service `S` with `config` on a fresh loopback port (the config's own listen address
    /// is not used, so tests never collide on ports).
    pub async fn start_service<S>(config: S::Config) -> anyhow::Result<TestService>
    where
        S: wire::Service + 'static,
        S::Config: Send + 'static,
    {
        TestService::start(move |listener, shutdown| S::serve(config, listener, shutdown)).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
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
