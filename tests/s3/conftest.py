"""Shared helpers and fixtures of the S3 client tests in tests/s3/.

LightningStor's S3 API driven by boto3, asserting what AWS S3 does (or, where
LightningStor refuses what it does not implement, the refusal):

* test_boto3.py: every supported API with its error codes, presigned URLs,
  authentication, tenant isolation, the viewer role.
* test_headers.py: every `x-amz-*` request header botocore's S3 model defines
  for an implemented operation is honoured or refused with 501, never ignored.
* test_s3_behaviour.py: details of the supported APIs (checksums, retries of
  CompleteMultipartUpload, conditional deletes, ListBuckets paging, ...).

`cargo test --test s3_clients boto3` starts a `photon dev`, creates the
keys below and runs every test_*.py here. By hand, against a running
`photon dev --data-dir DIR`:

    set -a; . DIR/s3.env; set +a
    export S3_ENDPOINT="$AWS_ENDPOINT_URL" S3_ACCESS_KEY="$AWS_ACCESS_KEY_ID" \
           S3_SECRET_KEY="$AWS_SECRET_ACCESS_KEY"
    # Optional (their tests are skipped without them): an editor of another
    # tenant, and a viewer in the first key's tenant and project.
    export S3_OTHER_ACCESS_KEY=... S3_OTHER_SECRET_KEY=...
    export S3_VIEWER_ACCESS_KEY=... S3_VIEWER_SECRET_KEY=...
    python3.11 -m pytest -q -p no:cacheprovider tests/s3/

Every test gets a bucket of its own (the `bucket` fixture), emptied and
deleted afterwards. Addressing is path-style, signatures SigV4, region
us-east-1, and boto3 never retries, so each assertion sees exactly one
response.

The test files import the helpers below with `from conftest import ...`
(pytest's default `prepend` import mode puts this folder on sys.path).
"""

import base64
import hashlib
import http.client as http_client
import os
import random
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
import zlib

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, EndpointConnectionError

ENDPOINT = os.environ.get("S3_ENDPOINT")
ACCESS_KEY = os.environ.get("S3_ACCESS_KEY")
SECRET_KEY = os.environ.get("S3_SECRET_KEY")
OTHER = (os.environ.get("S3_OTHER_ACCESS_KEY"), os.environ.get("S3_OTHER_SECRET_KEY"))
VIEWER = (os.environ.get("S3_VIEWER_ACCESS_KEY"), os.environ.get("S3_VIEWER_SECRET_KEY"))
REGION = "us-east-1"

MIB = 1024 * 1024
# LightningStor splits objects into chunks of this size (docs/design/0005).
CHUNK = 8 * MIB
PART_MIN = 5 * MIB
# How long a new access key or role binding may take to reach the node.
PROPAGATION_S = 20.0


def pytest_configure(config):
    if not (ENDPOINT and ACCESS_KEY and SECRET_KEY):
        raise pytest.UsageError(
            "set S3_ENDPOINT, S3_ACCESS_KEY and S3_SECRET_KEY (see the top of "
            "tests/s3/conftest.py)"
        )


def make_client(access_key, secret_key, **config):
    settings = {
        "signature_version": "s3v4",
        "s3": {"addressing_style": "path"},
        "retries": {"total_max_attempts": 1},
        "connect_timeout": 10,
        "read_timeout": 120,
    }
    settings.update(config)
    return boto3.client(
        "s3",
        endpoint_url=ENDPOINT,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=REGION,
        config=Config(**settings),
    )


def plain_client(**config):
    """A client of the main key that adds no checksum of its own: botocore
    otherwise sends `x-amz-checksum-crc32` with every PutObject/UploadPart
    and asks for checksums on every GetObject."""
    return make_client(
        ACCESS_KEY,
        SECRET_KEY,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        **config,
    )


def add_headers(client, operation, headers):
    """Makes every later `operation` call of `client` carry `headers`
    (added before signing, so they are signed like botocore's own)."""

    def hook(request, **_):
        for name, value in headers.items():
            # The headers are an email.message.Message: assignment appends.
            del request.headers[name]
            request.headers[name] = value

    client.meta.events.register(f"before-sign.s3.{operation}", hook)
    return client


def md5_hex(data):
    return hashlib.md5(data).hexdigest()


def b64(raw):
    return base64.b64encode(raw).decode()


def multipart_etag(parts):
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def _reflected_table(polynomial, width):
    """The byte table of a reflected CRC; `polynomial` is bit-reversed."""
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ polynomial if c & 1 else c >> 1
        table.append(c)
    assert all(c < (1 << width) for c in table)
    return table


CRC32C_TABLE = _reflected_table(0x82F63B78, 32)
# CRC-64/NVME: polynomial 0xAD93D23594C93659, reflected; init and xorout all ones.
CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5, 64)


def crc32c(data, value=0):
    """CRC32C of `data`; `value` is the CRC32C of what came before it."""
    crc = value ^ 0xFFFFFFFF
    table = CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def crc64nvme(data, value=0):
    """CRC-64/NVME of `data`; `value` is the CRC of what came before it."""
    mask = 0xFFFFFFFFFFFFFFFF
    crc = value ^ mask
    table = CRC64NVME_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


assert crc32c(b"123456789") == 0xE3069283
assert crc64nvme(b"123456789") == 0xAE8B14860A799888
assert crc64nvme(b"6789", crc64nvme(b"12345")) == crc64nvme(b"123456789")

