//! The HTTP edge: what every request goes through before and after its route. It
//! gives the request an id (the caller's `X-Request-Id` when it is sane), bounds the
//! body, logs the request, and renders every error, ours or the framework's, as the
//! JSON error body with that id.

use std::sync::LazyLock;
use std::time::Instant;

use poem::{
    Body, Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{HeaderValue, Method, StatusCode, header},
};
use poem_openapi::OperationId;
use tracing::Instrument;
use uuid::Uuid;

use crate::error::ApiError;
use crate::metrics::METRICS;

/// The header carrying the request id both ways.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id of a request, in its extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The edge middleware.
pub struct Edge {
    /// The largest request body accepted, in bytes.
    pub max_body_bytes: usize,
}

impl<E: Endpoint> Middleware<E> for Edge {
    type Output = EdgeEndpoint<E>;

    fn transform(&self, inner: E) -> Self::Output {
        EdgeEndpoint {
            inner,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

/// An endpoint wrapped by [`Edge`].
pub struct EdgeEndpoint<E> {
    /// The routes.
    inner: E,
    /// The largest request body accepted, in bytes.
    max_body_bytes: usize,
}

/// Accepts the caller's request id when it is short, visible ASCII; anything else is
/// replaced, so that logs and headers cannot be polluted through it.
fn request_id_of(request: &Request) -> String {
    request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .filter(|value| {
            !value.is_empty()
                && value.len() <= 128
                && value.bytes().all(|byte| byte.is_ascii_graphic())
        })
        .map_or_else(|| Uuid::new_v4().to_string(), str::to_owned)
}

/// A request body's `Content-Encoding`, as far as the edge decodes it.
enum Encoding {
    /// None, or `identity`.
    Identity,
    /// `gzip`, `deflate`, `br` or `zstd`.
    Compressed(&'static str),
    /// Anything else: refused with 415.
    Unsupported,
}

fn encoding_of(request: &Request) -> Encoding {
    let Some(value) = request.headers().get(header::CONTENT_ENCODING) else {
        return Encoding::Identity;
    };
    match value
        .to_str()
        .map(|value| value.trim().to_ascii_lowercase())
    {
        Ok(value) if value.is_empty() || value == "identity" => Encoding::Identity,
        Ok(value) => ["gzip", "deflate", "br", "zstd"]
            .into_iter()
            .find(|known| *known == value)
            .map_or(Encoding::Unsupported, Encoding::Compressed),
        Err(_) => Encoding::Unsupported,
    }
}

/// Reads at most `limit` bytes of `reader` (one more tells that it had more).
async fn read_at_most(
    reader: impl tokio::io::AsyncRead + Unpin,
    limit: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use tokio::io::AsyncReadExt as _;
    let mut bytes = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    reader.take(cap).read_to_end(&mut bytes).await?;
    Ok((bytes.len() <= limit).then_some(bytes))
}

impl<E: Endpoint> EdgeEndpoint<E> {
    /// Refuses bodies over the limit: by their declared length at once, chunked bodies
    /// by reading at most the limit, and compressed bodies by what they decompress to,
    /// counted while decompressing, so that nothing past the limit is ever held in
    /// memory. A decompressed body goes on without its `Content-Encoding`, so nothing
    /// after the edge decompresses it again.
    async fn bound_body(&self, request: &mut Request) -> Result<(), ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!(
                    "The request body must be at most {} bytes (after decompression)",
                    self.max_body_bytes
                ),
            )
        };
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<usize>().ok());
        if declared.is_some_and(|length| length > self.max_body_bytes) {
            return Err(too_large());
        }
        let encoding = encoding_of(request);
        let limit = self.max_body_bytes;
        let bytes = match encoding {
            Encoding::Unsupported => {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_content_encoding",
                    "Request bodies may be sent as gzip, deflate, br or zstd, or uncompressed",
                ));
            }
            Encoding::Identity if declared.is_some() => return Ok(()),
            Encoding::Identity
                if request.method() == Method::GET || request.method() == Method::HEAD =>
            {
                return Ok(());
            }
            Encoding::Identity => read_at_most(request.take_body().into_async_read(), limit).await,
            Encoding::Compressed(coding) => {
                use async_compression::tokio::bufread::{
                    BrotliDecoder, DeflateDecoder, GzipDecoder, ZstdDecoder,
                };
                let compressed = tokio::io::BufReader::new(request.take_body().into_async_read());
                match coding {
                    "gzip" => read_at_most(GzipDecoder::new(compressed), limit).await,
                    "deflate" => read_at_most(DeflateDecoder::new(compressed), limit).await,
                    "br" => read_at_most(BrotliDecoder::new(compressed), limit).await,
                    _ => read_at_most(ZstdDecoder::new(compressed), limit).await,
                }
            }
        };
        let bytes = match bytes {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Err(too_large()),
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "The request body could not be read or decompressed",
                ));
            }
        };
        let headers = request.headers_mut();
        headers.remove(header::CONTENT_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        request.set_body(Body::from_vec(bytes));
        Ok(())
    }
}

