use super::*;
use proptest::prelude::*;

const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2013-05-24T00:00:00Z, the time of every AWS documentation example.
const EXAMPLE_S: u64 = 1_369_353_600;

/// An owned request, lent out as [`RequestParts`].
#[derive(Clone, Debug)]
struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
}

impl Request {
    fn new(method: &str, path: &str, query: &str, headers: &[(&str, &str)]) -> Self {
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&RequestParts) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_slice()))
            .collect();
        f(&RequestParts {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            headers: &headers,
        })
    }

    fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    fn without(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn set(self, name: &str, value: &str) -> Self {
        self.without(name).header(name, value)
    }

    fn verify_at(&self, secret: &[u8], now_s: u64, region: &str) -> Result<Verified, SigV4Error> {
        self.with(|r| verify(r, &parse_auth(r)?, secret, system_time(now_s), region))
    }

    fn canonical(&self, signed: &[&str], payload: &str, presigned: bool) -> String {
        let signed: Vec<String> = signed.iter().map(|s| (*s).to_owned()).collect();
        let bytes = self
            .with(|r| canonical_request(r, &signed, payload, presigned))
            .unwrap();
        String::from_utf8(bytes).unwrap()
    }

    /// Signs with [`sign_request`] and adds the headers it returns.
    fn signed(self, region: &str, at_s: u64, content: &str) -> (Self, SignedRequest) {
        let credentials = Credentials {
            access_key_id: AKID,
            secret_access_key: SECRET,
        };
        let signed = self
            .with(|r| sign_request(r, &credentials, region, system_time(at_s), content))
            .unwrap();
        let mut out = self;
        for (name, value) in &signed.headers {
            out = out.set(name, value);
        }
        (out, signed)
    }
}

fn signature_of(verified: &Verified) -> String {
    hex::encode(verified.seed_signature)
}

fn doc_authorization(signed_headers: &str, signature: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws4_request,SignedHeaders={signed_headers},Signature={signature}"
    )
}

// ------------------------------------------- AWS documentation vectors

fn doc_get_object() -> Request {
    Request::new(
        "GET",
        "/test.txt",
        "",
        &[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256_HEX),
            ("x-amz-date", "20130524T000000Z"),
        ],
    )
}

#[test]
fn doc_get_object_canonical_request_and_signature() {
    let signature = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    let request = doc_get_object();
    let canonical = request.canonical(
        &["host", "range", "x-amz-content-sha256", "x-amz-date"],
        EMPTY_SHA256_HEX,
        false,
    );
    assert_eq!(
        canonical,
        "GET\n/test.txt\n\nhost:examplebucket.s3.amazonaws.com\nrange:bytes=0-9\n\
         x-amz-content-sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n\
         x-amz-date:20130524T000000Z\n\nhost;range;x-amz-content-sha256;x-amz-date\n\
         e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert_eq!(
        hex::encode(Sha256::digest(canonical.as_bytes())),
        "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
    );
    let request = request.header(
        "Authorization",
        &doc_authorization("host;range;x-amz-content-sha256;x-amz-date", signature),
    );
    let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
    assert_eq!(signature_of(&verified), signature);
    assert_eq!(verified.access_key_id, AKID);
    assert_eq!(verified.scope, "20130524/us-east-1/s3/aws4_request");
    assert_eq!(verified.payload, PayloadMode::Sha256(EMPTY_SHA256));
    assert_eq!(
        verified.payload.check_sha256(&Sha256::digest(b"").into()),
        Ok(())
    );
}

#[test]
fn sign_request_reproduces_the_doc_get_object_signature() {
    let request = doc_get_object()
        .without("x-amz-date")
        .without("x-amz-content-sha256");
    let (signed_request, signed) = request.signed("us-east-1", EXAMPLE_S, EMPTY_SHA256_HEX);
    assert_eq!(
        signed.headers[2].1,
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
         SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
         Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
    );
    assert!(signed_request
        .verify_at(SECRET, EXAMPLE_S, "us-east-1")
        .is_ok());
}

#[test]
fn doc_put_object_with_date_header_and_escaped_key() {
    let body = b"Welcome to Amazon S3.";
    let content = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
    assert_eq!(hex::encode(Sha256::digest(body)), content);
    let request = Request::new(
        "PUT",
        "/test%24file.text",
        "",
        &[
            ("Host", "examplebucket.s3.amazonaws.com"),
            ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", content),
        ],
    );
    let signed = "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class";
    let signature = "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd";
    let request = request.header("Authorization", &doc_authorization(signed, signature));
    let verified = request
        .verify_at(SECRET, EXAMPLE_S + 60, "us-east-1")
        .unwrap();
    assert_eq!(signature_of(&verified), signature);
    assert_eq!(
        verified.payload.check_sha256(&Sha256::digest(body).into()),
        Ok(())
    );
    assert_eq!(
        verified
            .payload
            .check_sha256(&Sha256::digest(b"Welcome to Amazon S3!").into()),
        Err(SigV4Error::ContentSha256Mismatch)
    );
    assert_eq!(
        SigV4Error::ContentSha256Mismatch.s3_code(),
        "XAmzContentSHA256Mismatch"
    );
}

