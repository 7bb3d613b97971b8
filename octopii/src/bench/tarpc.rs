//! The tarpc baseline of the RPC benchmark: the same echo through tarpc
//! 0.37 over one TCP connection (bincode, no TLS, `TCP_NODELAY` on both
//! sides), which every caller shares, as tarpc's clients do.

use std::net::SocketAddr;

use futures::StreamExt;
use tarpc::server::{BaseChannel, Channel};
use tarpc::tokio_serde::formats::Bincode;
use tarpc::{client, context};
use tokio::net::{TcpListener, TcpStream};

use crate::{OctopiiError, Result};

/// The measured service, as tarpc declares it.
#[tarpc::service]
pub trait TarpcEcho {
    /// Returns its argument.
    async fn echo(payload: Vec<u8>) -> Vec<u8>;
}

#[derive(Clone)]
struct Echo;

impl TarpcEcho for Echo {
    async fn echo(self, _: context::Context, payload: Vec<u8>) -> Vec<u8> {
        payload
    }
}

fn io(e: impl std::error::Error + Send + Sync + 'static) -> OctopiiError {
    OctopiiError::from(std::io::Error::other(e))
}

/// A tarpc server and a client connected to it, on loopback. Start it
/// inside the runtime that runs the callers.
#[derive(Debug)]
pub struct TarpcBench {
    client: TarpcEchoClient,
    payload: Vec<u8>,
    server: tokio::task::JoinHandle<()>,
}

impl TarpcBench {
    /// Starts the server and connects the client, sized for `max_callers`
    /// calls in flight, echoing `payload` bytes.
    pub async fn start(payload: usize, max_callers: usize) -> Result<Self> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                let transport =
                    tarpc::serde_transport::Transport::from((stream, Bincode::default()));
                let requests = BaseChannel::with_defaults(transport).execute(Echo.serve());
                // Each request runs in a task of its own.
                tokio::spawn(requests.for_each(|call| async {
                    tokio::spawn(call);
                }));
            }
        });
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let transport = tarpc::serde_transport::Transport::from((stream, Bincode::default()));
        let mut config = client::Config::default();
        config.max_in_flight_requests = config.max_in_flight_requests.max(max_callers);
        config.pending_request_buffer = config.pending_request_buffer.max(max_callers);
        Ok(TarpcBench {
            client: TarpcEchoClient::new(config, transport).spawn(),
            payload: vec![7u8; payload],
            server,
        })
    }

    /// A caller (all share the one connection).
    pub fn caller(&self) -> TarpcCaller {
        TarpcCaller {
            client: self.client.clone(),
            payload: self.payload.clone(),
        }
    }
}

impl Drop for TarpcBench {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// One tarpc caller.
#[derive(Debug, Clone)]
pub struct TarpcCaller {
    client: TarpcEchoClient,
    payload: Vec<u8>,
}

impl TarpcCaller {
    /// One round trip.
    pub async fn call(&self) -> Result<()> {
        let reply = self
            .client
            .echo(context::current(), self.payload.clone())
            .await
            .map_err(io)?;
        debug_assert_eq!(reply.len(), self.payload.len());
        Ok(())
    }
}
