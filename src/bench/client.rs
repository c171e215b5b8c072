//! One simulated gateway connection: form posts over a kept-alive HTTP/1.1 connection.
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

/// Where hops are posted.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// The `Host` header: the URL's host and port.
    pub host: String,
    /// The path of the USSD callback, e.g. `/ussd/africastalking`.
    pub path: String,
}

/// An HTTP reply: its status and whole body.
#[derive(Debug)]
pub struct HttpReply {
    pub status: u16,
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

    /// Posts one form body and reads the whole reply, within the hop timeout (connecting
    /// included).
    ///
    /// # Errors
    /// A [`Failure`] of kind [`ErrorKind::Connect`], [`ErrorKind::Io`] or [`ErrorKind::Timeout`].
    /// The connection is dropped after any of them, and opened again by the next hop.
    pub async fn post_form(&mut self, form: String) -> Result<HttpReply, Failure> {
        match tokio::time::timeout(self.timeout, self.exchange(form)).await {
            Ok(result) => result,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!("no reply within {} ms", self.timeout.as_millis()),
            )),
        }
    }

    /// One request and reply. The sender is taken out for the exchange and put back only after
    /// a complete reply, so a failed or timed-out exchange drops its connection.
    async fn exchange(&mut self, form: String) -> Result<HttpReply, Failure> {
        let mut sender = match self.sender.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        let io = |e: hyper::Error| Failure::new(ErrorKind::Io, e.to_string());
        sender.ready().await.map_err(io)?;
        let request = Request::post(self.target.path.as_str())
            .header(HOST, self.target.host.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| Failure::new(ErrorKind::Io, e.to_string()))?;
        let response = sender.send_request(request).await.map_err(io)?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await.map_err(io)?.to_bytes();
        self.sender = Some(sender);
        Ok(HttpReply { status, body })
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

/// The form Africa's Talking posts for one hop.
pub fn africastalking_form(session_id: &str, phone: &str, text: &str) -> String {
    serde_urlencoded::to_string([
        ("sessionId", session_id),
        ("serviceCode", SERVICE_CODE),
        ("phoneNumber", phone),
        ("networkCode", SAFARICOM),
        ("text", text),
    ])
    .unwrap_or_default()
}

/// The shop's USSD code, as the aggregator reports it.
pub const SERVICE_CODE: &str = "*384*12#";
/// MCC+MNC of Safaricom Kenya.
const SAFARICOM: &str = "63902";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_reads_back_as_the_gateway_parses_it() {
        let form = africastalking_form("ATUid_bench_1", "+254712345678", "1*4*98*7");
        let req = crate::gateway::africastalking::parse(form.as_bytes()).unwrap();
        assert_eq!(req.session_id, "ATUid_bench_1");
        assert_eq!(req.msisdn.digits(), "254712345678");
        assert_eq!(req.service_code, SERVICE_CODE);
        assert_eq!(req.network_code.as_deref(), Some("63902"));
        assert_eq!(
            req.input,
            crate::gateway::HopInput::Cumulative("1*4*98*7".into())
        );
    }
}