#[test]
fn doc_get_bucket_lifecycle_and_list_objects() {
    let signed = "host;x-amz-content-sha256;x-amz-date";
    for (query, signature) in [
        (
            "lifecycle",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
        ),
        (
            "max-keys=2&prefix=J",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
        (
            "prefix=J&max-keys=2",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
        ),
    ] {
        let request = Request::new(
            "GET",
            "/",
            query,
            &[
                ("host", "examplebucket.s3.amazonaws.com"),
                ("x-amz-date", "20130524T000000Z"),
                ("x-amz-content-sha256", EMPTY_SHA256_HEX),
                ("authorization", &doc_authorization(signed, signature)),
            ],
        );
        let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
        assert_eq!(signature_of(&verified), signature, "{query}");
    }
}

const DOC_PRESIGNED_QUERY: &str = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
    &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
    &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
    &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404";

#[test]
fn doc_presigned_get_object() {
    let request = Request::new(
        "GET",
        "/test.txt",
        DOC_PRESIGNED_QUERY,
        &[("Host", "examplebucket.s3.amazonaws.com")],
    );
    let auth = request.with(parse_auth).unwrap();
    assert_eq!(auth.access_key_id(), Some(AKID));
    let Auth::Presigned(parsed) = &auth else {
        panic!("not presigned: {auth:?}")
    };
    assert_eq!(parsed.expires_s, 86_400);
    let verified = request
        .verify_at(SECRET, EXAMPLE_S + 86_400, "us-east-1")
        .unwrap();
    assert_eq!(verified.payload, PayloadMode::Unsigned);
    assert_eq!(
        signature_of(&verified),
        "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
    );
    assert_eq!(
        request
            .verify_at(SECRET, EXAMPLE_S + 86_401, "us-east-1")
            .unwrap_err(),
        SigV4Error::Expired
    );
    assert_eq!(SigV4Error::Expired.s3_code(), "AccessDenied");
    assert_eq!(
        request
            .verify_at(SECRET, EXAMPLE_S - CLOCK_SKEW_MAX_S - 1, "us-east-1")
            .unwrap_err(),
        SigV4Error::NotYetValid
    );
    // presign() writes the documented URL byte for byte.
    let credentials = Credentials {
        access_key_id: AKID,
        secret_access_key: SECRET,
    };
    let unsigned = Request::new(
        "GET",
        "/test.txt",
        "",
        &[("Host", "examplebucket.s3.amazonaws.com")],
    );
    let query = unsigned
        .with(|r| presign(r, &credentials, "us-east-1", system_time(EXAMPLE_S), 86_400))
        .unwrap();
    assert_eq!(query, DOC_PRESIGNED_QUERY);
}

const DOC_SEED: &str = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9";
const DOC_CHUNK_SIGNATURES: [&str; 3] = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
];

fn doc_chunked_request() -> Request {
    Request::new(
        "PUT",
        "/examplebucket/chunkObject.txt",
        "",
        &[
            ("Host", "s3.amazonaws.com"),
            ("x-amz-date", "20130524T000000Z"),
            ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ("x-amz-content-sha256", STREAMING_PAYLOAD),
            ("Content-Encoding", "aws-chunked"),
            ("x-amz-decoded-content-length", "66560"),
            ("Content-Length", "66824"),
        ],
    )
}

fn doc_chunked_body() -> Vec<u8> {
    let mut body = Vec::new();
    for (size, signature) in [(65_536usize, 0), (1024, 1), (0, 2)] {
        body.extend_from_slice(
            format!(
                "{size:x};chunk-signature={}\r\n",
                DOC_CHUNK_SIGNATURES[signature]
            )
            .as_bytes(),
        );
        body.extend(std::iter::repeat_n(b'a', size));
        body.extend_from_slice(b"\r\n");
    }
    body
}

fn doc_chunked_verified() -> Verified {
    let signed = "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;\
                  x-amz-decoded-content-length;x-amz-storage-class";
    let request =
        doc_chunked_request().header("Authorization", &doc_authorization(signed, DOC_SEED));
    request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap()
}

#[test]
fn doc_chunked_upload_seed_and_chunk_signatures() {
    let verified = doc_chunked_verified();
    assert_eq!(signature_of(&verified), DOC_SEED);
    assert_eq!(
        verified.payload,
        PayloadMode::StreamingSigned {
            decoded_length: Some(66_560)
        }
    );
    let mut verifier = ChunkVerifier::new(&verified);
    assert_eq!(
        verifier.verify_chunk(DOC_CHUNK_SIGNATURES[0], &[b'a'; 65_536]),
        Ok(())
    );
    assert_eq!(
        verifier.verify_chunk(DOC_CHUNK_SIGNATURES[1], &[b'a'; 1024]),
        Ok(())
    );
    let mut replay = verifier.clone();
    assert_eq!(verifier.verify_chunk(DOC_CHUNK_SIGNATURES[2], &[]), Ok(()));
    // Chaining: a signature is good only in its place.
    assert_eq!(
        replay.verify_chunk(DOC_CHUNK_SIGNATURES[1], &[]),
        Err(SigV4Error::ChunkSignatureMismatch)
    );

    let body = doc_chunked_body();
    assert_eq!(body.len() as u64, encoded_chunked_length(66_560, 65_536));
    assert_eq!(body.len(), 66_824);
    let (data, events) = decode_in_pieces(&verified, &body, &[7, 86, 90, 65_536, 3]).unwrap();
    assert_eq!(data, vec![b'a'; 66_560]);
    assert_eq!(events.last(), Some(&ChunkEvent::End));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, ChunkEvent::ChunkVerified { .. }))
            .count(),
        3
    );
}

#[test]
fn sign_request_and_chunk_signer_reproduce_the_doc_chunked_upload() {
    let request = doc_chunked_request()
        .without("x-amz-date")
        .without("x-amz-content-sha256");
    let (request, signed) = request.signed("us-east-1", EXAMPLE_S, STREAMING_PAYLOAD);
    assert_eq!(hex::encode(signed.signature), DOC_SEED);
    let body = signed.chunk_signer().encode_body(&[b'a'; 66_560], 65_536);
    assert_eq!(body, doc_chunked_body());
    let verified = request.verify_at(SECRET, EXAMPLE_S, "us-east-1").unwrap();
    assert_eq!(
        decode_in_pieces(&verified, &body, &[1]).unwrap().0.len(),
        66_560
    );
}

// ---------------------------------------------------- canonicalization

