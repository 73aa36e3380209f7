//! The client's HTTP connections: one per endpoint, opened on first use and again once it
//! breaks, speaking HTTP/1.1 or (offered by ALPN) HTTP/2 over TLS, or HTTP/1.1 over plain TCP.
//!
//! Built on hyper's connection API: a request goes straight to its endpoint's connection, with
//! no pool to check a connection out of and no URL to format and parse, which a general HTTP
//! client does for every request (docs/benchmarks.md, "The client on hyper's connections").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::client::conn::{http1, http2};
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use thiserror::Error;
use tokio::net::TcpStream;
use tracing::debug;

/// The largest answer body read (a scan's pairs are the largest answers).
const MAX_ANSWER_BYTES: usize = 512 << 20;

/// Why a request got no answer from its endpoint. Every case but [`ConnectionError::Path`] is
/// worth another try, on this endpoint or another.
#[derive(Debug, Error)]
pub(super) enum ConnectionError {
    /// The TCP connection or the TLS handshake failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    /// The connection or the TLS handshake took too long.
    #[error("connecting timed out")]
    ConnectTimeout,
    /// HTTP failed on the connection (it broke, or the answer is malformed).
    #[error("{0}")]
    Http(#[from] hyper::Error),
    /// The answer's body is over [`MAX_ANSWER_BYTES`] or broke off.
    #[error("reading the answer: {0}")]
    Body(String),
    /// The request's path is not a URI path (a bug of the caller: paths are the API's own).
    #[error("the request path {0} is not a URI path")]
    Path(String),
    /// No answer within the request timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// An answer: its status and body.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Bytes,
}

/// One endpoint's open connection.
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// A request that failed on its connection: given back if it was never written.
struct SendFailure {
    error: hyper::Error,
    unsent: Option<Request<Full<Bytes>>>,
}

impl From<TrySendError<Request<Full<Bytes>>>> for SendFailure {
    fn from(mut e: TrySendError<Request<Full<Bytes>>>) -> Self {
        let unsent = e.take_message();
        SendFailure {
            error: e.into_error(),
            unsent,
        }
    }
}

impl Sender {
    /// Sends `request` once the connection can take it; a request never written comes back in
    /// the failure.
    async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, SendFailure> {
        let ready = match self {
            Sender::Http1(s) => s.ready().await,
            Sender::Http2(s) => s.ready().await,
        };
        if let Err(error) = ready {
            return Err(SendFailure {
                error,
                unsent: Some(request),
            });
        }
        Ok(match self {
            Sender::Http1(s) => s.try_send_request(request).await?,
            Sender::Http2(s) => s.try_send_request(request).await?,
        })
    }

    fn is_closed(&self) -> bool {
        match self {
            Sender::Http1(s) => s.is_closed(),
            Sender::Http2(s) => s.is_closed(),
        }
    }
}

/// An endpoint: its address as a `Host` header and as an absolute URI's authority, and its
/// connection while one is open.
struct Endpoint {
    host: HeaderValue,
    authority: String,
    sender: Option<Sender>,
}

/// HTTP/2 connections shared by a client and its forks, by endpoint.
type SharedHttp2 = Arc<tokio::sync::Mutex<HashMap<SocketAddr, http2::SendRequest<Full<Bytes>>>>>;

/// The connections of one client (and, with HTTP/2, of its forks: see [`Connections::fork`]).
pub(super) struct Connections {
    tls: Option<tokio_rustls::TlsConnector>,
    scheme: &'static str,
    http2: bool,
    connect_timeout: Duration,
    endpoints: HashMap<SocketAddr, Endpoint>,
    /// With HTTP/2, the connections forks share, by endpoint (a clone of a sender multiplexes
    /// on the same connection).
    shared: Option<SharedHttp2>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("scheme", &self.scheme)
            .field("http2", &self.http2)
            .field(
                "open",
                &self.endpoints.values().filter(|e| e.sender.is_some()).count(),
            )
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// No connection opened yet. `tls`: the client's rustls config (its ALPN offers HTTP/2 when
    /// `http2`); `None`: plain HTTP/1.1.
    pub(super) fn new(tls: Option<rustls::ClientConfig>, http2: bool, connect_timeout: Duration) -> Self {
        let http2 = http2 && tls.is_some();
        Connections {
            scheme: if tls.is_some() { "https" } else { "http" },
            tls: tls.map(|config| tokio_rustls::TlsConnector::from(Arc::new(config))),
            http2,
            connect_timeout,
            endpoints: HashMap::new(),
            shared: http2.then(Default::default),
        }
    }

