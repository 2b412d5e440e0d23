//! Verifies requests signed by botocore, the signer under the aws CLI and
//! boto3: `tests/sigv4_vectors.py` signs a set of S3 requests with a fresh
//! random secret and prints them as JSON; every one must pass
//! `sigv4::verify`, every tampered copy must fail, and our own
//! `sign_request`/`presign` must write exactly what botocore wrote.

use std::process::Command;

use photon_s3::sigv4::{
    self, parse_auth, presign, sign_request, system_time, verify, Auth, ChunkEvent, ChunkedDecoder,
    Credentials, PayloadMode, RequestParts, SigV4Error,
};
use sha2::{Digest, Sha256};

/// Just enough JSON for the script's output.
#[derive(Clone, Debug, PartialEq)]
enum Json {
    Null,
    Bool(bool),
    Number(i64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn get(&self, key: &str) -> &Json {
        match self {
            Json::Object(fields) => fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {key}")),
            _ => panic!("not an object looking up {key}"),
        }
    }

    fn has(&self, key: &str) -> bool {
        matches!(self, Json::Object(fields) if fields.iter().any(|(k, _)| k == key))
    }

    fn str(&self) -> &str {
        match self {
            Json::String(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn int(&self) -> i64 {
        match self {
            Json::Number(n) => *n,
            other => panic!("not a number: {other:?}"),
        }
    }

    fn array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Json {
        let mut parser = Parser {
            text: text.as_bytes(),
            at: 0,
        };
        let value = parser.value();
        parser.skip_space();
        assert_eq!(
            parser.at,
            parser.text.len(),
            "trailing bytes after the JSON document"
        );
        value
    }

    fn skip_space(&mut self) {
        while self
            .text
            .get(self.at)
            .is_some_and(|b| b.is_ascii_whitespace())
        {
            self.at += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        self.skip_space();
        if self.text.get(self.at) == Some(&byte) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, byte: u8) {
        assert!(
            self.eat(byte),
            "expected {:?} at byte {}",
            byte as char,
            self.at
        );
    }

    fn value(&mut self) -> Json {
        self.skip_space();
        match self.text[self.at] {
            b'{' => {
                self.at += 1;
                let mut fields = Vec::new();
                if !self.eat(b'}') {
                    loop {
                        self.skip_space();
                        let key = self.string();
                        self.expect(b':');
                        fields.push((key, self.value()));
                        if self.eat(b'}') {
                            break;
                        }
                        self.expect(b',');
                    }
                }
                Json::Object(fields)
            }
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                if !self.eat(b']') {
                    loop {
                        items.push(self.value());
                        if self.eat(b']') {
                            break;
                        }
                        self.expect(b',');
                    }
                }
                Json::Array(items)
            }
            b'"' => Json::String(self.string()),
            b't' => self.word("true", Json::Bool(true)),
            b'f' => self.word("false", Json::Bool(false)),
            b'n' => self.word("null", Json::Null),
            _ => {
                let start = self.at;
                while self
                    .text
                    .get(self.at)
                    .is_some_and(|b| b.is_ascii_digit() || *b == b'-')
                {
                    self.at += 1;
                }
                let digits = std::str::from_utf8(&self.text[start..self.at]).unwrap();
                Json::Number(
                    digits
                        .parse()
                        .unwrap_or_else(|_| panic!("bad number {digits:?}")),
                )
            }
        }
    }

    fn word(&mut self, word: &str, value: Json) -> Json {
        assert!(self.text[self.at..].starts_with(word.as_bytes()));
        self.at += word.len();
        value
    }

    fn hex4(&mut self) -> u32 {
        let digits = std::str::from_utf8(&self.text[self.at..self.at + 4]).unwrap();
        self.at += 4;
        u32::from_str_radix(digits, 16).unwrap()
    }

    fn string(&mut self) -> String {
        assert_eq!(self.text[self.at], b'"');
        self.at += 1;
        let mut out = String::new();
        loop {
            let byte = self.text[self.at];
            self.at += 1;
            match byte {
                b'"' => return out,
                b'\\' => {
                    let escape = self.text[self.at];
                    self.at += 1;
                    match escape {
                        b'n' => out.push('\n'),
                        b't' => out.push('\t'),
                        b'r' => out.push('\r'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'u' => {
                            let mut code = self.hex4();
                            if (0xd800..0xdc00).contains(&code) {
                                assert_eq!(&self.text[self.at..self.at + 2], b"\\u");
                                self.at += 2;
                                let low = self.hex4();
                                code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
                            }
                            out.push(char::from_u32(code).unwrap());
                        }
                        other => out.push(other as char),
                    }
                }
                _ => {
                    // Multi-byte UTF-8 passes through whole.
                    let start = self.at - 1;
                    let mut end = self.at;
                    while end < self.text.len() && (self.text[end] & 0xc0) == 0x80 {
                        end += 1;
                    }
                    out.push_str(std::str::from_utf8(&self.text[start..end]).unwrap());
                    self.at = end;
                }
            }
        }
    }
}

/// One request from the script, owned.
#[derive(Clone, Debug)]
struct Case {
    name: String,
    kind: String,
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, Vec<u8>)>,
    region: String,
    signed_at_s: u64,
    now_s: u64,
    expires_s: u64,
    payload: String,
    body: Vec<u8>,
    data: Option<Vec<u8>>,
}

impl Case {
    fn from_json(json: &Json) -> Case {
        let headers = json
            .get("headers")
            .array()
            .iter()
            .map(|pair| {
                let pair = pair.array();
                (pair[0].str().to_owned(), pair[1].str().as_bytes().to_vec())
            })
            .collect();
        Case {
            name: json.get("name").str().to_owned(),
            kind: json.get("kind").str().to_owned(),
            method: json.get("method").str().to_owned(),
            path: json.get("path").str().to_owned(),
            query: json.get("query").str().to_owned(),
            headers,
            region: json.get("region").str().to_owned(),
            signed_at_s: u64::try_from(json.get("signed_at").int()).unwrap(),
            now_s: u64::try_from(json.get("now").int()).unwrap(),
            expires_s: u64::try_from(json.get("expires").int()).unwrap(),
            payload: json.get("payload").str().to_owned(),
            body: hex::decode(json.get("body_hex").str()).unwrap(),
            data: json
                .has("data_hex")
                .then(|| hex::decode(json.get("data_hex").str()).unwrap()),
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

    fn verify(
        &self,
        secret: &[u8],
        now_s: u64,
        region: &str,
    ) -> Result<sigv4::Verified, SigV4Error> {
        self.with(|r| verify(r, &parse_auth(r)?, secret, system_time(now_s), region))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
    }

    fn signed_header_names(&self) -> Vec<String> {
        let list = match self.kind.as_str() {
            "header" => {
                let authorization = self.header("authorization").unwrap();
                let start = authorization.find("SignedHeaders=").unwrap() + "SignedHeaders=".len();
                authorization[start..].split(',').next().unwrap().to_owned()
            }
            _ => {
                let param = self
                    .query
                    .split('&')
                    .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
                    .unwrap();
                param.replace("%3B", ";")
            }
        };
        list.split(';').map(str::to_owned).collect()
    }
}

fn run_script() -> Json {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sigv4_vectors.py");
    let output = Command::new("python3.11")
        .arg(script)
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3.11 {script} (botocore is needed): {e}"));
    assert!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Parser::parse(std::str::from_utf8(&output.stdout).unwrap())
}

fn check_payload(case: &Case, verified: &sigv4::Verified) {
    match (case.payload.as_str(), verified.payload) {
        ("unsigned", PayloadMode::Unsigned) => {}
        (expected, PayloadMode::Sha256(hash))
            if expected.strip_prefix("sha256:") == Some(&hex::encode(hash)) =>
        {
            let body_hash: [u8; 32] = Sha256::digest(&case.body).into();
            assert_eq!(
                verified.payload.check_sha256(&body_hash),
                Ok(()),
                "{}",
                case.name
            );
            let other: [u8; 32] = Sha256::digest(b"not the body").into();
            assert_eq!(
                verified.payload.check_sha256(&other),
                Err(SigV4Error::ContentSha256Mismatch)
            );
        }
        ("streaming", PayloadMode::StreamingSigned { decoded_length }) => {
            let data = case.data.as_ref().unwrap();
            assert_eq!(decoded_length, Some(data.len() as u64));
            assert_eq!(&decode(verified, &case.body, 777).unwrap(), data);
            let mut tampered = case.body.clone();
            let middle = tampered.len() / 2;
            tampered[middle] ^= 0x20;
            assert!(
                decode(verified, &tampered, 777).is_err(),
                "tampered streaming body accepted"
            );
        }
        (expected, got) => panic!("{}: payload {expected} but verified {got:?}", case.name),
    }
}

fn decode(
    verified: &sigv4::Verified,
    body: &[u8],
    piece_bytes: usize,
) -> Result<Vec<u8>, SigV4Error> {
    let mut decoder = ChunkedDecoder::from_verified(verified)?;
    let (mut data, mut events) = (Vec::new(), Vec::new());
    for piece in body.chunks(piece_bytes) {
        events.clear();
        decoder.push(piece, &mut events)?;
        for event in &events {
            if let ChunkEvent::Data(range) = event {
                data.extend_from_slice(&piece[range.clone()]);
            }
        }
    }
    decoder.finish()?;
    Ok(data)
}

/// Copies that change one signed part each; every one must fail.
fn tampered_copies(case: &Case) -> Vec<(String, Case)> {
    let mut copies = vec![
        (
            "method".to_owned(),
            Case {
                method: if case.method == "GET" { "PUT" } else { "GET" }.into(),
                ..case.clone()
            },
        ),
        (
            "path".to_owned(),
            Case {
                path: format!("{}x", case.path),
                ..case.clone()
            },
        ),
        (
            "path case".to_owned(),
            Case {
                path: case.path.replacen("/bucket", "/Bucket", 1),
                ..case.clone()
            },
        ),
        (
            "added query".to_owned(),
            Case {
                query: if case.query.is_empty() {
                    "acl".into()
                } else {
                    format!("{}&acl", case.query)
                },
                ..case.clone()
            },
        ),
    ];
    for name in case.signed_header_names() {
        let mut copy = case.clone();
        for (n, v) in &mut copy.headers {
            if n.eq_ignore_ascii_case(&name) {
                v.push(b'0');
            }
        }
        copies.push((format!("header {name}"), copy));
    }
    copies.push(("unsigned x-amz header".to_owned(), {
        let mut copy = case.clone();
        copy.headers
            .push(("x-amz-acl".into(), b"public-read".to_vec()));
        copy
    }));
    copies
}

/// Our signer, fed what botocore was fed, must write what botocore wrote.
fn check_our_signer(case: &Case, access_key_id: &str, secret: &[u8]) {
    if case.kind == "header" && case.header("x-amz-date").is_none() {
        return; // botocore signed with Date instead of X-Amz-Date; we always add X-Amz-Date.
    }
    let signed_at = case.signed_at_s;
    let credentials = Credentials {
        access_key_id,
        secret_access_key: secret,
    };
    match case.kind.as_str() {
        "header" => {
            let unsigned = Case {
                headers: case
                    .headers
                    .iter()
                    .filter(|(n, _)| {
                        !["authorization", "x-amz-date", "x-amz-content-sha256"]
                            .iter()
                            .any(|r| n.eq_ignore_ascii_case(r))
                    })
                    .cloned()
                    .collect(),
                ..case.clone()
            };
            let content = case.header("x-amz-content-sha256").unwrap();
            let ours = unsigned
                .with(|r| {
                    sign_request(
                        r,
                        &credentials,
                        &case.region,
                        system_time(signed_at),
                        &content,
                    )
                })
                .unwrap();
            assert_eq!(
                ours.headers[2].1,
                case.header("authorization").unwrap(),
                "{}",
                case.name
            );
        }
        _ => {
            let operation = case
                .query
                .split("X-Amz-Algorithm=")
                .next()
                .unwrap()
                .trim_end_matches('&');
            let unsigned = Case {
                query: operation.to_owned(),
                ..case.clone()
            };
            let ours = unsigned
                .with(|r| {
                    presign(
                        r,
                        &credentials,
                        &case.region,
                        system_time(signed_at),
                        case.expires_s,
                    )
                })
                .unwrap();
            assert_eq!(ours, case.query, "{}", case.name);
        }
    }
}

#[test]
fn botocore_signed_requests_verify_and_tampered_copies_fail() {
    let json = run_script();
    let access_key_id = json.get("access_key_id").str().to_owned();
    let secret = json.get("secret").str().as_bytes().to_vec();
    let cases: Vec<Case> = json
        .get("cases")
        .array()
        .iter()
        .map(Case::from_json)
        .collect();
    assert!(cases.len() >= 20, "too few cases: {}", cases.len());
    let (mut presigned, mut streaming, mut tampered) = (0, 0, 0);
    for case in &cases {
        let auth = case
            .with(parse_auth)
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert_eq!(
            auth.access_key_id(),
            Some(access_key_id.as_str()),
            "{}",
            case.name
        );
        assert_eq!(
            matches!(auth, Auth::Presigned(_)),
            case.kind == "presigned",
            "{}",
            case.name
        );

        let verified = case
            .verify(&secret, case.now_s, &case.region)
            .unwrap_or_else(|e| panic!("{}: {e} ({})", case.name, e.s3_code()));
        assert_eq!(verified.access_key_id, access_key_id);
        assert!(
            case.verify(&secret, case.now_s, "*").is_ok(),
            "{}",
            case.name
        );
        check_payload(case, &verified);
        check_our_signer(case, &access_key_id, &secret);

        let wrong = case
            .verify(b"wrong secret", case.now_s, &case.region)
            .unwrap_err();
        assert_eq!(wrong, SigV4Error::SignatureDoesNotMatch, "{}", case.name);
        let other_region = if case.region == "us-east-1" {
            "eu-west-1"
        } else {
            "us-east-1"
        };
        assert!(
            case.verify(&secret, case.now_s, other_region).is_err(),
            "{}",
            case.name
        );
        for (what, copy) in tampered_copies(case) {
            let result = copy.verify(&secret, case.now_s, &case.region);
            assert!(
                result.is_err(),
                "{}: tampered {what} was accepted",
                case.name
            );
            tampered += 1;
        }
        if case.kind == "presigned" {
            presigned += 1;
            let late = case.verify(&secret, case.signed_at_s + case.expires_s + 1, &case.region);
            assert_eq!(late.unwrap_err(), SigV4Error::Expired, "{}", case.name);
        } else {
            let skewed = case.verify(&secret, case.signed_at_s + 16 * 60, &case.region);
            assert_eq!(
                skewed.unwrap_err(),
                SigV4Error::RequestTimeTooSkewed,
                "{}",
                case.name
            );
        }
        streaming += usize::from(case.payload == "streaming");
    }
    assert!(
        presigned >= 5 && streaming == 1,
        "presigned {presigned}, streaming {streaming}"
    );
    eprintln!(
        "verified {} botocore requests, rejected {tampered} tampered copies",
        cases.len()
    );
}