#[test]
fn canonical_path_is_decoded_once_and_reencoded() {
    let cases = [
        ("", "/"),
        ("/", "/"),
        ("/bucket/a%20b", "/bucket/a%20b"),
        ("/bucket/a b", "/bucket/a%20b"),
        ("/b/a+b", "/b/a%2Bb"),
        ("/b/a%2Bb", "/b/a%2Bb"),
        ("/b/a~b", "/b/a~b"),
        ("/b/a%7Eb", "/b/a~b"),
        ("/b/a=b&c", "/b/a%3Db%26c"),
        ("/b/%d0%ba%D0%BB%D1%8E%D1%87", "/b/%D0%BA%D0%BB%D1%8E%D1%87"),
        ("/b/ключ", "/b/%D0%BA%D0%BB%D1%8E%D1%87"),
        ("/b/日本 😀", "/b/%E6%97%A5%E6%9C%AC%20%F0%9F%98%80"),
        ("/b/a%2Fb", "/b/a%2Fb"),
        ("/b//a/../c/./", "/b//a/../c/./"),
        ("/b/100%", "/b/100%25"),
        ("/b/%zz%4", "/b/%25zz%254"),
        ("/b/test$file.text", "/b/test%24file.text"),
    ];
    for (raw, expected) in cases {
        let canonical =
            Request::new("GET", raw, "", &[("host", "h")]).canonical(&["host"], "x", false);
        assert_eq!(canonical.lines().nth(1), Some(expected), "{raw:?}");
    }
}

#[test]
fn canonical_query_is_decoded_reencoded_and_sorted() {
    let cases = [
        ("", ""),
        ("uploads", "uploads="),
        ("acl=", "acl="),
        ("b=2&a=1&a=0", "a=0&a=1&b=2"),
        (
            "list-type=2&prefix=a b&delimiter=/",
            "delimiter=%2F&list-type=2&prefix=a%20b",
        ),
        ("prefix=a+b", "prefix=a%20b"),
        ("prefix=a%2Bb", "prefix=a%2Bb"),
        ("prefix=a%2bb", "prefix=a%2Bb"),
        ("x=%7e&y=~&z=a%3Db", "x=~&y=~&z=a%3Db"),
        ("a=1&&b=&", "a=1&b="),
        ("k=%E2%9C%93&k=%zz", "k=%25zz&k=%E2%9C%93"),
        ("a%20b=c", "a%20b=c"),
    ];
    for (raw, expected) in cases {
        let canonical =
            Request::new("GET", "/", raw, &[("host", "h")]).canonical(&["host"], "x", false);
        assert_eq!(canonical.lines().nth(2), Some(expected), "{raw:?}");
    }
    // A presigned request's canonical query leaves its signature out.
    let canonical = Request::new("GET", "/", "a=1&X-Amz-Signature=00", &[("host", "h")]).canonical(
        &["host"],
        "x",
        true,
    );
    assert_eq!(canonical.lines().nth(2), Some("a=1"));
}

#[test]
fn canonical_headers_fold_whitespace_and_join_repeats() {
    let request = Request::new(
        "PUT",
        "/",
        "",
        &[
            ("Host", "h"),
            ("X-Amz-Meta-Note", "  hello    big \t world  "),
            ("x-amz-meta-dup", "one"),
            ("X-AMZ-META-DUP", " two  three "),
            ("x-amz-meta-empty", ""),
        ],
    );
    let canonical = request.canonical(
        &[
            "host",
            "x-amz-meta-dup",
            "x-amz-meta-empty",
            "x-amz-meta-note",
        ],
        UNSIGNED_PAYLOAD,
        false,
    );
    assert_eq!(
        canonical,
        "PUT\n/\n\nhost:h\nx-amz-meta-dup:one,two three\nx-amz-meta-empty:\n\
         x-amz-meta-note:hello big world\n\nhost;x-amz-meta-dup;x-amz-meta-empty;x-amz-meta-note\n\
         UNSIGNED-PAYLOAD"
    );
    let missing =
        request.with(|r| canonical_request(r, &["host".into(), "range".into()], "x", false));
    assert_eq!(
        missing,
        Err(SigV4Error::MissingSignedHeader("range".into()))
    );
}

#[test]
fn uri_encode_follows_the_aws_rule() {
    assert_eq!(uri_encode(b"a b/c+d~e=f", false), "a%20b/c%2Bd~e%3Df");
    assert_eq!(uri_encode(b"a b/c+d~e=f", true), "a%20b%2Fc%2Bd~e%3Df");
    assert_eq!(uri_encode(b"AZaz09-._~", true), "AZaz09-._~");
    assert_eq!(uri_encode(&[0, 0xff], true), "%00%FF");
}

#[test]
fn amz_dates_parse_format_and_reject_nonsense() {
    assert_eq!(parse_amz_date("20130524T000000Z"), Some(EXAMPLE_S));
    assert_eq!(format_amz_date(EXAMPLE_S), "20130524T000000Z");
    assert_eq!(
        parse_amz_date("20000229T235959Z")
            .map(format_amz_date)
            .as_deref(),
        Some("20000229T235959Z")
    );
    assert_eq!(
        parse_iso8601_seconds("2013-05-24T00:00:00Z"),
        Some(EXAMPLE_S)
    );
    assert_eq!(
        parse_iso8601_seconds("2013-05-24T00:00:00.999Z"),
        Some(EXAMPLE_S)
    );
    for bad in [
        "2013-05-24T00:00:00",
        "2013-05-24T00:00:00.Z",
        "2013-05-24 00:00:00Z",
    ] {
        assert_eq!(parse_iso8601_seconds(bad), None, "{bad}");
    }
    for bad in [
        "20130231T000000Z",
        "20130524T240000Z",
        "20130524 000000Z",
        "2013052T000000Z",
        "19690101T000000Z",
        "2013O524T000000Z",
        "",
    ] {
        assert_eq!(parse_amz_date(bad), None, "{bad}");
    }
    assert_eq!(
        parse_http_date(b"Fri, 24 May 2013 00:00:00 GMT"),
        Some(EXAMPLE_S)
    );
    assert_eq!(
        parse_http_date(b"Fri, 24 May 2013 00:00:00 -0000"),
        Some(EXAMPLE_S)
    );
    for days in [-1, 0, 59, 365 * 400, 2_932_896] {
        let (y, m, d) = civil_from_days(days);
        assert_eq!(days_from_civil(y, m, d), days);
    }
}

