"""Signs a set of S3 requests with botocore and prints them as JSON, for
tests/sigv4_botocore.rs to verify with photon_s3::sigv4::verify.

Each run draws a fresh secret, access key and signing time. The requests are
built the way botocore's S3 client builds them: the key quoted with
safe='/~', query parameters with botocore.utils.percent_encode_sequence, then
signed by botocore.auth.S3SigV4Auth (Authorization header) or
S3SigV4QueryAuth (presigned URL). The Host header, which botocore signs but
leaves to the HTTP client to send, is added to the printed headers.

botocore has no signer for STREAMING-AWS4-HMAC-SHA256-PAYLOAD bodies; the
streaming case takes botocore's seed signature (S3SigV4Auth with that
payload value) and chains the chunk signatures here with botocore's own
HMAC helper and signing-key derivation.

Each case carries the time botocore signed at ("signed_at", Unix seconds)
and a "now" within the validity window at which it must verify.

Usage: python3.11 sigv4_vectors.py  (prints one JSON document on stdout)
"""

import datetime
import hashlib
import json
import random
import secrets
import string
import sys
from urllib.parse import quote, urlsplit

import botocore.auth
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
STREAMING = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def random_secret():
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(40))


def random_access_key():
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def unix(when):
    return int(when.replace(tzinfo=datetime.timezone.utc).timestamp())


def fixed_clock(when):
    # botocore reads the signing time through this module-level name.
    botocore.auth.get_current_datetime = lambda remove_tzinfo=True: when


def build_request(method, endpoint, key, query, headers, body):
    url = endpoint + "/" + quote(key, safe="/~")
    if query:
        url += "?" + percent_encode_sequence(query)
    request = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        # HTTPHeaders appends, so a repeated name is sent (and signed) twice.
        request.headers[name] = value
    return request


def wire_headers(request):
    host = botocore.auth._host_from_url(request.url)
    return [["Host", host]] + [[name, value] for name, value in request.headers.items()]


def header_case(name, credentials, region, when, method, endpoint, key, query=None, headers=(), body=b"", unsigned=False):
    fixed_clock(when)
    request = build_request(method, endpoint, key, query, headers, body)
    if unsigned:
        request.context["client_config"] = Config(s3={"payload_signing_enabled": False})
    S3SigV4Auth(credentials, "s3", region).add_auth(request)
    parts = urlsplit(request.url)
    payload = request.headers["X-Amz-Content-SHA256"]
    return {
        "name": name,
        "kind": "header",
        "method": method,
        "path": parts.path,
        "query": parts.query,
        "headers": wire_headers(request),
        "region": region,
        "signed_at": unix(when),
        "now": unix(when) + random.randint(-600, 600),
        "expires": 0,
        "payload": "unsigned" if payload == "UNSIGNED-PAYLOAD" else "sha256:" + payload,
        "body_hex": body.hex(),
    }


def presigned_case(name, credentials, region, when, expires, method, endpoint, key, query=None, headers=()):
    fixed_clock(when)
    request = build_request(method, endpoint, key, query, headers, b"")
    S3SigV4QueryAuth(credentials, "s3", region, expires=expires).add_auth(request)
    parts = urlsplit(request.url)
    return {
        "name": name,
        "kind": "presigned",
        "method": method,
        "path": parts.path,
        "query": parts.query,
        "headers": wire_headers(request),
        "region": region,
        "signed_at": unix(when),
        "now": unix(when) + random.randint(0, expires),
        "expires": expires,
        "payload": "unsigned",
        "body_hex": "",
    }


class StreamingSigV4Auth(S3SigV4Auth):
    """S3SigV4Auth whose payload hash is the streaming marker."""

    def payload(self, request):
        return STREAMING


def streaming_case(credentials, region, when, data, chunk_bytes):
    endpoint = "http://127.0.0.1:9000"
    headers = [
        ("Content-Encoding", "aws-chunked"),
        ("x-amz-decoded-content-length", str(len(data))),
        ("x-amz-storage-class", "STANDARD"),
    ]
    fixed_clock(when)
    request = build_request("PUT", endpoint, "bucket/streamed object.bin", None, headers, b"")
    auth = StreamingSigV4Auth(credentials, "s3", region)
    auth.add_auth(request)
    seed = request.headers["Authorization"].rsplit("Signature=", 1)[1]
    timestamp = request.context["timestamp"]
    scope = auth.credential_scope(request)
    previous, body = seed, b""
    chunks = [data[i:i + chunk_bytes] for i in range(0, len(data), chunk_bytes)] + [b""]
    for chunk in chunks:
        string_to_sign = "\n".join([
            "AWS4-HMAC-SHA256-PAYLOAD", timestamp, scope, previous,
            EMPTY_SHA256, hashlib.sha256(chunk).hexdigest(),
        ])
        previous = auth.signature(string_to_sign, request)
        body += f"{len(chunk):x};chunk-signature={previous}\r\n".encode() + chunk + b"\r\n"
    parts = urlsplit(request.url)
    return {
        "name": "streaming PUT (botocore seed, chained chunk signatures)",
        "kind": "header",
        "method": "PUT",
        "path": parts.path,
        "query": parts.query,
        "headers": wire_headers(request),
        "region": region,
        "signed_at": unix(when),
        "now": unix(when),
        "expires": 0,
        "payload": "streaming",
        "body_hex": body.hex(),
        "data_hex": data.hex(),
    }


