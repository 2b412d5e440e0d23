//! A minimal S3 client for the load generator: one keep-alive HTTP/1.1
//! connection (hyper's client connection on tokio), path-style requests,
//! each signed with PhotonCloud's own SigV4 signer
//! (`photon_s3::sigv4::sign_request`, which produces what botocore does).

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use photon_s3::sigv4::{sign_request, Credentials, RequestParts, EMPTY_SHA256_HEX};
use tokio::net::TcpStream;

use super::objects::{ObjectBody, ObjectSet};

/// Bytes of an error reply kept for the message (its S3 `<Code>`).
pub const ERROR_BODY_BYTES_MAX: usize = 4096;

/// Where and as whom to talk S3.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// What the report calls it: `photon`, `garage`, `endpoint`.
    pub name: String,
    pub addr: SocketAddr,
    /// The `Host` header: the URL's authority.
    pub host: String,
    pub access_key: String,
    pub secret_key: String,
    pub region: String,
    pub bucket: String,
}

impl Endpoint {
    /// Resolves an `http://host:port` URL (https is not spoken here).
    pub fn from_url(
        name: &str,
        url: &str,
        access_key: &str,
        secret_key: &str,
        region: &str,
        bucket: &str,
    ) -> anyhow::Result<Self> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => bail!("{url}: only http:// endpoints are supported, not {scheme}"),
            None => url,
        };
        let host = rest.split('/').next().unwrap_or_default().to_owned();
        if host.is_empty() {
            bail!("{url}: no host");
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.clone()
        } else {
            format!("{host}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve {with_port}"))?
            .next()
            .with_context(|| format!("{with_port} resolves to no address"))?;
        Ok(Self {
            name: name.to_owned(),
            addr,
            host,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            region: region.to_owned(),
            bucket: bucket.to_owned(),
        })
    }

    fn object_path(&self, key: &str) -> String {
        format!("/{}/{key}", self.bucket)
    }
}

/// Which payload hash PUTs sign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// The body's real SHA-256 (what the aws CLI sends over http).
    Sha256,
    /// `UNSIGNED-PAYLOAD` (what SDKs send over https).
    Unsigned,
}

/// One keep-alive connection.
pub struct S3Connection {
    sender: SendRequest<ObjectBody>,
    endpoint: Arc<Endpoint>,
}

