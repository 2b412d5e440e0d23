//! Where `image import` and `volume import` read an image from: a local
//! file, an http(s) URL, or an object of PhotonCloud's S3 (LightningStor)
//! named `s3://bucket/key`. A remote source is downloaded into a private
//! temporary file (mode 0600) that is removed when the [`Fetched`] is
//! dropped, whatever happened in between.
//!
//! Downloads go through curl, which streams to the file and brings https,
//! proxies and redirects as users know them (this binary has no TLS stack).
//! S3 GETs are signed here with SigV4 (`photon_s3::sigv4::sign_request`),
//! with the credentials, endpoint and region the aws CLI takes from the
//! environment; the signed headers and URLs reach curl on its stdin, never
//! on its command line, where other users could read them.

use std::fmt;
use std::io::{IsTerminal, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{bail, Context};
use photon_s3::sigv4::{sign_request, uri_encode, Credentials, RequestParts, EMPTY_SHA256_HEX};

use crate::ctl::volume::{qemu_image_info, QemuImageInfo};

/// How long curl may take to connect to a server.
const CONNECT_TIMEOUT_S: u32 = 30;
/// Redirects followed for an http(s) URL (S3 requests follow none).
const REDIRECTS_MAX: u32 = 10;
/// Bytes of an error reply read for the message (S3's `<Code>`).
const ERROR_BODY_BYTES_MAX: u64 = 4096;
/// Names tried for a temporary file before giving up.
const TEMP_NAME_ATTEMPTS_MAX: u32 = 16;
/// The region signed when the environment names none (the one `photon dev`
/// writes into its s3.env).
const REGION_DEFAULT: &str = "us-east-1";
/// What to do when the S3 credentials are missing.
const CREDENTIALS_HINT: &str = "set AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL \
     (and AWS_DEFAULT_REGION) as for the aws CLI; `photon dev` writes its administrator's into \
     DATA_DIR/s3.env: `set -a; . photon-data/s3.env; set +a`";

/// Where an image (or a kernel, or an initrd) comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
    /// An object of PhotonCloud's S3.
    S3 {
        bucket: String,
        key: String,
    },
}

impl Source {
    /// Parses a file path, an `http(s)://` URL or `s3://bucket/key`; any
    /// other scheme is refused (for clap, before anything is made).
    pub fn parse(text: &str) -> Result<Self, String> {
        let Some((scheme, rest)) = text.split_once("://").filter(|(s, _)| is_scheme(s)) else {
            if text.is_empty() {
                return Err("give a file, an http(s):// URL or s3://bucket/key".into());
            }
            return Ok(Self::File(text.into()));
        };
        if text.chars().any(char::is_control) {
            return Err(format!("{text:?} holds control characters"));
        }
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
                    return Err(format!("{text}: the URL names no host"));
                }
                Ok(Self::Url(text.to_owned()))
            }
            "s3" => match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => Ok(Self::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                }),
                _ => Err(format!("{text}: an S3 source is s3://BUCKET/KEY")),
            },
            _ => Err(format!(
                "{text}: unknown scheme {scheme}://; give a file, an http(s):// URL or s3://bucket/key"
            )),
        }
    }

    /// Like [`Source::parse`], but only a URL (`--from-url`).
    pub fn parse_remote(text: &str) -> Result<Self, String> {
        match Self::parse(text)? {
            Self::File(_) => Err(format!(
                "{text} is not a URL: give an http(s):// URL or s3://bucket/key"
            )),
            remote => Ok(remote),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Url(url) => f.write_str(url),
            Self::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// RFC 3986: `ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`. Anything else
/// before `://` is part of a file name.
fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A source as a local file: the file itself, or a download that is
/// removed when this is dropped.
#[derive(Debug)]
pub struct Fetched {
    path: PathBuf,
    /// The source, for messages.
    label: String,
    downloaded: bool,
}

impl Fetched {
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// An empty private file, `$TMPDIR/photon-fetch-PID-N` (mode 0600,
    /// created exclusively, so never someone else's file or link).
    fn temporary(label: String) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        for attempt in 0..TEMP_NAME_ATTEMPTS_MAX {
            let path = dir.join(format!(
                "photon-fetch-{}-{nanos:x}-{attempt}",
                std::process::id()
            ));
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
            {
                Ok(_) => {
                    return Ok(Self {
                        path,
                        label,
                        downloaded: true,
                    })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot create a temporary file in {}", dir.display())
                    })
                }
            }
        }
        bail!(
            "cannot create a temporary file in {}: {TEMP_NAME_ATTEMPTS_MAX} names taken",
            dir.display()
        )
    }
}