def main():
    secret = random_secret()
    access_key = random_access_key()
    credentials = Credentials(access_key, secret)
    start = datetime.datetime(2015, 1, 1) + datetime.timedelta(seconds=random.randint(0, 20 * 365 * 86400))
    when = lambda: start + datetime.timedelta(seconds=random.randint(0, 86400))  # noqa: E731
    http = "http://127.0.0.1:9000"
    https = "https://s3.eu-west-3.example.test"
    region = "eu-west-3"
    odd_keys = [
        "plain.txt",
        "dir/sub dir/file with spaces.txt",
        "a+b=c&d?e#f%g~h'i(j)k*l!m$n,o;p:q@r[s]t{u}v|w^x`y\"z<>\\",
        "ключ/日本語/😀 emoji.bin",
        "double//slash/./dot/../dotdot",
        "trailing/",
        "percent%2Fliteral%20",
    ]
    cases = []
    for key in odd_keys:
        cases.append(header_case(f"GET {key!r}", credentials, region, when(), "GET", http, "bucket/" + key))
    cases += [
        header_case("ListObjectsV2 with prefix and delimiter", credentials, region, when(), "GET", http, "bucket",
                    query={"list-type": "2", "prefix": "a b/ü+", "delimiter": "/", "max-keys": "10",
                           "continuation-token": "AbC/dEf+GhI=", "encoding-type": "url"}),
        header_case("PUT with body and x-amz-meta-*", credentials, region, when(), "PUT", http, "bucket/obj ect",
                    headers=[("Content-Type", "text/plain; charset=utf-8"),
                             ("x-amz-meta-note", "  folded    white \t space  "),
                             ("X-Amz-Meta-Dup", "one"), ("x-amz-meta-dup", "two"),
                             ("x-amz-storage-class", "STANDARD"), ("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")],
                    body=b"hello world\n" * 37),
        header_case("PUT over https with UNSIGNED-PAYLOAD", credentials, region, when(), "PUT", https,
                    "bucket/unsigned.bin", headers=[("Content-MD5", "XrY7u+Ae7tCTyyK7j1rNww==")],
                    body=b"hello world", unsigned=True),
        header_case("CreateMultipartUpload (?uploads)", credentials, region, when(), "POST", http,
                    "bucket/big.bin", query={"uploads": ""}),
        header_case("UploadPart", credentials, region, when(), "PUT", http, "bucket/big.bin",
                    query={"partNumber": "3", "uploadId": "2~abc/DEF+ghi="}, body=bytes(range(256)) * 4),
        header_case("DeleteObject with versionId", credentials, region, when(), "DELETE", http, "bucket/k",
                    query={"versionId": "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQBpUMLUo"}),
        header_case("HEAD with Range and If-None-Match", credentials, region, when(), "HEAD", http, "bucket/k",
                    headers=[("Range", "bytes=0-9"), ("If-None-Match", '"abc"')]),
        header_case("GET with a Date header instead of X-Amz-Date", credentials, region, when(), "GET", http,
                    "bucket/dated", headers=[("Date", "Thu, 01 Jan 1970 00:00:00 GMT")]),
        header_case("us-east-1 scope", credentials, "us-east-1", when(), "GET", http, "bucket/k"),
        header_case("CopyObject", credentials, region, when(), "PUT", http, "bucket/copy",
                    headers=[("x-amz-copy-source", "/src%20bucket/a%2Bb"), ("x-amz-metadata-directive", "REPLACE")]),
        presigned_case("presigned GET", credentials, region, when(), 3600, "GET", http, "bucket/dir/file name+1.txt"),
        presigned_case("presigned GET, one week", credentials, region, when(), 604800, "GET", http, "bucket/ключ"),
        presigned_case("presigned GET with response overrides", credentials, region, when(), 60, "GET", http,
                       "bucket/report.pdf",
                       query={"response-content-disposition": 'attachment; filename="a b.pdf"',
                              "response-content-type": "application/pdf"}),
        presigned_case("presigned PUT with signed content-type", credentials, region, when(), 900, "PUT", http,
                       "bucket/upload.bin", headers=[("Content-Type", "application/octet-stream")]),
        presigned_case("presigned UploadPart", credentials, region, when(), 300, "PUT", http, "bucket/big.bin",
                       query={"partNumber": "1", "uploadId": "x/y+z"}),
        streaming_case(credentials, region, when(), bytes(random.getrandbits(8) for _ in range(3000)), 1024),
    ]
    json.dump({"access_key_id": access_key, "secret": secret, "cases": cases}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