impl S3Connection {
    /// Connects and runs the connection's driver as a local task.
    pub async fn connect(endpoint: &Arc<Endpoint>) -> Result<Self, String> {
        let stream = TcpStream::connect(endpoint.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", endpoint.addr))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::task::spawn_local(async move {
            let _ = connection.await;
        });
        Ok(Self {
            sender,
            endpoint: endpoint.clone(),
        })
    }

    /// False once the server closed the connection or it failed.
    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }

    /// PUTs object `n` of `set`; returns the bytes sent.
    pub async fn put(&mut self, set: &ObjectSet, n: u64, payload: Payload) -> Result<u64, String> {
        let hash = match payload {
            Payload::Sha256 => set.sha256_hex(n).ok_or("no payload hash for this size")?,
            Payload::Unsigned => photon_s3::sigv4::UNSIGNED_PAYLOAD.to_owned(),
        };
        let path = self.endpoint.object_path(&set.key(n));
        let response = self.send(Method::PUT, &path, set.body(n), &hash).await?;
        expect_ok(response, &path).await?;
        Ok(set.size as u64)
    }

    /// GETs object `n` of `set` and checks the body; returns the bytes received.
    pub async fn get(&mut self, set: &ObjectSet, n: u64, full: bool) -> Result<u64, String> {
        let path = self.endpoint.object_path(&set.key(n));
        let response = self
            .send(Method::GET, &path, ObjectBody::empty(), EMPTY_SHA256_HEX)
            .await?;
        if response.status() != StatusCode::OK {
            return Err(error_of(response, &path).await);
        }
        let length = response
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if length != Some(set.size as u64) {
            return Err(format!(
                "GET {path}: Content-Length {length:?}, wrote {}",
                set.size
            ));
        }
        let mut check = set.checker(n, full);
        let mut body = response.into_body();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("GET {path}: body: {e}"))?;
            if let Some(data) = frame.data_ref() {
                check.feed(data).map_err(|e| format!("GET {path}: {e}"))?;
            }
        }
        check.finish().map_err(|e| format!("GET {path}: {e}"))?;
        Ok(set.size as u64)
    }

    /// HEAD the bucket: Ok(true) when it exists, Ok(false) on 404.
    pub async fn bucket_exists(&mut self) -> Result<bool, BucketError> {
        let path = format!("/{}", self.endpoint.bucket);
        let response = self
            .send(Method::HEAD, &path, ObjectBody::empty(), EMPTY_SHA256_HEX)
            .await
            .map_err(BucketError::Unavailable)?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(BucketError::of(status, error_of(response, &path).await)),
        }
    }

    /// Creates the bucket (CreateBucket without a body: the default region).
    pub async fn create_bucket(&mut self) -> Result<(), BucketError> {
        let path = format!("/{}", self.endpoint.bucket);
        let response = self
            .send(Method::PUT, &path, ObjectBody::empty(), EMPTY_SHA256_HEX)
            .await
            .map_err(BucketError::Unavailable)?;
        let status = response.status();
        expect_ok(response, &path)
            .await
            .map_err(|e| BucketError::of(status, e))
    }

    /// Signs and sends one request; `payload_hash` is the signed
    /// `x-amz-content-sha256`.
    async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: ObjectBody,
        payload_hash: &str,
    ) -> Result<Response<Incoming>, String> {
        let length = body.len().to_string();
        let mut headers: Vec<(&str, &[u8])> = vec![("host", self.endpoint.host.as_bytes())];
        if method == Method::PUT {
            headers.push(("content-length", length.as_bytes()));
        }
        let head = RequestHead {
            method: &method,
            path,
            headers: &headers,
            payload_hash,
        };
        let request = signed_request(&self.endpoint, &head, body, SystemTime::now())?;
        self.sender
            .ready()
            .await
            .map_err(|e| format!("connection lost: {e}"))?;
        self.sender
            .send_request(request)
            .await
            .map_err(|e| format!("{method} {path}: {e}"))
    }
}

/// What is signed of a request besides the time.
struct RequestHead<'a> {
    method: &'a Method,
    path: &'a str,
    /// Every header to send and sign (`host` first).
    headers: &'a [(&'a str, &'a [u8])],
    payload_hash: &'a str,
}

/// Builds a request carrying `head.headers` plus the three that
/// `sign_request` returns (`x-amz-date`, `x-amz-content-sha256`, `authorization`).
fn signed_request(
    endpoint: &Endpoint,
    head: &RequestHead,
    body: ObjectBody,
    time: SystemTime,
) -> Result<Request<ObjectBody>, String> {
    let (method, path) = (head.method, head.path);
    let parts = RequestParts {
        method: method.as_str(),
        path,
        query: "",
        headers: head.headers,
    };
    let credentials = Credentials {
        access_key_id: &endpoint.access_key,
        secret_access_key: endpoint.secret_key.as_bytes(),
    };
    let signed = sign_request(
        &parts,
        &credentials,
        &endpoint.region,
        time,
        head.payload_hash,
    )
    .map_err(|e| format!("cannot sign {method} {path}: {e}"))?;
    let mut request = Request::builder().method(method.clone()).uri(path);
    for (name, value) in head.headers {
        request = request.header(*name, *value);
    }
    for (name, value) in &signed.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    request
        .body(body)
        .map_err(|e| format!("cannot build {method} {path}: {e}"))
}

/// Why the bucket could not be set up.
#[derive(Debug)]
pub enum BucketError {
    /// No answer, or a 5xx: a server still starting may answer later.
    Unavailable(String),
    /// A 4xx: asking again will not help (bad key, no right to create).
    Refused(String),
}

impl BucketError {
    fn of(status: StatusCode, message: String) -> Self {
        if status.is_client_error() {
            Self::Refused(message)
        } else {
            Self::Unavailable(message)
        }
    }
}

/// Drains a reply that must be 200 with an ignorable body.
async fn expect_ok(response: Response<Incoming>, path: &str) -> Result<(), String> {
    if response.status() != StatusCode::OK {
        return Err(error_of(response, path).await);
    }
    response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{path}: body: {e}"))?;
    Ok(())
}