// ------------------------------------------------------------- parsing

fn header_auth(value: &str) -> Result<Auth, SigV4Error> {
    Request::new("GET", "/", "", &[("host", "h"), ("Authorization", value)]).with(parse_auth)
}

#[test]
fn authorization_header_tolerates_spacing_and_rejects_malformed() {
    let sig = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41";
    let credential = format!("Credential={AKID}/20130524/us-east-1/s3/aws4_request");
    for value in [
        format!("AWS4-HMAC-SHA256 {credential},SignedHeaders=host;x-amz-date,Signature={sig}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;x-amz-date, Signature={sig}"),
        format!(
            "  AWS4-HMAC-SHA256   {credential} ,  SignedHeaders=host;x-amz-date,\tSignature={sig} "
        ),
        format!("AWS4-HMAC-SHA256 Signature={sig}, {credential}, SignedHeaders=host;x-amz-date"),
    ] {
        let auth = header_auth(&value).unwrap();
        let Auth::Header(parsed) = auth else {
            panic!("{value}")
        };
        assert_eq!(parsed.credential.access_key_id, AKID);
        assert_eq!(parsed.signed_headers, ["host", "x-amz-date"]);
    }
    let malformed = [
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature=abc"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={sig}, Extra=1"),
        format!("AWS4-HMAC-SHA256 {credential}, {credential}, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=x-amz-date, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=Host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;;a, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host;host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/us-east-1/s3/aws5_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/2013052/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential={AKID}/20130524/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        format!("AWS4-HMAC-SHA256 Credential=/20130524/us-east-1/s3/aws4_request, SignedHeaders=host, Signature={sig}"),
        "AWS4-HMAC-SHA256".to_owned(),
        format!("AWS4-HMAC-SHA256 {credential}, SignedHeaders=host, Signature={sig}{}", " ".repeat(5000)),
    ];
    for value in malformed {
        let error = header_auth(&value).unwrap_err();
        assert_eq!(
            error.s3_code(),
            "AuthorizationHeaderMalformed",
            "{value}: {error}"
        );
    }
    for value in [
        "AWS AKIAIOSFODNN7EXAMPLE:frJIUN8DYpKDtOLCwo//yllqDzg=",
        "Bearer x",
        "",
    ] {
        assert_eq!(
            header_auth(value).unwrap_err(),
            SigV4Error::UnsupportedAuthorization
        );
    }
}

#[test]
fn auth_detection() {
    let none = Request::new("GET", "/", "list-type=2", &[("host", "h")]);
    assert_eq!(none.with(parse_auth), Ok(Auth::Anonymous));
    assert_eq!(
        none.verify_at(SECRET, 0, "*").unwrap_err().s3_code(),
        "AccessDenied"
    );
    let both = Request::new(
        "GET",
        "/",
        DOC_PRESIGNED_QUERY,
        &[("host", "h"), ("authorization", "AWS4-HMAC-SHA256 x")],
    );
    assert_eq!(
        both.with(parse_auth),
        Err(SigV4Error::MultipleAuthMechanisms)
    );
    let twice = Request::new(
        "GET",
        "/",
        "",
        &[("authorization", "a"), ("Authorization", "b")],
    );
    assert_eq!(
        twice.with(parse_auth).unwrap_err().s3_code(),
        "AuthorizationHeaderMalformed"
    );
    let v2 = Request::new(
        "GET",
        "/",
        "AWSAccessKeyId=A&Expires=1&Signature=x",
        &[("host", "h")],
    );
    assert_eq!(
        v2.with(parse_auth),
        Err(SigV4Error::UnsupportedAuthorization)
    );
}

#[test]
fn presigned_parameters_are_checked() {
    let replace = |from: &str, to: &str| {
        Request::new(
            "GET",
            "/test.txt",
            &DOC_PRESIGNED_QUERY.replace(from, to),
            &[("host", "examplebucket.s3.amazonaws.com")],
        )
        .with(parse_auth)
    };
    for (from, to) in [
        ("X-Amz-Expires=86400", "X-Amz-Expires=0"),
        ("X-Amz-Expires=86400", "X-Amz-Expires=604801"),
        ("X-Amz-Expires=86400", "X-Amz-Expires=-1"),
        ("X-Amz-Expires=86400", "X-Amz-Expires=1e3"),
        ("X-Amz-Expires=86400&", ""),
        (
            "X-Amz-Algorithm=AWS4-HMAC-SHA256",
            "X-Amz-Algorithm=AWS4-HMAC-SHA1",
        ),
        ("X-Amz-Date=20130524T000000Z", "X-Amz-Date=20130524"),
        (
            "X-Amz-SignedHeaders=host",
            "X-Amz-SignedHeaders=host&X-Amz-SignedHeaders=host",
        ),
        ("%2Fs3%2F", "%2Fiam%2F"),
        ("X-Amz-Signature=aeeed9", "X-Amz-Signature=zzeed9"),
    ] {
        let error = replace(from, to).unwrap_err();
        assert_eq!(
            error.s3_code(),
            "AuthorizationQueryParametersError",
            "{to}: {error}"
        );
    }
    assert!(replace("X-Amz-Expires=86400", "X-Amz-Expires=604800").is_ok());
}

// -------------------------------------------------- verification rules

fn signed_put(at_s: u64) -> Request {
    let request = Request::new(
        "PUT",
        "/bucket/dir/a%20b%2Bc~d.txt",
        "x-id=PutObject&tagging",
        &[
            ("Host", "s3.example.test:9000"),
            ("Content-Type", "text/plain"),
            ("X-Amz-Meta-Owner", "  Ada   Lovelace "),
            ("x-amz-storage-class", "STANDARD"),
            ("User-Agent", "test"),
        ],
    );
    request
        .signed(
            "eu-west-3",
            at_s,
            "0000000000000000000000000000000000000000000000000000000000000001",
        )
        .0
}