# The checksums test_boto3.py's test_put_flexible_checksum walks.
CHECKSUMS = {
    "CRC32": lambda d: b64(zlib.crc32(d).to_bytes(4, "big")),
    "CRC32C": lambda d: b64(crc32c(d).to_bytes(4, "big")),
    "SHA256": lambda d: b64(hashlib.sha256(d).digest()),
}
# Every checksum LightningStor implements: algorithm -> raw digest of data.
RAW_CHECKSUMS = {
    "CRC32": lambda d: zlib.crc32(d).to_bytes(4, "big"),
    "CRC32C": lambda d: crc32c(d).to_bytes(4, "big"),
    "CRC64NVME": lambda d: crc64nvme(d).to_bytes(8, "big"),
    "SHA1": lambda d: hashlib.sha1(d).digest(),
    "SHA256": lambda d: hashlib.sha256(d).digest(),
}
ALL_CHECKSUMS = {name: (lambda d, f=f: b64(f(d))) for name, f in RAW_CHECKSUMS.items()}


def random_bytes(size, seed):
    return random.Random(seed).randbytes(size)


def headers_of(response):
    return response["ResponseMetadata"]["HTTPHeaders"]


def status_of(response):
    return response["ResponseMetadata"]["HTTPStatusCode"]


def assert_request_id(response):
    assert headers_of(response).get("x-amz-request-id"), (
        f"no x-amz-request-id in {headers_of(response)}"
    )


def expect_error(status, code, call, *args, **kwargs):
    """Runs `call`, which must fail with `status` and S3 error `code`.

    HEAD responses have no body, so for them botocore reports the status
    itself as the code (pass e.g. "404")."""
    with pytest.raises(ClientError) as caught:
        call(*args, **kwargs)
    response = caught.value.response
    got = (status_of(response), response.get("Error", {}).get("Code"))
    want_codes = code if isinstance(code, (tuple, list, set)) else (code,)
    assert got[0] == status and got[1] in want_codes, (
        f"expected {status} {code}, got {got[0]} {got[1]}: {response.get('Error')}"
    )
    assert_request_id(response)
    return response


def read_body(response):
    return response["Body"].read()


def get_bytes(client, bucket, key, **kwargs):
    return read_body(client.get_object(Bucket=bucket, Key=key, **kwargs))


def http(method, url, data=None, headers=None):
    """One plain HTTP request: (status, headers, body), never raising on 4xx."""
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def error_fields(body):
    """(Code, Message) of an S3 XML error document."""
    root = ET.fromstring(body)
    return root.findtext("Code"), root.findtext("Message")


def object_url(bucket, key=None, query=""):
    """The path-style URL of a bucket or object, `query` already encoded."""
    url = f"{ENDPOINT.rstrip('/')}/{bucket}"
    if key is not None:
        url += "/" + urllib.parse.quote(key, safe="/~")
    return f"{url}?{query}" if query else url


def signed_headers(method, url, headers=None, body=b"", secret_key=None):
    """The headers of a SigV4-signed request (with the main key, or the main
    key id and `secret_key`), the payload hash included."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    credentials = Credentials(ACCESS_KEY, secret_key or SECRET_KEY)
    S3SigV4Auth(credentials, "s3", REGION).add_auth(request)
    return dict(request.headers.items())


def raw_request(method, url, headers=None, body=b"", sign=True):
    """Sends exactly these headers (signed, unless `sign` is false) and body:
    (status, headers, body). botocore and urllib add headers of their own;
    this does not."""
    if sign:
        headers = signed_headers(method, url, headers, body)
    parsed = urllib.parse.urlsplit(url)
    connection = http_client.HTTPConnection(parsed.hostname, parsed.port, timeout=60)
    try:
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        connection.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        if body or method in ("PUT", "POST"):
            framed = ("content-length", "transfer-encoding")
            if not any(n.lower() in framed for n in (headers or {})):
                connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body or None)
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def owner_id(client):
    """The bucket owner id the caller's buckets carry ("tenant/project"), as
    ListBuckets shows it."""
    owner = client.list_buckets()["Owner"]["ID"]
    assert owner, "ListBuckets shows no Owner.ID"
    return owner


def eventually(check, timeout_s=PROPAGATION_S):
    """Retries `check` until it stops raising ClientError or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return check()
        except (ClientError, EndpointConnectionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_key(client):
    """Waits until the node knows the access key (new keys reach it a moment
    after `photon ctl` returns)."""
    deadline = time.monotonic() + PROPAGATION_S
    while True:
        try:
            client.list_buckets()
            return
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code not in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return
            if time.monotonic() > deadline:
                raise
        except EndpointConnectionError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)


def unique_bucket_name(hint):
    hint = re.sub(r"[^a-z0-9]+", "-", hint.lower()).strip("-")[:40].strip("-")
    return f"{hint or 'b'}-{uuid.uuid4().hex[:12]}"


def empty_and_delete(client, bucket):
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
        for upload in page.get("Uploads", []):
            client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=item["Key"])
    client.delete_bucket(Bucket=bucket)


def bucket_exists(client, name):
    try:
        client.head_bucket(Bucket=name)
        return True
    except ClientError as error:
        if status_of(error.response) == 404:
            return False
        raise


@pytest.fixture(scope="session")
def s3():
    client = make_client(ACCESS_KEY, SECRET_KEY)
    wait_for_key(client)
    return client


@pytest.fixture(scope="session")
def other():
    if not all(OTHER):
        pytest.skip("S3_OTHER_ACCESS_KEY / S3_OTHER_SECRET_KEY not set")
    client = make_client(*OTHER)
    wait_for_key(client)
    return client


@pytest.fixture(scope="session")
def viewer():
    if not all(VIEWER):
        pytest.skip("S3_VIEWER_ACCESS_KEY / S3_VIEWER_SECRET_KEY not set")
    client = make_client(*VIEWER)
    wait_for_key(client)
    return client


@pytest.fixture
def bucket(s3, request):
    name = unique_bucket_name(request.node.name)
    s3.create_bucket(Bucket=name)
    yield name
    empty_and_delete(s3, name)
