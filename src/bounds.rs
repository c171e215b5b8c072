//! Every request's bounds, and the log line of a failed one, in one layer.
//!
//! Each request that reaches a route is bounded in size ([`MAX_BODY_BYTES`]: a body declared
//! larger is refused with 413 before a byte of it is read, and a body of undeclared length is
//! cut off there as it streams in) and in time (`REQUEST_TIMEOUT`: 503 once it has run that
//! long, wherever it waits). With [`Bounds::logging`] a 5xx answer is also logged as an error
//! with its method and path, and a malformed callback as a warning (see
//! [`crate::error::LoggedError`]).
//!
//! One hand-written layer rather than `tower_http`'s body limit and timeout and an
//! `axum::middleware::from_fn` log: those three cost a hop about a fifth of the CPU the whole
//! menu engine does (a boxed future, a cloned service and a copied path per request, and a
//! body wrapped twice), and every USSD hop goes through them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tower::{Layer, Service};

use crate::error::LoggedError;

/// The largest request body any route accepts.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// How long any request may take, from its headers to its answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The layer: size and time bounds, and with [`Bounds::logging`] the error log.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    log: bool,
    timeout: Duration,
}

impl Bounds {
    /// Bounds, and a log line for each 5xx and each malformed callback.
    pub fn logging() -> Self {
        Self {
            log: true,
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// Bounds only: for `/readyz`, whose 503 is a normal answer that its handler logs once per
    /// change.
    pub fn quiet() -> Self {
        Self {
            log: false,
            timeout: REQUEST_TIMEOUT,
        }
    }

    #[cfg(test)]
    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

impl<S> Layer<S> for Bounds {
    type Service = Bounded<S>;

    fn layer(&self, inner: S) -> Bounded<S> {
        Bounded {
            inner,
            bounds: *self,
        }
    }
}

/// A service under [`Bounds`].
#[derive(Clone, Debug)]
pub struct Bounded<S> {
    inner: S,
    bounds: Bounds,
}

impl<S> Service<Request> for Bounded<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoundedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // Kept only to name a failed request in the log (a `Uri` clone shares its bytes).
        let logged = self
            .bounds
            .log
            .then(|| (request.method().clone(), request.uri().clone()));
        let state = match declared_length(&request) {
            Some(length) if length > MAX_BODY_BYTES as u64 => State::Refused,
            // hyper delivers no more than a declared length: nothing to count.
            Some(_) => State::Running {
                future: self.inner.call(request),
            },
            None => {
                let request = request
                    .map(|body| Body::new(http_body_util::Limited::new(body, MAX_BODY_BYTES)));
                State::Running {
                    future: self.inner.call(request),
                }
            }
        };
        BoundedFuture {
            state,
            deadline: tokio::time::sleep(self.bounds.timeout),
            logged,
        }
    }
}

/// The body length the request declares, when its framing is that length (a chunked body's
/// `Content-Length`, if any, says nothing about what will arrive).
fn declared_length(request: &Request) -> Option<u64> {
    let headers = request.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

pin_project_lite::pin_project! {
    /// The future of a [`Bounded`] call.
    pub struct BoundedFuture<F> {
        #[pin]
        state: State<F>,
        #[pin]
        deadline: tokio::time::Sleep,
        logged: Option<(Method, Uri)>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<F> {
        Refused,
        Running { #[pin] future: F },
    }
}

impl<F, E> Future for BoundedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = match this.state.project() {
            StateProj::Refused => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request body too large\n").into_response()
            }
            StateProj::Running { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => match this.deadline.poll(cx) {
                    Poll::Ready(()) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
                    Poll::Pending => return Poll::Pending,
                },
            },
        };
        if let Some((method, uri)) = this.logged.take() {
            log_failure(&method, &uri, &response);
        }
        Poll::Ready(Ok(response))
    }
}

/// Logs a malformed callback as a warning and any 5xx as an error, once, where it is answered.
fn log_failure(method: &Method, uri: &Uri, response: &Response) {
    if let Some(LoggedError(error)) = response.extensions().get::<LoggedError>() {
        tracing::warn!(error.message = %error, "rejected a malformed callback");
    }
    if response.status().is_server_error() {
        tracing::error!(
            http.method = %method,
            http.path = %crate::telemetry::path_for_log(uri.path()),
            http.status = response.status().as_u16(),
            "request failed"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::post;
    use axum::Router;
    use tower::ServiceExt as _;

    fn app(bounds: Bounds) -> Router {
        Router::new()
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/boom",
                post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .layer(bounds)
    }

    async fn post_to(app: Router, path: &str, body: Body, length: Option<usize>) -> (u16, String) {
        let mut request = Request::post(path);
        if let Some(length) = length {
            request = request.header(header::CONTENT_LENGTH, length);
        }
        let response = app.oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status().as_u16();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn a_body_within_the_bound_reaches_the_handler() {
        let body = vec![b'1'; MAX_BODY_BYTES];
        let (status, text) = post_to(
            app(Bounds::logging()),
            "/echo",
            Body::from(body),
            Some(MAX_BODY_BYTES),
        )
        .await;
        assert_eq!((status, text.as_str()), (200, "65536"));
    }

    #[tokio::test]
    async fn a_body_declared_too_large_is_refused_unread() {
        // The body itself is empty: only the declared length can have refused it.
        let (status, text) = post_to(
            app(Bounds::logging()),
            "/echo",
            Body::empty(),
            Some(MAX_BODY_BYTES + 1),
        )
        .await;
        assert_eq!(status, 413, "{text}");
    }

    #[tokio::test]
    async fn a_body_of_no_declared_length_is_cut_off_at_the_bound() {
        let too_long = Body::from(vec![b'1'; MAX_BODY_BYTES + 1]);
        let (status, _) = post_to(app(Bounds::logging()), "/echo", too_long, None).await;
        assert_eq!(status, 413);

        let within = Body::from(vec![b'1'; 8192]);
        let (status, text) = post_to(app(Bounds::logging()), "/echo", within, None).await;
        assert_eq!((status, text.as_str()), (200, "8192"));
    }

    #[tokio::test]
    async fn a_chunked_body_is_counted_whatever_length_it_declares() {
        let request = Request::post("/echo")
            .header(header::CONTENT_LENGTH, 10)
            .header(header::TRANSFER_ENCODING, "chunked")
            .body(Body::from(vec![b'1'; MAX_BODY_BYTES + 1]))
            .unwrap();
        let response = app(Bounds::logging()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// Everything logged on this thread while the guard lives.
    #[derive(Clone, Default)]
    struct Logged(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Logged {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Logged {
        fn install(&self) -> tracing::subscriber::DefaultGuard {
            let writer = self.clone();
            let guard = tracing::subscriber::set_default(
                tracing_subscriber::fmt()
                    .with_ansi(false)
                    .with_writer(move || writer.clone())
                    .finish(),
            );
            tracing::callsite::rebuild_interest_cache();
            guard
        }

        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    #[tokio::test]
    async fn a_failed_request_is_logged_with_its_method_and_path_unless_quiet() {
        let logged = Logged::default();
        let _guard = logged.install();
        let (status, _) = post_to(app(Bounds::logging()), "/boom", Body::empty(), Some(0)).await;
        assert_eq!(status, 500);
        let text = logged.text();
        assert!(text.contains("request failed"), "{text}");
        assert!(text.contains("http.path=/boom"), "{text}");
        assert!(text.contains("http.method=POST"), "{text}");

        let quiet = Logged::default();
        let _guard = quiet.install();
        let (status, _) = post_to(app(Bounds::quiet()), "/boom", Body::empty(), Some(0)).await;
        assert_eq!(status, 500);
        assert_eq!(quiet.text(), "");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_past_its_time_is_answered_503() {
        let bounds = Bounds::quiet().with_timeout(Duration::from_secs(10));
        let (status, _) = post_to(app(bounds), "/slow", Body::empty(), Some(0)).await;
        assert_eq!(status, 503);
    }
}