#[test]
fn tampering_with_any_signed_part_fails() {
    let at_s = EXAMPLE_S + 12_345;
    let good = signed_put(at_s);
    let verified = good.verify_at(SECRET, at_s, "eu-west-3").unwrap();
    assert_eq!(
        verified.payload,
        PayloadMode::Sha256({
            let mut h = [0; 32];
            h[31] = 1;
            h
        })
    );
    // The unsigned User-Agent may change; nothing else may.
    assert!(good
        .clone()
        .set("User-Agent", "other")
        .verify_at(SECRET, at_s, "eu-west-3")
        .is_ok());
    let mut tampered: Vec<(&str, Request)> = vec![
        (
            "method",
            Request {
                method: "POST".into(),
                ..good.clone()
            },
        ),
        (
            "path",
            Request {
                path: "/bucket/dir/a%20b%2Bc~e.txt".into(),
                ..good.clone()
            },
        ),
        (
            "path encoding",
            Request {
                path: "/bucket/dir/a%2520b%2Bc~d.txt".into(),
                ..good.clone()
            },
        ),
        (
            "query",
            Request {
                query: "x-id=PutObject&tagging=1".into(),
                ..good.clone()
            },
        ),
        (
            "extra query",
            Request {
                query: "x-id=PutObject&tagging&acl".into(),
                ..good.clone()
            },
        ),
        ("host", good.clone().set("Host", "s3.example.test:9001")),
        (
            "content-type",
            good.clone().set("content-type", "text/html"),
        ),
        (
            "meta",
            good.clone().set("x-amz-meta-owner", "Charles Babbage"),
        ),
        (
            "meta repeated",
            good.clone().header("x-amz-meta-owner", "Charles"),
        ),
        (
            "unsigned amz header",
            good.clone().header("x-amz-acl", "public-read"),
        ),
        (
            "payload hash",
            good.clone().set("x-amz-content-sha256", &"0".repeat(64)),
        ),
        (
            "date",
            good.clone().set("x-amz-date", &format_amz_date(at_s + 1)),
        ),
        (
            "missing signed header",
            good.clone().without("content-type"),
        ),
    ];
    let authorization = good
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .unwrap()
        .1
        .clone();
    let authorization = String::from_utf8(authorization).unwrap();
    let last = authorization.len() - 1;
    let flip = if authorization.as_bytes()[last] == b'0' {
        "1"
    } else {
        "0"
    };
    let bad_signature = format!("{}{flip}", &authorization[..last]);
    tampered.push((
        "signature",
        good.clone().set("authorization", &bad_signature),
    ));
    tampered.push((
        "scope region",
        good.clone().set(
            "authorization",
            &authorization.replace("eu-west-3", "us-east-1"),
        ),
    ));
    for (what, request) in &tampered {
        assert!(
            request.verify_at(SECRET, at_s, "*").is_err(),
            "{what} was not detected"
        );
    }
    assert_eq!(
        good.verify_at(b"another secret", at_s, "eu-west-3")
            .unwrap_err(),
        SigV4Error::SignatureDoesNotMatch
    );
    assert_eq!(SigV4Error::SignatureDoesNotMatch.http_status(), 403);
    let error = tampered[9].1.verify_at(SECRET, at_s, "*").unwrap_err();
    assert_eq!(
        (error.s3_code(), error.message().as_str()),
        (
            "AccessDenied",
            "there were headers present in the request which were not signed: x-amz-acl"
        )
    );
    let error = tampered[12].1.verify_at(SECRET, at_s, "*").unwrap_err();
    assert_eq!(error.s3_code(), "MissingSecurityHeader");
}

#[test]
fn region_must_match_unless_any() {
    let at_s = EXAMPLE_S;
    let request = signed_put(at_s);
    assert!(request.verify_at(SECRET, at_s, "eu-west-3").is_ok());
    assert!(request.verify_at(SECRET, at_s, "*").is_ok());
    let error = request.verify_at(SECRET, at_s, "us-east-1").unwrap_err();
    assert_eq!(error.s3_code(), "AuthorizationHeaderMalformed");
    assert!(error
        .message()
        .contains("the region 'eu-west-3' is wrong; expecting 'us-east-1'"));
}

#[test]
fn header_auth_time_must_be_within_fifteen_minutes() {
    let at_s = EXAMPLE_S + 1_000_000;
    let request = signed_put(at_s);
    for now_s in [
        at_s - CLOCK_SKEW_MAX_S,
        at_s - 60,
        at_s,
        at_s + CLOCK_SKEW_MAX_S,
    ] {
        assert!(
            request.verify_at(SECRET, now_s, "eu-west-3").is_ok(),
            "{now_s}"
        );
    }
    for now_s in [at_s - CLOCK_SKEW_MAX_S - 1, at_s + CLOCK_SKEW_MAX_S + 1, 0] {
        let error = request.verify_at(SECRET, now_s, "eu-west-3").unwrap_err();
        assert_eq!(error, SigV4Error::RequestTimeTooSkewed);
        assert_eq!(error.s3_code(), "RequestTimeTooSkewed");
    }
}

#[test]
fn scope_date_must_match_the_request_date() {
    let at_s = EXAMPLE_S + 86_400 - 10;
    let request = signed_put(at_s);
    let moved = request
        .clone()
        .set("x-amz-date", &format_amz_date(at_s + 20));
    let error = moved.verify_at(SECRET, at_s, "*").unwrap_err();
    assert_eq!(error.s3_code(), "AuthorizationHeaderMalformed");
    assert!(error.message().contains("credential date"));
}

