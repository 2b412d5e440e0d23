//! One request from head to reply: addressing, authentication,
//! authorization, bucket ownership, then the operation's handler. Every
//! failure becomes an S3 error document here, in one place.

use std::rc::Rc;

use http::request::Parts;
use http::{HeaderMap, Response};
use hyper::body::Incoming;
use photon_core::ShardContext;
use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::sigv4::RequestParts;

use crate::auth::{self, Caller};
use crate::catalog::BucketRecord;
use crate::meta::key_shard;
use crate::request::{self, Operation, Query, Target};
use crate::response::{self, Body};
use crate::service::S3Service;
use crate::shard::{Reply, Request};

/// The state every handler works with.
pub struct Api {
    pub(crate) service: Rc<S3Service>,
    pub(crate) ctx: ShardContext<S3Service>,
}

/// A request after authentication.
pub struct S3Request {
    pub op: Operation,
    pub parts: Parts,
    pub body: Option<Incoming>,
    pub target: Target,
    pub query: Query,
    pub caller: Caller,
    /// How slow the body may arrive (see [`crate::body::BodyPace`]).
    pub pace: crate::body::BodyPace,
}

impl S3Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn headers(&self) -> &HeaderMap {
        &self.parts.headers
    }

    pub fn bucket_name(&self) -> &str {
        self.target.bucket.as_deref().unwrap_or_default()
    }

    pub fn key(&self) -> &str {
        self.target.key.as_deref().unwrap_or_default()
    }

    pub fn take_body(&mut self) -> Result<Incoming, S3Error> {
        self.body
            .take()
            .ok_or_else(|| S3Error::new(S3ErrorCode::InternalError))
    }
}

pub type S3Result = Result<Response<Body>, S3Error>;

pub fn internal(what: impl std::fmt::Display) -> S3Error {
    tracing::error!(error = %what, "internal error");
    S3Error::new(S3ErrorCode::InternalError)
}

impl Api {
    pub fn new(service: Rc<S3Service>, ctx: ShardContext<S3Service>) -> Self {
        Self { service, ctx }
    }

    pub fn limits(&self) -> &crate::config::S3Limits {
        &self.service.params.limits
    }

    pub fn region(&self) -> &str {
        &self.service.params.region
    }

    /// Serves one request; never fails (errors become S3 error replies).
    pub async fn handle(self: Rc<Self>, req: hyper::Request<Incoming>) -> Response<Body> {
        let ids = self.service.ids.next();
        let head = req.method() == http::Method::HEAD;
        let method = req.method().clone();
        let (result, unread_body) = self.dispatch(req).await;
        let mut response = match result {
            Ok(response) => response,
            Err(e) => {
                tracing::debug!(%method, code = %e.code, message = %e.message, request_id = %ids.request_id, "S3 error");
                response::error(&e, &ids, head)
            }
        };
        response::stamp(&mut response, &ids);
        if unread_body {
            response.headers_mut().insert(
                http::header::CONNECTION,
                http::HeaderValue::from_static("close"),
            );
        }
        response
    }

    /// Runs one request; also says whether the connection must close
    /// because a request body was left unread.
    async fn dispatch(&self, req: hyper::Request<Incoming>) -> (S3Result, bool) {
        let (parts, body) = req.into_parts();
        let expects_continue = photon_core::http::expects_continue(&parts.headers);
        // The body the request announced: its Content-Length, none without
        // one, unknown (`None`) for a chunked transfer.
        let announced = match parts.headers.get(http::header::CONTENT_LENGTH) {
            Some(v) => v.to_str().ok().and_then(|v| v.parse::<u64>().ok()),
            None if parts.headers.contains_key(http::header::TRANSFER_ENCODING) => None,
            None => Some(0),
        };
        let pace = crate::body::BodyPace {
            idle_timeout: self.limits().body_idle_timeout,
            rate_min_bytes_per_s: self.limits().body_rate_min_bytes_per_s,
        };
        let (result, unread) = match self.authenticate(&parts) {
            Ok((caller, target, query, op)) => {
                // A valid signature: this connection keeps its place when
                // unauthenticated ones are evicted.
                if let Some(mark) = parts.extensions.get::<photon_core::gate::AuthMark>() {
                    mark.set();
                }
                let mut request = S3Request {
                    op,
                    parts,
                    body: Some(body),
                    target,
                    query,
                    caller,
                    pace,
                };
                let result = self.route(&mut request).await;
                (result, request.body.take())
            }
            Err(e) => (Err(e), Some(body)),
        };
        // A failed request's unread body: a small one is read and dropped so
        // the connection stays usable (polling it makes hyper send the
        // `100 Continue` the client may wait for); a large one is not read,
        // and the reply says the connection closes, so no client reuses it.
        let mut close = false;
        // A client that sent `Expect: 100-continue` waits for our word
        // before sending the body: a refused request must not poll the body
        // (hyper would answer 100 Continue and invite it); it gets the
        // final answer and the connection closes.
        if result.is_err() && expects_continue && unread.is_some() {
            close = true;
        } else if result.is_err() && announced != Some(0) {
            match (unread, announced) {
                (Some(body), Some(n)) if n <= DRAIN_BYTES_MAX as u64 => {
                    // A body that stops short is not waited for.
                    if !drain_small(body, pace.idle_timeout).await {
                        close = true;
                    }
                }
                // Too large to read for nothing, or partly read already.
                _ => close = true,
            }
        }
        (result, close)
    }

