//! Per-call metrics and tracing for every gRPC call: a tower service around all routes.
//!
//! It records `jobboard_grpc_requests_total{method, code}` and
//! `jobboard_grpc_request_duration_seconds{method}`. A unary call ends when its response is ready,
//! and its code is in the response headers when it failed (gRPC "trailers-only" responses) —
//! otherwise it is OK. A server stream ends later, with a code sent in the trailers; its handler
//! wraps the stream with [`observe_stream`], which records the call when the stream ends.
//! (Reading trailers here would need the `http-body` crate, which the workspace does not have.)

use std::collections::HashSet;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use futures::Stream;
use prost::Message as _;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::codegen::{BoxFuture, Service};
use tonic::{Code, Status};
use tracing::Instrument as _;

use crate::telemetry::{REQUEST_DURATION, REQUESTS_TOTAL};

/// The label for paths that name no served method, so junk paths cannot blow up cardinality.
const UNKNOWN_METHOD: &str = "unknown";

/// Wraps a service (all routes) with per-call metrics and a tracing span.
#[derive(Clone, Debug)]
pub(crate) struct Metered<S> {
    inner: S,
    methods: Arc<HashSet<String>>,
}

impl<S> Metered<S> {
    /// Meters `inner`; `methods` are the served `package.Service/Method` names.
    pub(crate) fn new(inner: S, methods: HashSet<String>) -> Self {
        Self {
            inner,
            methods: Arc::new(methods),
        }
    }
}

impl<S> Service<Request<Body>> for Metered<S>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Response<Body>, Infallible>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let path = request.uri().path().trim_start_matches('/');
        let method: Arc<str> = if self.methods.contains(path) {
            path.into()
        } else {
            UNKNOWN_METHOD.into()
        };
        let record = CallRecord::new(method.clone());
        request.extensions_mut().insert(record.clone());
        let span = tracing::info_span!("grpc", method = %method, subject = tracing::field::Empty);
        // The service that was polled ready handles this call; a fresh clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        // Entered for `call` too: interceptors run there and record the caller on the span.
        let future = span.in_scope(|| inner.call(request));
        Box::pin(
            async move {
                let response = future.await?;
                if !record.is_streaming() {
                    record.finish(header_code(&response));
                }
                Ok(response)
            }
            .instrument(span),
        )
    }
}

/// The `grpc-status` of a trailers-only response, else OK.
fn header_code(response: &Response<Body>) -> Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from_i32)
}

/// One call's metrics, finished exactly once. Travels in the request's extensions, so a
/// streaming handler can take it over.
#[derive(Clone, Debug)]
pub(crate) struct CallRecord {
    inner: Arc<CallState>,
}

#[derive(Debug)]
struct CallState {
    method: Arc<str>,
    started: Instant,
    streaming: AtomicBool,
    finished: AtomicBool,
}

impl CallRecord {
    fn new(method: Arc<str>) -> Self {
        Self {
            inner: Arc::new(CallState {
                method,
                started: Instant::now(),
                streaming: AtomicBool::new(false),
                finished: AtomicBool::new(false),
            }),
        }
    }

    fn is_streaming(&self) -> bool {
        self.inner.streaming.load(Ordering::Acquire)
    }

    fn finish(&self, code: Code) {
        if self.inner.finished.swap(true, Ordering::AcqRel) {
            return;
        }
        let method = self.inner.method.to_string();
        metrics::counter!(REQUESTS_TOTAL, "method" => method.clone(), "code" => code_name(code))
            .increment(1);
        metrics::histogram!(REQUEST_DURATION, "method" => method)
            .record(self.inner.started.elapsed().as_secs_f64());
    }
}

/// Wraps a server stream's responses so the call is recorded when the stream ends: with the
/// code of its final error, OK when it ends cleanly, CANCELLED when the client goes away first.
pub(crate) fn observe_stream<T, S>(
    request_extensions: &tonic::Extensions,
    stream: S,
) -> ObservedStream<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    let record = request_extensions.get::<CallRecord>().cloned();
    if let Some(record) = &record {
        record.inner.streaming.store(true, Ordering::Release);
    }
    ObservedStream { stream, record }
}

/// A server stream whose end is recorded (see [`observe_stream`]).
#[derive(Debug)]
pub(crate) struct ObservedStream<S> {
    stream: S,
    record: Option<CallRecord>,
}

impl<T, S> Stream for ObservedStream<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = Pin::new(&mut self.stream).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Err(status))) => self.finish(status.code()),
            Poll::Ready(None) => self.finish(Code::Ok),
            _ => {}
        }
        polled
    }
}

impl<S> ObservedStream<S> {
    fn finish(&mut self, code: Code) {
        if let Some(record) = self.record.take() {
            record.finish(code);
        }
    }
}

impl<S> Drop for ObservedStream<S> {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The canonical upper-case name of a status code, as other gRPC metrics spell it.
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// The `package.Service/Method` names of `services`, read from encoded descriptor sets.
pub(crate) fn method_names(
    descriptor_sets: &[&[u8]],
    services: &[String],
) -> Result<HashSet<String>, prost::DecodeError> {
    let mut names = HashSet::new();
    for encoded in descriptor_sets {
        let set = prost_types::FileDescriptorSet::decode(*encoded)?;
        for file in set.file {
            for service in &file.service {
                let full = format!("{}.{}", file.package(), service.name());
                if services.contains(&full) {
                    names.extend(
                        service
                            .method
                            .iter()
                            .map(|m| format!("{full}/{}", m.name())),
                    );
                }
            }
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_names_come_from_the_descriptors_of_served_services_only() {
        let names = method_names(
            &[jobboard_proto::FILE_DESCRIPTOR_SET],
            &["jobboard.v1.EventFeedService".to_owned()],
        )
        .unwrap();
        let mut names: Vec<_> = names.into_iter().collect();
        names.sort();
        assert_eq!(
            names,
            [
                "jobboard.v1.EventFeedService/ReadAll",
                "jobboard.v1.EventFeedService/ReadStream",
                "jobboard.v1.EventFeedService/Subscribe",
            ]
        );
    }

    #[test]
    fn trailers_only_responses_carry_their_code_in_the_headers() {
        let (parts, ()) = Status::permission_denied("no")
            .into_http::<()>()
            .into_parts();
        let response = Response::from_parts(parts, Body::empty());
        assert_eq!(header_code(&response), Code::PermissionDenied);
        assert_eq!(header_code(&Response::new(Body::empty())), Code::Ok);
    }
}