impl<E: Endpoint> Endpoint for EdgeEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut request: Request) -> Result<Self::Output> {
        let request_id = request_id_of(&request);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        // Named and attributed as OpenTelemetry's HTTP server conventions say. The
        // name is fixed when the span starts, so the route is found here rather than
        // taken from the router.
        let route = route_of(request.uri().path());
        let span = tracing::info_span!(
            "request",
            otel.name = %SpanName(request.method(), route),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            request_id = %request_id,
            http.request.method = %request.method(),
            url.path = %request.uri().path(),
            http.route = route,
            http.response.status_code = tracing::field::Empty,
        );
        crate::telemetry::parent_from_headers(&span, request.headers());
        async move {
            let started = Instant::now();
            let checked = match self.bound_body(&mut request).await {
                Ok(()) => conform_body(&mut request, route).await,
                Err(error) => Err(error),
            };
            let outcome = match checked {
                Ok(()) => self
                    .inner
                    .call(request)
                    .await
                    .map(IntoResponse::into_response),
                Err(error) => Err(error.into()),
            };
            let operation = match &outcome {
                Ok(response) => response.data::<OperationId>().map(|id| id.0),
                Err(error) => error.data::<OperationId>().map(|id| id.0),
            }
            .unwrap_or("unmatched");
            let mut response = match outcome {
                Ok(response) => response,
                Err(error) => ApiError::from_poem(error).to_response(&request_id),
            };
            if let Ok(value) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID_HEADER, value);
            }
            // RFC 9110: a 405 says which methods the resource does allow.
            if response.status() == StatusCode::METHOD_NOT_ALLOWED
                && let Some(allow) = route.and_then(allowed_methods)
            {
                response.headers_mut().insert(header::ALLOW, allow);
            }
            let status = response.status().as_u16();
            let span = tracing::Span::current();
            span.record("http.response.status_code", status);
            if status >= 500 {
                span.record("otel.status_code", "ERROR");
            }
            let elapsed = started.elapsed().as_secs_f64();
            METRICS
                .http_requests
                .with_label_values(&[operation, response.status().as_str()])
                .inc();
            METRICS
                .http_duration
                .with_label_values(&[operation])
                .observe(elapsed);
            let elapsed_ms = elapsed * 1000.0;
            if status >= 500 {
                tracing::error!(status, elapsed_ms, "request failed");
            } else {
                tracing::info!(status, elapsed_ms, "request");
            }
            Ok(response)
        }
        .instrument(span)
        .await
    }
}

/// Holds a JSON body to the types its operation's schema declares (see `schema`),
/// passing on the body as rewritten when integers came written as floats.
async fn conform_body(request: &mut Request, route: Option<&str>) -> Result<(), ApiError> {
    let Some(route) = route else {
        return Ok(());
    };
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.to_ascii_lowercase().contains("json"));
    if !is_json || !crate::schema::has_body_schema(request.method(), route) {
        return Ok(());
    }
    // The edge has bounded the body already, so reading it whole is safe.
    let bytes = request.take_body().into_vec().await.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_body",
            "The request body could not be read",
        )
    })?;
    let bytes = crate::schema::check_body(request.method(), route, &bytes)?.unwrap_or(bytes);
    request
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    request.set_body(Body::from_vec(bytes));
    Ok(())
}

/// An API path template as the OpenAPI document writes it (`/v1/rooms/{room_id}`),
/// for naming request spans by route.
struct RouteTemplate {
    /// The template.
    route: &'static str,
    /// Its segments between slashes.
    segments: Vec<&'static str>,
    /// How many of them are literal (not parameters).
    literals: usize,
}

static ROUTES: LazyLock<Vec<RouteTemplate>> = LazyLock::new(|| {
    let paths = crate::api::document::value().get("paths");
    paths
        .and_then(serde_json::Value::as_object)
        .into_iter()
        .flat_map(|paths| paths.keys())
        .map(|route| {
            let segments: Vec<&'static str> = route.split('/').collect();
            let literals = segments
                .iter()
                .filter(|segment| !segment.starts_with('{'))
                .count();
            RouteTemplate {
                route,
                segments,
                literals,
            }
        })
        .collect()
});

/// The methods the document gives a route, as an `Allow` header.
fn allowed_methods(route: &str) -> Option<HeaderValue> {
    let operations = crate::api::document::value()
        .get("paths")?
        .get(route)?
        .as_object()?;
    let methods: Vec<String> = operations
        .keys()
        .map(|method| method.to_ascii_uppercase())
        .collect();
    HeaderValue::from_str(&methods.join(", ")).ok()
}

/// The template of the API route `path` matches: of several, the one with the most
/// literal segments (`/v1/rooms/direct` before `/v1/rooms/{room_id}`). It runs for
/// every request, so it compares segments in place, without allocating.
fn route_of(path: &str) -> Option<&'static str> {
    ROUTES
        .iter()
        .filter(|template| {
            let mut actual = path.split('/');
            let all_match = template.segments.iter().all(|expected| {
                actual.next().is_some_and(|segment| {
                    *expected == segment || (expected.starts_with('{') && !segment.is_empty())
                })
            });
            all_match && actual.next().is_none()
        })
        .max_by_key(|template| template.literals)
        .map(|template| template.route)
}

/// A request span's name: `{method} {route}`, or the method alone off the API.
struct SpanName<'a>(&'a Method, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(route) => write!(formatter, "{} {route}", self.0),
            None => write!(formatter, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn requests_are_named_by_the_most_literal_route_they_match() {
        assert_eq!(route_of("/v1/rooms/direct"), Some("/v1/rooms/direct"));
        assert_eq!(
            route_of("/v1/rooms/01a20072-1280-71e6-9b7d-dcfae2dc3619/messages"),
            Some("/v1/rooms/{room_id}/messages")
        );
        assert_eq!(route_of("/v1/rooms"), Some("/v1/rooms"));
        assert_eq!(route_of("/v1/rooms/"), None, "a parameter is never empty");
        assert_eq!(route_of("/v1/rooms/x/messages/y/z"), None);
        assert_eq!(route_of("/demo"), None);
    }
}
