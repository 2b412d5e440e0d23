//! NightLight's HTTP API on every shard: ingestion (Prometheus remote_write
//! 1.0 and 2.0, Influx line protocol, Prometheus text import) and
//! Prometheus' query API, with its JSON envelopes and error types.

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use photon_core::ShardContext;
use serde_json::{json, Value};

use crate::auth::{Caller, READ_ACTION, WRITE_ACTION};
use crate::params::Form;
use crate::service::NightLightService;

pub type Body = Full<Bytes>;

/// Largest form body of a query request (Prometheus has no limit; ours
/// keeps a query's text in memory).
const QUERY_BODY_BYTES_MAX: usize = 1 << 20;

/// An API failure: HTTP status, Prometheus' `errorType`, message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, kind: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            kind,
            message: message.into(),
        }
    }
    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(400, "bad_data", message)
    }
}

pub type ApiResult = Result<Response<Body>, ApiError>;

pub fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

pub fn success(data: Value) -> ApiResult {
    Ok(json_response(
        StatusCode::OK,
        &json!({"status": "success", "data": data}),
    ))
}

fn error_response(e: &ApiError) -> Response<Body> {
    json_response(
        e.status,
        &json!({"status": "error", "errorType": e.kind, "error": e.message}),
    )
}

pub fn no_content() -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// One shard's API.
pub struct Api {
    pub service: Rc<NightLightService>,
    pub ctx: ShardContext<NightLightService>,
}

impl Api {
    pub async fn handle(self: Rc<Self>, req: hyper::Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let result = self.dispatch(&parts, &path, body).await;
        match result {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(path, status = %e.status, error = %e.message, "nightlight request refused");
                error_response(&e)
            }
        }
    }

    async fn dispatch(
        &self,
        parts: &http::request::Parts,
        path: &str,
        body: Incoming,
    ) -> ApiResult {
        // Health endpoints need no credentials, as in Prometheus.
        match path {
            "/-/healthy" | "/-/ready" => {
                return Ok(photon_core::http::text_response(
                    StatusCode::OK,
                    "NightLight is Healthy.\n",
                ))
            }
            _ => {}
        }
        if path == "/api/v1/status/buildinfo" {
            return success(crate::query_api::buildinfo());
        }
        let caller = self.authenticate(&parts.headers)?;
        if let Some(mark) = parts.extensions.get::<photon_core::gate::AuthMark>() {
            mark.set();
        }
        let ingest = matches!(
            path,
            "/api/v1/write"
                | "/api/v1/push"
                | "/api/v2/write"
                | "/write"
                | "/api/v1/import/prometheus"
        );
        if ingest {
            if parts.method != Method::POST {
                return Err(ApiError::new(405, "bad_data", format!("{path} takes POST")));
            }
            self.service
                .auth
                .authorize(&caller, WRITE_ACTION)
                .map_err(|e| ApiError::new(e.status(), "forbidden", e.to_string()))?;
            let limit = self.service.params.config.write_bytes_max;
            let bytes = self.read_body(body, limit).await?;
            let query = Form::parse(parts.uri.query().unwrap_or(""));
            return crate::ingest::write(self, &caller, path, &parts.headers, &query, bytes).await;
        }
        self.service
            .auth
            .authorize(&caller, READ_ACTION)
            .map_err(|e| ApiError::new(e.status(), "forbidden", e.to_string()))?;
        let mut form = Form::parse(parts.uri.query().unwrap_or(""));
        if parts.method == Method::POST {
            let is_form = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
            let bytes = self.read_body(body, QUERY_BODY_BYTES_MAX).await?;
            if is_form {
                form.extend(Form::parse(&String::from_utf8_lossy(&bytes)));
            }
        } else if parts.method != Method::GET {
            return Err(ApiError::new(
                405,
                "bad_data",
                format!("{path} takes GET or POST"),
            ));
        }
        crate::query_api::route(self, &caller, path, &form).await
    }

    fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, ApiError> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        self.service
            .auth
            .authenticate(authorization)
            .map_err(|e| ApiError::new(e.status(), "unauthorized", e.to_string()))
    }

    /// Reads a whole body up to `limit` bytes, cut when it stalls.
    async fn read_body(&self, mut body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
        let idle = self.service.params.body_idle_timeout;
        let mut out = Vec::new();
        loop {
            let frame = futures_lite::future::or(async { Ok(body.frame().await) }, async {
                glommio::timer::sleep(idle).await;
                Err(ApiError::new(
                    408,
                    "bad_data",
                    format!("no body bytes for {} ms", idle.as_millis()),
                ))
            })
            .await?;
            match frame {
                None => break,
                Some(Err(e)) => {
                    return Err(ApiError::bad_data(format!(
                        "the request body ended early: {e}"
                    )))
                }
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        if out.len() + data.len() > limit {
                            return Err(ApiError::new(
                                413,
                                "bad_data",
                                format!("the request body is over {limit} bytes"),
                            ));
                        }
                        out.extend_from_slice(&data);
                    }
                }
            }
        }
        Ok(Bytes::from(out))
    }

    /// When a query must be done by, from `timeout` (capped by the config).
    pub fn deadline(&self, form: &Form) -> Result<Instant, ApiError> {
        let cap = Duration::from_secs(self.service.params.config.query_timeout_s);
        let timeout = match form.get("timeout") {
            Some(t) => {
                let ms = crate::params::parse_duration("timeout", t).map_err(ApiError::bad_data)?;
                Duration::from_millis(ms.max(1) as u64).min(cap)
            }
            None => cap,
        };
        Ok(Instant::now() + timeout)
    }
}