#[test]
fn content_sha256_header_is_required_signed_and_valid() {
    let at_s = EXAMPLE_S;
    let request = signed_put(at_s);
    let error = request
        .clone()
        .without("x-amz-content-sha256")
        .verify_at(SECRET, at_s, "*")
        .unwrap_err();
    assert_eq!(error.s3_code(), "MissingSecurityHeader");
    let base = Request::new("PUT", "/b/k", "", &[("host", "h")]);
    for (content, code) in [
        ("not-a-hash", "InvalidArgument"),
        ("STREAMING-UNSIGNED-PAYLOAD-TRAILER", "NotImplemented"),
        (
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
            "NotImplemented",
        ),
    ] {
        let (signed, _) = base.clone().signed("us-east-1", at_s, content);
        assert_eq!(
            signed.verify_at(SECRET, at_s, "*").unwrap_err().s3_code(),
            code,
            "{content}"
        );
    }
    let (unsigned, _) = base.clone().signed("us-east-1", at_s, UNSIGNED_PAYLOAD);
    assert_eq!(
        unsigned.verify_at(SECRET, at_s, "*").unwrap().payload,
        PayloadMode::Unsigned
    );
    // Header auth without x-amz-content-sha256 at all: built by hand, as no SDK would.
    let signed = vec!["host".to_owned(), "x-amz-date".to_owned()];
    let request = base.clone().header("x-amz-date", &format_amz_date(at_s));
    let canonical = request
        .with(|r| canonical_request(r, &signed, EMPTY_SHA256_HEX, false))
        .unwrap();
    let key = signing_key(SECRET, "20130524", "us-east-1");
    let signature = request_signature(
        &key,
        &format_amz_date(at_s),
        "20130524/us-east-1/s3/aws4_request",
        &canonical,
    );
    let request = request.header(
        "authorization",
        &doc_authorization("host;x-amz-date", &hex::encode(signature)),
    );
    assert_eq!(
        request.verify_at(SECRET, at_s, "*").unwrap_err(),
        SigV4Error::MissingContentSha256
    );
}

#[test]
fn date_header_stands_in_for_x_amz_date_when_signed() {
    let at_s = EXAMPLE_S + 3600;
    for date in [
        "Fri, 24 May 2013 01:00:00 GMT",
        "Fri, 24 May 2013 01:00:00 -0000",
    ] {
        let request = Request::new(
            "GET",
            "/b/k",
            "",
            &[
                ("host", "h"),
                ("date", date),
                ("x-amz-content-sha256", UNSIGNED_PAYLOAD),
            ],
        );
        let signed: Vec<String> = ["date", "host", "x-amz-content-sha256"]
            .map(String::from)
            .to_vec();
        let canonical = request
            .with(|r| canonical_request(r, &signed, UNSIGNED_PAYLOAD, false))
            .unwrap();
        let key = signing_key(SECRET, "20130524", "us-east-1");
        let signature = request_signature(
            &key,
            "20130524T010000Z",
            "20130524/us-east-1/s3/aws4_request",
            &canonical,
        );
        let request = request.header(
            "authorization",
            &doc_authorization("date;host;x-amz-content-sha256", &hex::encode(signature)),
        );
        let verified = request.verify_at(SECRET, at_s, "us-east-1").unwrap();
        assert_eq!(verified.amz_date, "20130524T010000Z");
    }
    let unsigned_date = Request::new(
        "GET",
        "/",
        "",
        &[("host", "h"), ("date", "Fri, 24 May 2013 01:00:00 GMT")],
    )
    .header("x-amz-content-sha256", UNSIGNED_PAYLOAD)
    .header(
        "authorization",
        &doc_authorization("host;x-amz-content-sha256", &"0".repeat(64)),
    );
    assert_eq!(
        unsigned_date.verify_at(SECRET, at_s, "*").unwrap_err(),
        SigV4Error::DateNotSigned
    );
    let no_date = Request::new("GET", "/", "", &[("host", "h")])
        .header("authorization", &doc_authorization("host", &"0".repeat(64)));
    assert_eq!(
        no_date.verify_at(SECRET, at_s, "*").unwrap_err(),
        SigV4Error::MissingDate
    );
}

#[test]
fn presign_round_trips_and_tampering_fails() {
    let at_s = EXAMPLE_S + 777;
    let credentials = Credentials {
        access_key_id: AKID,
        secret_access_key: SECRET,
    };
    let request = Request::new(
        "PUT",
        "/bucket/a%20b/%E2%9C%93",
        "partNumber=1&uploadId=a%2Fb%2Bc",
        &[
            ("host", "h:1"),
            ("content-type", "application/octet-stream"),
        ],
    );
    let query = request
        .with(|r| presign(r, &credentials, "us-east-1", system_time(at_s), 900))
        .unwrap();
    assert!(
        query.starts_with("partNumber=1&uploadId=a%2Fb%2Bc&X-Amz-Algorithm=AWS4-HMAC-SHA256&"),
        "{query}"
    );
    assert!(
        query.contains("&X-Amz-SignedHeaders=content-type%3Bhost&"),
        "{query}"
    );
    let good = Request { query, ..request };
    assert!(good.verify_at(SECRET, at_s + 900, "us-east-1").is_ok());
    assert_eq!(
        good.verify_at(SECRET, at_s + 901, "us-east-1").unwrap_err(),
        SigV4Error::Expired
    );
    let tampered = [
        Request {
            query: good.query.replace("partNumber=1", "partNumber=2"),
            ..good.clone()
        },
        Request {
            query: good.query.replace("X-Amz-Expires=900", "X-Amz-Expires=901"),
            ..good.clone()
        },
        Request {
            query: format!("{}&acl", good.query),
            ..good.clone()
        },
        Request {
            path: "/bucket/a%20b/x".into(),
            ..good.clone()
        },
        Request {
            method: "GET".into(),
            ..good.clone()
        },
        good.clone().set("content-type", "text/html"),
        good.clone().header("x-amz-acl", "public-read"),
        good.clone()
            .header("x-amz-content-sha256", EMPTY_SHA256_HEX),
    ];
    for request in tampered {
        assert!(
            request.verify_at(SECRET, at_s, "us-east-1").is_err(),
            "{request:?}"
        );
    }
    assert_eq!(
        Request::new("GET", "/", "", &[]).with(|r| presign(
            r,
            &credentials,
            "us-east-1",
            system_time(at_s),
            60
        )),
        Err(SignRequestError::MissingHost)
    );
    assert_eq!(
        request_for_presign().with(|r| presign(
            r,
            &credentials,
            "us-east-1",
            system_time(at_s),
            604_801
        )),
        Err(SignRequestError::ExpiresOutOfRange)
    );
}