impl Drop for Fetched {
    fn drop(&mut self) {
        if self.downloaded {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The source as a local file: a file as it is, a URL or an S3 object
/// downloaded.
pub fn fetch(source: &Source) -> anyhow::Result<Fetched> {
    match source {
        Source::File(path) => Ok(Fetched {
            path: path.clone(),
            label: source.to_string(),
            downloaded: false,
        }),
        Source::Url(url) => {
            let fetched = Fetched::temporary(source.to_string())?;
            eprintln!("downloading {url}");
            let config = format!("url = {}\n", curl_quote(url));
            let status = curl(
                &config,
                &fetched,
                &["--location", "--max-redirs"],
                REDIRECTS_MAX,
            )?;
            if !(200..300).contains(&status) {
                // A presigned S3 URL answers with an S3 error.
                let body = read_prefix(fetched.path());
                bail!("cannot download {url}: {}", s3_error_text(status, &body));
            }
            Ok(fetched)
        }
        Source::S3 { bucket, key } => {
            let s3 = S3Config::from_env(|name| std::env::var(name).ok())
                .with_context(|| format!("cannot fetch {source}"))?;
            let config = s3.signed_get(bucket, key, SystemTime::now())?;
            let fetched = Fetched::temporary(source.to_string())?;
            eprintln!("downloading {source} from {}", s3.endpoint);
            let status = curl(&config, &fetched, &["--path-as-is", "--max-redirs"], 0)?;
            if !(200..300).contains(&status) {
                let body = read_prefix(fetched.path());
                bail!(
                    "cannot fetch {source} from {}: {}",
                    s3.endpoint,
                    s3_error_text(status, &body)
                );
            }
            Ok(fetched)
        }
    }
}

/// qemu-img's view of a fetched image. A downloaded image may not name
/// other files (a backing file, a qcow2 external data file): qemu-img would
/// read them from this machine into the volume.
pub fn image_info(fetched: &Fetched, format: Option<&str>) -> anyhow::Result<QemuImageInfo> {
    let info = qemu_image_info(fetched.path(), format)
        .with_context(|| format!("{} is not a disk image qemu-img reads", fetched.label()))?;
    if fetched.downloaded {
        if let Some(file) = info.external_file() {
            bail!(
                "{} names another file ({file}, a backing or data file): a downloaded image must stand alone",
                fetched.label()
            );
        }
    }
    Ok(info)
}

/// Runs curl with `config` on its stdin (the URL and headers), the body
/// into `target`; `options` end with one taking `number`. Returns the HTTP
/// status of the last response.
fn curl(config: &str, target: &Fetched, options: &[&str], number: u32) -> anyhow::Result<u16> {
    // A bar on a terminal; otherwise quiet, with curl's error captured.
    let progress = std::io::stderr().is_terminal();
    let mut command = Command::new("curl");
    command
        .arg(if progress {
            "--progress-bar"
        } else {
            "--silent"
        })
        .args(["--show-error", "--globoff", "--proto", "=http,https"])
        .args(["--proto-redir", "=http,https", "--connect-timeout"])
        .arg(CONNECT_TIMEOUT_S.to_string())
        .args(options)
        .arg(number.to_string())
        .args(["--write-out", "%{http_code}", "--config", "-", "--output"])
        .arg(target.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(if progress {
            Stdio::inherit()
        } else {
            Stdio::piped()
        });
    let mut child = command
        .spawn()
        .context("cannot run curl (apt-get install curl)")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(config.as_bytes())
            .context("cannot pass the request to curl")?;
    }
    let out = child.wait_with_output().context("curl did not finish")?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "cannot download {}: {}",
            target.label(),
            match stderr.trim() {
                "" => format!("curl failed ({})", out.status),
                text => text.to_owned(),
            }
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0))
}

/// A value in curl's config syntax: double-quoted, `\` and `"` escaped.
/// Control characters never get here ([`Source::parse`] refuses them).
fn curl_quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}

