//! Responses: the body type every handler returns, S3 error documents, and
//! the headers every reply carries (request ids).

use std::cell::Cell;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use std::pin::Pin;

use http_body_util::{BodyExt, Empty, Full};
use photon_s3::error::S3Error;

/// Errors a streamed body can end with (the connection is then cut, which
/// is how HTTP/1.1 tells a client a body is incomplete).
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// Every response body: a full buffer or a stream of chunks. Not `Send`:
/// a body is produced on its shard and never leaves it.
pub type Body = Pin<Box<dyn hyper::body::Body<Data = Bytes, Error = BodyError>>>;

/// Boxes a body.
pub fn boxed<B>(body: B) -> Body
where
    B: hyper::body::Body<Data = Bytes, Error = BodyError> + 'static,
{
    Box::pin(body)
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    boxed(Full::new(bytes.into()).map_err(|never| match never {}))
}

pub fn empty() -> Body {
    boxed(Empty::new().map_err(|never| match never {}))
}

/// A response with a body and a status.
pub fn with_status(status: StatusCode, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
}

/// `200 OK` with an XML document.
pub fn xml(document: Vec<u8>) -> Response<Body> {
    let mut response = with_status(StatusCode::OK, full(document));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/xml"),
    );
    response
}

/// An S3 error document with the code's status. HEAD requests get the
/// status alone (S3 sends no body to HEAD).
pub fn error(e: &S3Error, ids: &RequestIds, head: bool) -> Response<Body> {
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::BAD_REQUEST);
    let body = e.to_xml(&ids.request_id, &ids.host_id);
    let mut response = if head || body.is_empty() {
        with_status(status, empty())
    } else {
        let mut r = with_status(status, full(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        r
    };
    if e.code == photon_s3::error::S3ErrorCode::MethodNotAllowed {
        response.headers_mut().insert(
            http::header::ALLOW,
            HeaderValue::from_static("GET, PUT, HEAD, DELETE, POST"),
        );
    }
    response
}

/// `x-amz-request-id` and `x-amz-id-2` of one request.
#[derive(Debug, Clone)]
pub struct RequestIds {
    pub request_id: String,
    pub host_id: String,
}

/// Makes request ids unique per node: shard id, a per-shard counter, and a
/// per-process random prefix (so ids do not repeat across restarts).
#[derive(Debug)]
pub struct RequestIdSource {
    prefix: u32,
    shard: u16,
    next: Cell<u64>,
}

impl RequestIdSource {
    pub fn new(shard: usize) -> Self {
        Self {
            prefix: crate::meta::random_u64() as u32,
            shard: shard as u16,
            next: Cell::new(1),
        }
    }

    pub fn next(&self) -> RequestIds {
        let n = self.next.get();
        self.next.set(n.wrapping_add(1));
        let request_id = format!("{:08X}{:04X}{:012X}", self.prefix, self.shard, n);
        use base64::Engine as _;
        let host_id = base64::engine::general_purpose::STANDARD
            .encode(format!("photon/{}/{}", self.shard, request_id));
        RequestIds {
            request_id,
            host_id,
        }
    }
}

/// Adds the request ids (and the server name) to a response.
pub fn stamp(response: &mut Response<Body>, ids: &RequestIds) {
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ids.request_id) {
        headers.insert("x-amz-request-id", v);
    }
    if let Ok(v) = HeaderValue::from_str(&ids.host_id) {
        headers.insert("x-amz-id-2", v);
    }
    headers.insert(
        http::header::SERVER,
        HeaderValue::from_static("LightningStor"),
    );
}

/// Sets a header from text that may not be a valid header value (user
/// metadata); invalid values are left out rather than failing the reply.
pub fn set_header(response: &mut Response<Body>, name: &str, value: &str) {
    if let (Ok(name), Ok(value)) = (
        http::HeaderName::from_bytes(name.as_bytes()),
        HeaderValue::from_str(value),
    ) {
        response.headers_mut().insert(name, value);
    }
}