fn request_for_presign() -> Request {
    Request::new("GET", "/", "", &[("host", "h")])
}

// ----------------------------------------------------- chunked decoder

fn test_verified(decoded_length: Option<u64>) -> (Verified, ChunkSigner) {
    let signing_key = signing_key(SECRET, "20130524", "us-east-1");
    let context = ChunkContext {
        signing_key,
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        amz_date: "20130524T000000Z".into(),
    };
    let seed = [7u8; 32];
    let verified = Verified {
        access_key_id: AKID.into(),
        payload: PayloadMode::StreamingSigned { decoded_length },
        seed_signature: seed,
        signing_key,
        scope: context.scope.clone(),
        amz_date: context.amz_date.clone(),
    };
    (
        verified,
        ChunkSigner {
            context,
            previous: seed,
        },
    )
}

/// Feeds `body` in pieces whose sizes cycle through `sizes`; returns
/// the data and events, or the first error (finish included).
fn decode_in_pieces(
    verified: &Verified,
    body: &[u8],
    sizes: &[usize],
) -> Result<(Vec<u8>, Vec<ChunkEvent>), SigV4Error> {
    let mut decoder = ChunkedDecoder::from_verified(verified)?;
    let (mut data, mut all, mut events) = (Vec::new(), Vec::new(), Vec::new());
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at >= body.len() {
            break;
        }
        let piece = &body[at..(at + size.max(&1)).min(body.len())];
        events.clear();
        decoder.push(piece, &mut events)?;
        for event in &events {
            if let ChunkEvent::Data(range) = event {
                data.extend_from_slice(&piece[range.clone()]);
            }
        }
        all.append(&mut events);
        at += piece.len();
    }
    decoder.finish()?;
    assert_eq!(decoder.decoded_bytes(), data.len() as u64);
    Ok((data, all))
}

fn chunk(size: usize, signature: &str) -> Vec<u8> {
    let mut out = format!("{size:x};chunk-signature={signature}\r\n").into_bytes();
    out.extend(std::iter::repeat_n(b'x', size));
    out.extend_from_slice(b"\r\n");
    out
}

#[test]
fn chunked_decoder_rejects_bad_framing() {
    let (verified, signer) = test_verified(None);
    let good = signer.clone().encode_body(b"hello world", 4);
    assert_eq!(
        decode_in_pieces(&verified, &good, &[3]).unwrap().0,
        b"hello world"
    );
    let zero_sig = "0".repeat(64);
    let cases: Vec<(&str, Vec<u8>, SigV4Error)> = vec![
        ("empty body", Vec::new(), SigV4Error::IncompleteBody),
        (
            "truncated",
            good[..good.len() - 1].to_vec(),
            SigV4Error::IncompleteBody,
        ),
        (
            "after end",
            [good.as_slice(), b"x"].concat(),
            SigV4Error::ChunkedBodyMalformed("data after the final chunk"),
        ),
        (
            "bad signature",
            chunk(3, &zero_sig),
            SigV4Error::ChunkSignatureMismatch,
        ),
        (
            "long line",
            vec![b'1'; CHUNK_HEADER_BYTES_MAX + 1],
            SigV4Error::ChunkedBodyMalformed("chunk header line too long"),
        ),
        (
            "bare LF",
            format!("3;chunk-signature={zero_sig}\n").into_bytes(),
            SigV4Error::ChunkedBodyMalformed("chunk header must end with CRLF"),
        ),
        (
            "no signature",
            b"3\r\n".to_vec(),
            SigV4Error::ChunkedBodyMalformed("chunk header has no chunk-signature"),
        ),
        (
            "extension",
            format!("3;chunk-signature={zero_sig};x=y\r\n").into_bytes(),
            SigV4Error::ChunkedBodyMalformed("the chunk signature must be 64 hex digits"),
        ),
        (
            "bad size",
            format!("3g;chunk-signature={zero_sig}\r\n").into_bytes(),
            SigV4Error::ChunkedBodyMalformed("invalid chunk size"),
        ),
        (
            "empty size",
            format!(";chunk-signature={zero_sig}\r\n").into_bytes(),
            SigV4Error::ChunkedBodyMalformed("invalid chunk size"),
        ),
        (
            "too large",
            format!("1000001;chunk-signature={zero_sig}\r\n").into_bytes(),
            SigV4Error::ChunkedBodyMalformed("chunk larger than 16 MiB"),
        ),
    ];
    for (what, body, expected) in cases {
        assert_eq!(
            decode_in_pieces(&verified, &body, &[1000]).unwrap_err(),
            expected,
            "{what}"
        );
    }
    // Data not followed by CRLF.
    let mut signer_copy = signer.clone();
    let signature = hex::encode(signer_copy.sign_chunk(b"abc"));
    let body = format!("3;chunk-signature={signature}\r\nabcX\r\n").into_bytes();
    assert_eq!(
        decode_in_pieces(&verified, &body, &[1000]).unwrap_err(),
        SigV4Error::ChunkedBodyMalformed("a chunk must end with CRLF")
    );
    // Trailing headers after the final chunk are refused clearly.
    let mut with_trailer = good[..good.len() - 2].to_vec();
    with_trailer.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
    let error = decode_in_pieces(&verified, &with_trailer, &[5]).unwrap_err();
    assert_eq!(
        (error.clone(), error.s3_code()),
        (SigV4Error::TrailersUnsupported, "NotImplemented")
    );
    // A decoder stays failed.
    let mut decoder = ChunkedDecoder::from_verified(&verified).unwrap();
    let mut events = Vec::new();
    assert!(decoder.push(&chunk(3, &zero_sig), &mut events).is_err());
    assert_eq!(
        decoder.push(&good, &mut events),
        Err(SigV4Error::ChunkSignatureMismatch)
    );
}

