//! The in-process service runner: loopback ports, a graceful stop that returns the service's
//! own result, an abort on drop; for a closure and for a `wire::Service`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use testkit::TestService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wire::server::{ConnectionLimits, Listeners};
use wire::{ConfigError, Service, ServiceConfig, Shutdown};

/// Greets every connection with its configured line, until shut down.
struct Greeter;

#[derive(Debug, Default, Serialize, Deserialize)]
struct GreeterConfig {
    greeting: String,
    connections: ConnectionLimits,
}

impl ServiceConfig for GreeterConfig {
    const ENV_PREFIX: &'static str = "TESTKIT_GREETER_";

    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }

    fn listen(&self) -> SocketAddr {
        // Never bound: the runner picks its own port.
        SocketAddr::from(([192, 0, 2, 1], 1))
    }

    fn ops_listen(&self) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], 2))
    }

    fn connections(&self) -> &ConnectionLimits {
        &self.connections
    }
}

impl Service for Greeter {
    type Config = GreeterConfig;
    const NAME: &'static str = "greeter";

    async fn serve(
        config: GreeterConfig,
        listeners: Listeners,
        shutdown: Shutdown,
    ) -> anyhow::Result<()> {
        greet(config.greeting, listeners.api, shutdown).await
    }
}

async fn greet(
    greeting: String,
    listener: TcpListener,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (mut stream, _) = accepted?;
                stream.write_all(greeting.as_bytes()).await?;
            }
        }
    }
}

async fn read_greeting(addr: SocketAddr) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await?;
    Ok(text)
}

#[tokio::test]
async fn a_wire_service_serves_on_a_loopback_port_and_stops_gracefully() {
    let service = TestService::start_service::<Greeter>(GreeterConfig {
        greeting: "hello".into(),
        ..GreeterConfig::default()
    })
    .await
    .unwrap();
    assert!(service.addr().ip().is_loopback());
    assert!(service.ops_addr().ip().is_loopback());
    assert_ne!(service.ops_addr(), service.addr());
    assert_eq!(service.base_url(), format!("http://{}", service.addr()));
    assert_eq!(read_greeting(service.addr()).await.unwrap(), "hello");
    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_closure_runs_and_stop_returns_its_error() {
    let service = TestService::start(|listeners, shutdown| async move {
        greet("closure".into(), listeners.api, shutdown).await?;
        anyhow::bail!("stopped with a complaint")
    })
    .await
    .unwrap();
    assert_eq!(read_greeting(service.addr()).await.unwrap(), "closure");
    let error = service.stop().await.unwrap_err();
    assert_eq!(error.to_string(), "stopped with a complaint");
}

#[tokio::test]
async fn a_dropped_service_stops_listening() {
    let listeners = Listeners::loopback().await.unwrap();
    let service = TestService::start_on(listeners, |listeners, _shutdown| async move {
        // Ignores its shutdown signal: only the abort ends it.
        greet(
            "stubborn".into(),
            listeners.api,
            Box::pin(std::future::pending()),
        )
        .await
    })
    .unwrap();
    let addr = service.addr();
    assert_eq!(read_greeting(addr).await.unwrap(), "stubborn");
    drop(service);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