    /// `http` or `https`.
    pub(super) fn scheme(&self) -> &'static str {
        self.scheme
    }

    /// Connections for another client: with HTTP/2 it shares this one's (its requests travel
    /// on the same connection to each endpoint); with HTTP/1.1 it opens its own.
    pub(super) fn fork(&self) -> Self {
        Connections {
            tls: self.tls.clone(),
            scheme: self.scheme,
            http2: self.http2,
            connect_timeout: self.connect_timeout,
            endpoints: HashMap::new(),
            shared: self.shared.clone(),
        }
    }

    /// Sends one request to `target` and reads its answer, all within `timeout`. `path`
    /// carries the query, if any. A connection found closed is opened again first; one that
    /// fails is dropped, to be opened again by the next request.
    pub(super) async fn send(
        &mut self,
        target: SocketAddr,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, ConnectionError> {
        match tokio::time::timeout(timeout, self.exchange(target, method, path, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.drop_connection(target).await;
                Err(e)
            }
            Err(_) => {
                // HTTP/1.1 cannot abandon a request and keep its connection.
                self.drop_connection(target).await;
                Err(ConnectionError::Timeout(timeout))
            }
        }
    }

    async fn exchange(
        &mut self,
        target: SocketAddr,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Answer, ConnectionError> {
        let scheme = self.scheme;
        let endpoint = self.endpoints.entry(target).or_insert_with(|| Endpoint {
            host: HeaderValue::from_str(&target.to_string()).unwrap_or(HeaderValue::from_static("localhost")),
            authority: target.to_string(),
            sender: None,
        });
        // HTTP/1.1 takes the path with the Host header; HTTP/2 the absolute URI.
        let uri = if self.http2 {
            Uri::try_from(format!("{scheme}://{}{path}", endpoint.authority))
        } else {
            Uri::try_from(path)
        }
        .map_err(|e| ConnectionError::Path(format!("{path:?}: {e}")))?;
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        request.headers_mut().insert(HOST, endpoint.host.clone());
        if has_body {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let (sender, reused) = self.sender(target).await?;
        let response = match self.send_on(target, sender, request).await {
            Ok(response) => response,
            // A reused connection the server has closed meanwhile (idle, or restarted) gives the
            // request back unsent: it goes once more, on a new connection.
            Err(SendFailure {
                error,
                unsent: Some(request),
            }) if reused => {
                debug!(%target, %error, "the connection closed; opening another");
                self.drop_connection(target).await;
                let (sender, _) = self.sender(target).await?;
                self.send_on(target, sender, request)
                    .await
                    .map_err(|failure| failure.error)?
            }
            Err(failure) => return Err(failure.error.into()),
        };
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| ConnectionError::Body(e.to_string()))?
            .to_bytes();
        Ok(Answer { status, body })
    }

    /// Sends `request` on `sender`, which serves the next request to `target` once this one's
    /// answer is read.
    async fn send_on(
        &mut self,
        target: SocketAddr,
        mut sender: Sender,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, SendFailure> {
        let response = sender.send(request).await?;
        if let Some(endpoint) = self.endpoints.get_mut(&target) {
            endpoint.sender = Some(sender);
        }
        Ok(response)
    }

    /// The open connection to `target` (and `true`: it served requests before), or a new one.
    async fn sender(&mut self, target: SocketAddr) -> Result<(Sender, bool), ConnectionError> {
        if let Some(sender) = self.endpoints.get_mut(&target).and_then(|e| e.sender.take()) {
            if !sender.is_closed() {
                return Ok((sender, true));
            }
        }
        if let Some(shared) = self.shared.clone() {
            // Forks wait for one handshake and share its connection.
            let mut shared = shared.lock().await;
            if let Some(sender) = shared.get(&target).filter(|s| !s.is_closed()) {
                return Ok((Sender::Http2(sender.clone()), true));
            }
            let sender = self.open(target).await?;
            if let Sender::Http2(s) = &sender {
                shared.insert(target, s.clone());
            }
            return Ok((sender, false));
        }
        Ok((self.open(target).await?, false))
    }

    /// Forgets the connection to `target` (and, with HTTP/2, the forks' shared one if it is
    /// closed), so the next request opens a new one.
    async fn drop_connection(&mut self, target: SocketAddr) {
        if let Some(endpoint) = self.endpoints.get_mut(&target) {
            endpoint.sender = None;
        }
        if let Some(shared) = &self.shared {
            let mut shared = shared.lock().await;
            if shared.get(&target).is_some_and(|s| s.is_closed()) {
                shared.remove(&target);
            }
        }
    }

    /// Opens a connection: TCP (no Nagle), TLS if configured, then the HTTP handshake; the
    /// connection's task runs until it closes.
    async fn open(&self, target: SocketAddr) -> Result<Sender, ConnectionError> {
        let connect = async {
            let tcp = TcpStream::connect(target)
                .await
                .map_err(ConnectionError::Connect)?;
            let _ = tcp.set_nodelay(true);
            match &self.tls {
                Some(tls) => {
                    let name = ServerName::IpAddress(target.ip().into());
                    let stream = tls.connect(name, tcp).await.map_err(ConnectionError::Connect)?;
                    let http2 = stream.get_ref().1.alpn_protocol() == Some(crate::tls::H2);
                    handshake(TokioIo::new(stream), http2).await
                }
                None => handshake(TokioIo::new(tcp), false).await,
            }
        };
        let sender = tokio::time::timeout(self.connect_timeout, connect)
            .await
            .map_err(|_| ConnectionError::ConnectTimeout)??;
        debug!(%target, "connected");
        Ok(sender)
    }
}

/// The HTTP handshake on an open stream.
async fn handshake<I>(io: I, http2: bool) -> Result<Sender, ConnectionError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    if http2 {
        let (sender, connection) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "HTTP/2 connection closed");
            }
        });
        Ok(Sender::Http2(sender))
    } else {
        let (sender, connection) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "HTTP/1.1 connection closed");
            }
        });
        Ok(Sender::Http1(sender))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads one request head from `stream` and answers it with `body`.
    async fn answer(stream: &mut tokio::net::TcpStream, body: &str) {
        let mut head = vec![0u8; 4096];
        let mut read = 0;
        while !head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            read += stream.read(&mut head[read..]).await.unwrap();
        }
        let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
        stream.write_all(answer.as_bytes()).await.unwrap();
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_failing_the_request() {
        // A server that answers a request, keeps the connection open without saying it will
        // close it, closes it when told (as a server that restarts or drops idle connections
        // does), then answers on a second connection.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (close, closing) = tokio::sync::oneshot::channel::<()>();
        let (closed, on_closed) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let (mut first, _) = listener.accept().await.unwrap();
            answer(&mut first, "1").await;
            closing.await.unwrap();
            first.shutdown().await.unwrap();
            drop(first);
            closed.send(()).unwrap();
            let (mut second, _) = listener.accept().await.unwrap();
            answer(&mut second, "2").await;
        });
        let mut connections = Connections::new(None, false, Duration::from_secs(2));
        let timeout = Duration::from_secs(5);
        let first = connections
            .send(addr, Method::GET, "/a", None, timeout)
            .await
            .unwrap();
        assert_eq!((first.status, &first.body[..]), (StatusCode::OK, &b"1"[..]));
        close.send(()).unwrap();
        on_closed.await.unwrap();
        // The connection still looks open here; the request comes back unsent and goes on a
        // new one.
        let second = connections
            .send(addr, Method::GET, "/b", None, timeout)
            .await
            .unwrap();
        assert_eq!(&second.body[..], b"2");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_a_connect_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let mut connections = Connections::new(None, false, Duration::from_secs(2));
        let error = connections
            .send(addr, Method::GET, "/", None, Duration::from_secs(5))
            .await
            .err()
            .unwrap();
        assert!(matches!(error, ConnectionError::Connect(_)), "{error}");
    }
}