    fn authenticate(&self, parts: &Parts) -> Result<(Caller, Target, Query, Operation), S3Error> {
        let headers: Vec<(&str, &[u8])> = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let raw_query = parts.uri.query().unwrap_or("");
        let raw_path = parts.uri.path();
        let request_parts = RequestParts {
            method: parts.method.as_str(),
            path: raw_path,
            query: raw_query,
            headers: &headers,
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.host());
        let target = request::target(host, raw_path, &self.service.params.domains)?;
        let query = Query::parse(raw_query);
        let copy = parts.headers.contains_key("x-amz-copy-source");
        let op = request::operation(&parts.method, &target, &query, copy)?;
        let caller = self.service.auth.authenticate(&request_parts)?;
        if let Some(key) = &target.key {
            check_key(key, self.limits().key_bytes_max)?;
        }
        let resource = match &target.bucket {
            Some(bucket) => auth::resource(bucket, target.key.as_deref()),
            None => "bucket".to_owned(),
        };
        self.service.auth.authorize(&caller, op.name(), &resource)?;
        crate::headers::check(op, &parts.headers)?;
        if let Some(bucket) = &target.bucket {
            self.check_expected_owner(&parts.headers, "x-amz-expected-bucket-owner", bucket)?;
        }
        Ok((caller, target, query, op))
    }

    async fn route(&self, r: &mut S3Request) -> S3Result {
        use Operation::*;
        match r.op {
            ListBuckets => crate::bucket_ops::list_buckets(self, r).await,
            CreateBucket => crate::bucket_ops::create_bucket(self, r).await,
            HeadBucket => crate::bucket_ops::head_bucket(self, r).await,
            DeleteBucket => crate::bucket_ops::delete_bucket(self, r).await,
            GetBucketLocation => crate::bucket_ops::get_bucket_location(self, r).await,
            GetBucketVersioning => crate::bucket_ops::get_bucket_versioning(self, r).await,
            ListObjects | ListObjectsV2 | ListObjectVersions => {
                crate::list_ops::list_objects(self, r).await
            }
            ListMultipartUploads => crate::multipart::list_uploads(self, r).await,
            DeleteObjects => crate::object_ops::delete_objects(self, r).await,
            PutObject => crate::object_ops::put_object(self, r).await,
            CopyObject => crate::object_ops::copy_object(self, r).await,
            GetObject | HeadObject => crate::object_ops::get_object(self, r).await,
            DeleteObject => crate::object_ops::delete_object(self, r).await,
            CreateMultipartUpload => crate::multipart::create(self, r).await,
            UploadPart | UploadPartCopy => crate::multipart::upload_part(self, r).await,
            CompleteMultipartUpload => crate::multipart::complete(self, r).await,
            AbortMultipartUpload => crate::multipart::abort(self, r).await,
            ListParts => crate::multipart::list_parts(self, r).await,
        }
    }

