//! One simulated gateway connection: the gateway's requests over a kept-alive HTTP/1.1
//! connection.
//!
//! Each bench worker owns one [`Connection`] and sends one hop at a time on it, as an aggregator
//! does per session. This is hyper's connection-level client, not a pooled client such as
//! `reqwest`: with one connection per worker there is nothing to pool, and skipping the pool, the
//! proxy lookup and the per-request URL parsing leaves more of this shared two-core machine to
//! the server being measured. A connection that fails is dropped and opened again on the next hop.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::check::{ErrorKind, Failure};
use crate::gateway::WireRequest;

/// Where hops are posted.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header: the URL's host and port.
    pub host: String,
    /// What comes before the gateway's own path: empty, or the secret path segment
    /// (`/s3cr3t`) of a server with `DUKA_USSD_SECRET`.
    pub prefix: String,
}

/// An HTTP reply: its status, headers and whole body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// A kept-alive connection to the target, opened on first use.
pub struct Connection {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    pub fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            sender: None,
        }
    }

    /// Sends one request and reads the whole reply, within the hop timeout (connecting
    /// included).
    ///
    /// # Errors
    /// A [`Failure`] of kind [`ErrorKind::Connect`], [`ErrorKind::Io`] or [`ErrorKind::Timeout`].
    /// The connection is dropped after any of them, and opened again by the next hop.
    pub async fn send(&mut self, request: WireRequest) -> Result<HttpReply, Failure> {
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!("no reply within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    /// One request and reply. The sender is taken out for the exchange and put back only after
    /// a complete reply, so a failed or timed-out exchange drops its connection.
    async fn exchange(&mut self, wire: WireRequest) -> Result<HttpReply, Failure> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let io = |e: hyper::Error| Failure::new(ErrorKind::Io, e.to_string());
        sender.ready().await.map_err(io)?;
        let mut request = Request::builder()
            .method(wire.method)
            .uri(format!("{}{}", self.target.prefix, wire.path_and_query))
            .header(HOST, self.target.host.as_str());
        if let Some(content_type) = wire.content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        let request = request
            .body(Full::new(Bytes::from(wire.body)))
            .map_err(|e| Failure::new(ErrorKind::Io, e.to_string()))?;
        let response = sender.send_request(request).await.map_err(io)?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.map_err(io)?.to_bytes();
        self.sender = Some(sender);
        Ok(HttpReply {
            status,
            headers,
            body,
        })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, Failure> {
        let connect = |e: std::io::Error| {
            Failure::new(
                ErrorKind::Connect,
                format!("could not connect to {}: {e}", self.target.addr),
            )
        };
        let stream = TcpStream::connect(self.target.addr)
            .await
            .map_err(connect)?;
        stream.set_nodelay(true).map_err(connect)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::new(ErrorKind::Connect, e.to_string()))?;
        // The connection task ends when the sender is dropped or the server closes it.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The shop's USSD code, as the aggregator reports it.
pub const SERVICE_CODE: &str = "*384*12#";
/// MCC+MNC of Safaricom Kenya.
pub const SAFARICOM: &str = "63902";