/// The first bytes of a file (an error reply), as text.
fn read_prefix(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(file) = std::fs::File::open(path) {
        let _ = file.take(ERROR_BODY_BYTES_MAX).read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

/// `NoSuchKey (HTTP 404): The specified key does not exist.` from an S3
/// error reply; `HTTP 404` when the body is no S3 error.
fn s3_error_text(status: u16, body: &str) -> String {
    let element = |name: &str| {
        let (_, rest) = body.split_once(&format!("<{name}>"))?;
        let (value, _) = rest.split_once(&format!("</{name}>"))?;
        Some(value.trim().to_owned())
    };
    match (element("Code"), element("Message")) {
        (Some(code), Some(message)) if !message.is_empty() => {
            format!("{code} (HTTP {status}): {message}")
        }
        (Some(code), _) => format!("{code} (HTTP {status})"),
        (None, _) => format!("HTTP {status}"),
    }
}

/// Where and as whom to GET from S3, as the aws CLI finds it.
#[derive(Debug)]
struct S3Config {
    /// `http(s)://host[:port]`, no trailing slash.
    endpoint: String,
    /// `host[:port]`: the signed Host header.
    authority: String,
    region: String,
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl S3Config {
    /// From `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
    /// `AWS_SESSION_TOKEN` (optional), `AWS_ENDPOINT_URL_S3` or else
    /// `AWS_ENDPOINT_URL`, `AWS_REGION` or else `AWS_DEFAULT_REGION`.
    fn from_env(var: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let endpoint = var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL"));
        let (id, secret) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY"));
        let missing: Vec<&str> = [
            ("AWS_ACCESS_KEY_ID", id.is_none()),
            ("AWS_SECRET_ACCESS_KEY", secret.is_none()),
            ("AWS_ENDPOINT_URL", endpoint.is_none()),
        ]
        .into_iter()
        .filter_map(|(name, absent)| absent.then_some(name))
        .collect();
        let (Some(id), Some(secret), Some(endpoint)) = (id, secret, endpoint) else {
            bail!(
                "no {} in the environment: {CREDENTIALS_HINT}",
                missing.join(", ")
            );
        };
        let endpoint = endpoint.trim().trim_end_matches('/').to_owned();
        let authority = match endpoint.split_once("://") {
            Some(("http" | "https", rest)) => rest,
            _ => bail!("the S3 endpoint {endpoint} is not an http:// or https:// URL"),
        };
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            bail!("the S3 endpoint {endpoint} must be http(s)://HOST[:PORT] alone");
        }
        let authority = authority.to_owned();
        Ok(Self {
            endpoint,
            authority,
            region: var("AWS_REGION")
                .or_else(|| var("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| REGION_DEFAULT.to_owned()),
            access_key_id: id,
            secret_access_key: secret,
            session_token: var("AWS_SESSION_TOKEN"),
        })
    }

    /// curl's config for a path-style GET of `bucket/key`, signed at `time`.
    fn signed_get(&self, bucket: &str, key: &str, time: SystemTime) -> anyhow::Result<String> {
        let path = format!(
            "/{}/{}",
            uri_encode(bucket.as_bytes(), true),
            uri_encode(key.as_bytes(), false)
        );
        let mut headers: Vec<(&str, &[u8])> = vec![("host", self.authority.as_bytes())];
        if let Some(token) = &self.session_token {
            headers.push(("x-amz-security-token", token.as_bytes()));
        }
        let request = RequestParts {
            method: "GET",
            path: &path,
            query: "",
            headers: &headers,
        };
        let credentials = Credentials {
            access_key_id: &self.access_key_id,
            secret_access_key: self.secret_access_key.as_bytes(),
        };
        let signed = sign_request(&request, &credentials, &self.region, time, EMPTY_SHA256_HEX)
            .with_context(|| format!("cannot sign the GET of s3://{bucket}/{key}"))?;
        let mut config = format!(
            "url = {}\n",
            curl_quote(&format!("{}{path}", self.endpoint))
        );
        let all = headers.iter().map(|(name, value)| {
            (
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            )
        });
        for (name, value) in all.chain(signed.headers) {
            if value.chars().any(char::is_control) {
                bail!("the S3 header {name} holds control characters");
            }
            config.push_str(&format!(
                "header = {}\n",
                curl_quote(&format!("{name}: {value}"))
            ));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_by_scheme() {
        let s3 = |bucket: &str, key: &str| Source::S3 {
            bucket: bucket.into(),
            key: key.into(),
        };
        assert_eq!(
            Source::parse("disk.raw"),
            Ok(Source::File("disk.raw".into()))
        );
        assert_eq!(Source::parse("./a://b"), Ok(Source::File("./a://b".into())));
        assert_eq!(
            Source::parse("https://example.com/d.qcow2?x=1"),
            Ok(Source::Url("https://example.com/d.qcow2?x=1".into()))
        );
        assert_eq!(Source::parse("s3://b/dir/d.raw"), Ok(s3("b", "dir/d.raw")));
        assert_eq!(
            Source::parse("s3://b/d.raw").unwrap().to_string(),
            "s3://b/d.raw"
        );
        for bad in ["", "s3://b", "s3://b/", "s3:///k", "http://", "http:///x"] {
            assert!(Source::parse(bad).is_err(), "{bad}");
        }
        let ftp = Source::parse("ftp://host/d.raw").unwrap_err();
        assert!(ftp.contains("unknown scheme ftp://"), "{ftp}");
        assert!(Source::parse("http://h/a\nb").is_err());
        assert!(Source::parse_remote("disk.raw").is_err());
        assert!(Source::parse_remote("s3://b/k").is_ok());
    }

    #[test]
    fn s3_config_comes_from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let missing = S3Config::from_env(env(&[("AWS_ACCESS_KEY_ID", "id")])).unwrap_err();
        let text = missing.to_string();
        assert!(
            text.contains("no AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL") && text.contains("s3.env"),
            "{text}"
        );
        let config = S3Config::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:9000/"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9001"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ]))
        .unwrap();
        assert_eq!(config.endpoint, "http://127.0.0.1:9001");
        assert_eq!(config.authority, "127.0.0.1:9001");
        assert_eq!(config.region, "eu-west-1");
        assert!(S3Config::from_env(env(&[
            ("AWS_ACCESS_KEY_ID", "id"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_ENDPOINT_URL", "ftp://h"),
        ]))
        .is_err());
    }

    #[test]
    fn signed_gets_verify_with_the_servers_verifier() {
        use photon_s3::sigv4::{parse_auth, system_time, verify};
        let config = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            authority: "127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            access_key_id: "AKID".into(),
            secret_access_key: "secret".into(),
            session_token: None,
        };
        let time = system_time(1_800_000_000);
        let text = config.signed_get("images", "dir/a b+c.raw", time).unwrap();
        let mut lines = text.lines();
        assert_eq!(
            lines.next(),
            Some("url = \"http://127.0.0.1:9000/images/dir/a%20b%2Bc.raw\"")
        );
        let headers: Vec<(String, String)> = lines
            .map(|l| {
                let value = l
                    .strip_prefix("header = \"")
                    .unwrap()
                    .strip_suffix('"')
                    .unwrap();
                let (name, value) = value.split_once(": ").unwrap();
                (name.to_owned(), value.to_owned())
            })
            .collect();
        let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "host",
                "x-amz-date",
                "x-amz-content-sha256",
                "authorization"
            ]
        );
        let parts: Vec<(&str, &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_bytes()))
            .collect();
        let request = RequestParts {
            method: "GET",
            path: "/images/dir/a%20b%2Bc.raw",
            query: "",
            headers: &parts,
        };
        let auth = parse_auth(&request).unwrap();
        verify(&request, &auth, b"secret", time, "us-east-1").unwrap();
    }

    #[test]
    fn s3_errors_name_their_code() {
        let body = "<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>\
                    <Message>The specified key does not exist.</Message></Error>";
        assert_eq!(
            s3_error_text(404, body),
            "NoSuchKey (HTTP 404): The specified key does not exist."
        );
        assert_eq!(s3_error_text(502, "<html>bad gateway</html>"), "HTTP 502");
        assert_eq!(curl_quote("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn temporary_files_are_private_and_removed() {
        use std::os::unix::fs::PermissionsExt;
        let fetched = Fetched::temporary("test".into()).unwrap();
        let path = fetched.path().to_owned();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        drop(fetched);
        assert!(!path.exists());
    }
}