    /// The bucket a request names, if it exists and the caller's project
    /// owns it (the cluster administrator may use every bucket).
    pub fn bucket(&self, caller: &Caller, name: &str) -> Result<Rc<BucketRecord>, S3Error> {
        let record = self
            .service
            .catalog
            .get(name)
            .ok_or_else(|| no_such_bucket(name))?;
        if record.owned_by(caller.tenant(), caller.project()) || caller.identity.cluster_admin {
            Ok(record)
        } else {
            Err(S3Error::with_message(
                S3ErrorCode::AccessDenied,
                "the bucket belongs to another project",
            )
            .with_resource(format!("/{name}")))
        }
    }

    /// `x-amz-expected-bucket-owner` (or the copy source's): the request
    /// fails with AccessDenied unless `bucket` belongs to that owner id (as
    /// listings show it: `tenant/project`). A bucket that does not exist is
    /// left to the handler's NoSuchBucket.
    pub fn check_expected_owner(
        &self,
        headers: &HeaderMap,
        header: &str,
        bucket: &str,
    ) -> Result<(), S3Error> {
        let Some(expected) = headers.get(header) else {
            return Ok(());
        };
        let Some(record) = self.service.catalog.get(bucket) else {
            return Ok(());
        };
        let owner = format!("{}/{}", record.tenant, record.project);
        if expected.as_bytes() == owner.as_bytes() {
            return Ok(());
        }
        Err(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!("the bucket is not owned by the account named in {header}"),
        )
        .with_resource(format!("/{bucket}")))
    }

    /// Calls `shard`'s store.
    pub async fn call(&self, shard: usize, request: Request) -> Result<Reply, S3Error> {
        self.ctx.call(shard, request).await.map_err(|e| {
            tracing::warn!(shard, error = %e, "shard call failed");
            S3Error::new(S3ErrorCode::ServiceUnavailable)
        })
    }

    /// Calls the shard that owns `key` in store namespace `ns`.
    pub async fn call_owner(&self, ns: u64, key: &str, request: Request) -> Result<Reply, S3Error> {
        self.call(key_shard(ns, key, self.ctx.shards()), request)
            .await
    }

    /// Up to `limit` keys of `ns` after `after` with `prefix`, from every
    /// shard, merged in key order.
    pub async fn list_merged(
        &self,
        ns: u64,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, S3Error> {
        let calls = (0..self.ctx.shards()).map(|shard| {
            self.call(
                shard,
                Request::List {
                    ns,
                    prefix: prefix.to_owned(),
                    after: after.map(str::to_owned),
                    limit,
                },
            )
        });
        let replies = futures_util::future::join_all(calls).await;
        let mut merged = Vec::new();
        for reply in replies {
            match reply? {
                Reply::Listed(entries) => merged.extend(entries),
                other => return Err(internal(format!("unexpected reply {other:?}"))),
            }
        }
        merged.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        merged.truncate(limit);
        Ok(merged)
    }
}

/// The disk is full: 507, and the client may retry after space is freed
/// (deletes keep working).
pub fn insufficient_storage() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InsufficientStorage,
        "the storage device is full; delete objects or add space, then retry",
    )
}

pub fn no_such_bucket(name: &str) -> S3Error {
    S3Error::new(S3ErrorCode::NoSuchBucket)
        .with_extra("BucketName", name)
        .with_resource(format!("/{name}"))
}

fn check_key(key: &str, bytes_max: usize) -> Result<(), S3Error> {
    if key.len() > bytes_max {
        return Err(S3Error::with_message(
            S3ErrorCode::KeyTooLongError,
            format!(
                "your key is too long: {} bytes, the limit is {bytes_max}",
                key.len()
            ),
        ));
    }
    if key.contains('\0') {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidArgument,
            "object keys may not contain NUL characters",
        ));
    }
    Ok(())
}

/// Largest unread request body drained after an error.
const DRAIN_BYTES_MAX: usize = 1 << 20;

/// Reads and drops an unread body of at most [`DRAIN_BYTES_MAX`]; false
/// when it stalled for `idle_timeout` (the connection must close).
async fn drain_small(body: Incoming, idle_timeout: std::time::Duration) -> bool {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    while seen <= DRAIN_BYTES_MAX {
        let frame = futures_lite::future::or(async { Some(body.frame().await) }, async {
            glommio::timer::sleep(idle_timeout).await;
            None
        })
        .await;
        match frame {
            None => return false,
            Some(Some(Ok(frame))) => seen += frame.data_ref().map_or(0, |d| d.len()),
            Some(_) => break,
        }
    }
    true
}