/// The status and S3 error code of a failed reply.
async fn error_of(response: Response<Incoming>, path: &str) -> String {
    let status = response.status();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            let room = ERROR_BODY_BYTES_MAX.saturating_sub(text.len());
            text.extend_from_slice(&data[..data.len().min(room)]);
        }
    }
    let text = String::from_utf8_lossy(&text);
    let code = text
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code.to_owned());
    match code {
        Some(code) => format!("{path}: HTTP {status} {code}"),
        None => format!("{path}: HTTP {status} {}", text.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use photon_s3::sigv4::{parse_auth, system_time, verify, Verified};
    use sha2::{Digest, Sha256};

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    /// 2013-05-24T00:00:00Z, the time of the AWS documentation examples.
    const EXAMPLE_S: u64 = 1_369_353_600;

    /// An endpoint whose `Host` header is `host` (nothing is connected).
    fn endpoint(host: &str) -> Endpoint {
        let mut e = Endpoint::from_url(
            "test",
            "http://127.0.0.1:9000",
            "AKIAIOSFODNN7EXAMPLE",
            SECRET,
            "us-east-1",
            "bucket",
        )
        .unwrap();
        e.host = host.to_owned();
        e
    }

    /// Verifies a built request with the server side of the signer.
    fn verify_request(request: &Request<ObjectBody>) -> Verified {
        let headers: Vec<(&str, &[u8])> = request
            .headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let parts = RequestParts {
            method: request.method().as_str(),
            path: request.uri().path(),
            query: "",
            headers: &headers,
        };
        let auth = parse_auth(&parts).unwrap();
        verify(
            &parts,
            &auth,
            SECRET.as_bytes(),
            system_time(EXAMPLE_S),
            "us-east-1",
        )
        .unwrap()
    }

    #[test]
    fn urls_resolve_with_and_without_port() {
        let e = Endpoint::from_url("t", "http://127.0.0.1:9000/", "a", "b", "r", "k").unwrap();
        assert_eq!(e.addr, SocketAddr::from(([127, 0, 0, 1], 9000)));
        assert_eq!(e.host, "127.0.0.1:9000");
        let e = Endpoint::from_url("t", "127.0.0.1", "a", "b", "r", "k").unwrap();
        assert_eq!(e.addr.port(), 80);
        assert!(Endpoint::from_url("t", "https://127.0.0.1:1", "a", "b", "r", "k").is_err());
    }

    /// The AWS documentation's GET Object example, built the way the load
    /// generator builds every request, carries the documented signature.
    #[test]
    fn requests_carry_the_documented_signature() {
        let e = endpoint("examplebucket.s3.amazonaws.com");
        let headers: Vec<(&str, &[u8])> =
            vec![("host", e.host.as_bytes()), ("range", b"bytes=0-9")];
        let head = RequestHead {
            method: &Method::GET,
            path: "/test.txt",
            headers: &headers,
            payload_hash: EMPTY_SHA256_HEX,
        };
        let request =
            signed_request(&e, &head, ObjectBody::empty(), system_time(EXAMPLE_S)).unwrap();
        assert_eq!(
            request.headers()["authorization"],
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        verify_request(&request);
    }

    /// A PUT with the real payload hash verifies, and the hash it signed is
    /// the body's.
    #[test]
    fn puts_sign_the_body_hash_they_send() {
        let e = endpoint("127.0.0.1:9000");
        let set = ObjectSet::new(4096, 4, true);
        let hash = set.sha256_hex(2).unwrap();
        let headers: Vec<(&str, &[u8])> =
            vec![("host", e.host.as_bytes()), ("content-length", b"4096")];
        let path = e.object_path(&set.key(2));
        let head = RequestHead {
            method: &Method::PUT,
            path: &path,
            headers: &headers,
            payload_hash: &hash,
        };
        let request = signed_request(&e, &head, set.body(2), system_time(EXAMPLE_S)).unwrap();
        assert_eq!(request.uri().path(), "/bucket/bench/4096/0000000002");
        let verified = verify_request(&request);
        let bytes = collect(set.body(2));
        let mut check = set.checker(2, true);
        check.feed(&bytes).unwrap();
        check.finish().unwrap();
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(verified.payload.check_sha256(&digest), Ok(()));
    }

    fn collect(body: ObjectBody) -> Vec<u8> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async move { body.collect().await.unwrap().to_bytes().to_vec() })
    }
}