#[test]
fn chunked_decoder_enforces_decoded_length() {
    let data = b"0123456789";
    for (length, expected) in [
        (Some(10), Ok(())),
        (None, Ok(())),
        (
            Some(9),
            Err(SigV4Error::ChunkedBodyMalformed(
                "more data than x-amz-decoded-content-length",
            )),
        ),
        (Some(11), Err(SigV4Error::IncompleteBody)),
    ] {
        let (verified, signer) = test_verified(length);
        let body = signer.clone().encode_body(data, 3);
        let result = decode_in_pieces(&verified, &body, &[2]).map(|_| ());
        assert_eq!(result, expected, "{length:?}");
    }
    let (mut verified, _) = test_verified(None);
    verified.payload = PayloadMode::Unsigned;
    assert!(matches!(
        ChunkedDecoder::from_verified(&verified),
        Err(SigV4Error::NotStreaming)
    ));
}

#[test]
fn encoded_length_matches_the_encoder() {
    let (_, signer) = test_verified(None);
    for (len, chunk_bytes) in [
        (0usize, 1usize),
        (1, 1),
        (15, 16),
        (16, 16),
        (17, 16),
        (300, 7),
        (4096, 4096),
        (70_000, 65_536),
    ] {
        let body = signer.clone().encode_body(&vec![0; len], chunk_bytes);
        assert_eq!(
            encoded_chunked_length(len as u64, chunk_bytes as u64),
            body.len() as u64,
            "{len} {chunk_bytes}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn chunked_decoder_is_independent_of_how_the_body_is_split(
        data in proptest::collection::vec(any::<u8>(), 0..2000),
        chunk_bytes in 1usize..400,
        sizes in proptest::collection::vec(1usize..300, 1..20),
    ) {
        let (verified, signer) = test_verified(Some(data.len() as u64));
        let body = signer.clone().encode_body(&data, chunk_bytes);
        let (whole, whole_events) = decode_in_pieces(&verified, &body, &[body.len()]).unwrap();
        let (split, split_events) = decode_in_pieces(&verified, &body, &sizes).unwrap();
        prop_assert_eq!(&whole, &data);
        prop_assert_eq!(&split, &data);
        let boundaries = |events: &[ChunkEvent]| -> Vec<ChunkEvent> {
            events.iter().filter(|e| !matches!(e, ChunkEvent::Data(_))).cloned().collect()
        };
        prop_assert_eq!(boundaries(&whole_events), boundaries(&split_events));
    }

    #[test]
    fn chunked_decoder_detects_any_flipped_byte(
        data in proptest::collection::vec(any::<u8>(), 1..600),
        chunk_bytes in 1usize..200,
        position in any::<prop::sample::Index>(),
        sizes in proptest::collection::vec(1usize..100, 1..5),
    ) {
        let (verified, signer) = test_verified(None);
        let mut body = signer.clone().encode_body(&data, chunk_bytes);
        let at = position.index(body.len());
        body[at] ^= 1;
        prop_assert!(decode_in_pieces(&verified, &body, &sizes).is_err());
    }

    #[test]
    fn arbitrary_requests_never_panic(
        method in "\\PC{0,8}",
        path in "[/%a-zA-Z0-9+ ~\u{80}-\u{10ffff}]{0,30}",
        query in "[=&%a-zA-Z0-9+ /-]{0,40}",
        names in proptest::collection::vec("(?i)(host|x-amz-[a-z-]{0,20}|authorization|date|[a-z]{1,5})", 0..6),
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 6),
        fragments in proptest::collection::vec(prop::sample::select(vec![
            "AWS4-HMAC-SHA256 ", "Credential=", "AKID/20130524/us-east-1/s3/aws4_request", "/", ",",
            ", ", "SignedHeaders=", "host;x-amz-date", ";", "Signature=", "=", "ab",
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&", "X-Amz-Expires=", "&", "20130524T000000Z",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ]), 0..12),
        now_s in any::<u64>(),
        body in proptest::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut request = Request::new(&method, &path, &query, &[]);
        for (name, value) in names.iter().zip(&values) {
            request.headers.push((name.clone(), value.clone()));
        }
        let crafted = fragments.concat();
        for extra in [None, Some(("authorization", crafted.clone()))] {
            let mut request = request.clone();
            if let Some((name, value)) = extra {
                request = request.header(name, &value);
            }
            let _ = request.verify_at(SECRET, now_s, "*");
            let _ = Request { query: crafted.clone(), ..request.clone() }.verify_at(SECRET, now_s, "us-east-1");
        }
        let (verified, _) = test_verified(Some(body.len() as u64));
        let _ = decode_in_pieces(&verified, &body, &[1, 7, 64]);
    }

    #[test]
    fn sign_then_verify_round_trips(
        key in "[a-zA-Z0-9 +=&?#%/~._-]{0,40}",
        value in "[a-zA-Z0-9 +=&/~._-]{0,20}",
        meta in "[ -~]{0,30}",
        at_s in 0u64..4_000_000_000,
    ) {
        let path = format!("/bucket/{}", uri_encode(key.as_bytes(), false));
        let query = format!("prefix={}&list-type=2", uri_encode(value.as_bytes(), true));
        let request = Request::new("GET", &path, &query, &[("host", "h"), ("x-amz-meta-m", &meta)]);
        let (signed, _) = request.signed("r", at_s, UNSIGNED_PAYLOAD);
        prop_assert!(signed.verify_at(SECRET, at_s, "r").is_ok());
    }
}
