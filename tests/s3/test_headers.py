"""Every `x-amz-*` request header is honoured or refused, never ignored.

The headers are botocore's own: every input member of its S3 model that is
sent as a header (`location` `header`, or `headers` for the `x-amz-meta-`
prefix) of an operation LightningStor implements. Each one is either in
HONOURED, naming the test that proves it works, or in REFUSED, and then the
walk below sends the operation with that header added and expects `501
NotImplemented` naming the header, with nothing stored, deleted or
completed. A header a newer botocore adds to one of these operations is in
neither table, and its test fails until someone decides which it is.

Run with the other S3 client tests (see conftest.py).
"""

import ast
import functools
import hashlib
import json
import pathlib

import botocore.session
import pytest
from botocore.exceptions import ClientError

from conftest import (
    ACCESS_KEY,
    SECRET_KEY,
    add_headers,
    b64,
    bucket_exists,
    expect_error,
    make_client,
    owner_id,
    plain_client,
    random_bytes,
    status_of,
    unique_bucket_name,
)

# The operations LightningStor implements (docs/s3.md).
IMPLEMENTED = (
    "ListBuckets CreateBucket HeadBucket DeleteBucket GetBucketLocation GetBucketVersioning "
    "ListObjects ListObjectsV2 ListObjectVersions ListMultipartUploads DeleteObjects PutObject "
    "CopyObject GetObject HeadObject DeleteObject CreateMultipartUpload UploadPart "
    "UploadPartCopy CompleteMultipartUpload AbortMultipartUpload ListParts"
).split()


def model_headers():
    """(operation, lower-case header) of every x-amz-* header the model
    defines for an implemented operation; the metadata prefix is
    `x-amz-meta-*`."""
    model = botocore.session.get_session().get_service_model("s3")
    found = set()
    for operation in IMPLEMENTED:
        shape = model.operation_model(operation).input_shape
        if shape is None:
            continue
        for member in shape.members.values():
            location = member.serialization.get("location")
            if location not in ("header", "headers"):
                continue
            name = member.serialization.get("name", "").lower()
            if location == "headers":
                name += "*"
            if name.startswith("x-amz-"):
                found.add((operation, name))
    return sorted(found)


MODEL_HEADERS = model_headers()

# ------------------------------------------------------------------ the tables

OWNER_OPS = [op for op, header in MODEL_HEADERS if header == "x-amz-expected-bucket-owner"]
PAYER_OPS = [op for op, header in MODEL_HEADERS if header == "x-amz-request-payer"]
LIST_OPS = ("ListObjects", "ListObjectsV2", "ListObjectVersions")
VALUE_TEST = "test_value_restricted_headers_accept_their_value"

HONOURED = {
    # Every operation: the bucket owner check and the requester-pays consent.
    **{(op, "x-amz-expected-bucket-owner"): "test_expected_bucket_owner" for op in OWNER_OPS},
    **{(op, "x-amz-request-payer"): "test_request_payer" for op in PAYER_OPS},
    **{
        (op, "x-amz-optional-object-attributes"): "test_optional_object_attributes"
        for op in LIST_OPS
    },
    ("CreateBucket", "x-amz-acl"): VALUE_TEST,
    ("CreateBucket", "x-amz-bucket-object-lock-enabled"): VALUE_TEST,
    ("CreateBucket", "x-amz-object-ownership"): VALUE_TEST,
    ("DeleteObjects", "x-amz-sdk-checksum-algorithm"): "test_delete_objects_requires_a_checksum",
    ("PutObject", "x-amz-acl"): VALUE_TEST,
    ("PutObject", "x-amz-storage-class"): VALUE_TEST,
    ("PutObject", "x-amz-meta-*"): "test_put_get_head_round_trip",
    ("PutObject", "x-amz-sdk-checksum-algorithm"): "test_sdk_checksum_algorithm_names_the_checksum",
    ("PutObject", "x-amz-checksum-crc32"): "test_put_flexible_checksum",
    ("PutObject", "x-amz-checksum-crc32c"): "test_put_flexible_checksum",
    ("PutObject", "x-amz-checksum-sha256"): "test_put_flexible_checksum",
    ("PutObject", "x-amz-checksum-crc64nvme"): "test_checksum_mode_returns_the_stored_checksum",
    ("PutObject", "x-amz-checksum-sha1"): "test_checksum_mode_returns_the_stored_checksum",
    ("CopyObject", "x-amz-acl"): VALUE_TEST,
    ("CopyObject", "x-amz-storage-class"): VALUE_TEST,
    ("CopyObject", "x-amz-copy-source"): "test_copy_object_metadata_copy_and_replace",
    ("CopyObject", "x-amz-copy-source-if-match"): "test_copy_object_conditions",
    ("CopyObject", "x-amz-copy-source-if-none-match"): "test_copy_object_conditions",
    ("CopyObject", "x-amz-copy-source-if-modified-since"): "test_copy_source_time_conditions",
    ("CopyObject", "x-amz-copy-source-if-unmodified-since"): "test_copy_source_time_conditions",
    ("CopyObject", "x-amz-metadata-directive"): "test_copy_object_directives",
    ("CopyObject", "x-amz-meta-*"): "test_copy_object_directives",
    ("CopyObject", "x-amz-tagging-directive"): "test_copy_object_directives",
    ("CopyObject", "x-amz-checksum-algorithm"): "test_copy_object_checksum_algorithm",
    ("CopyObject", "x-amz-source-expected-bucket-owner"): "test_source_expected_bucket_owner",
    ("GetObject", "x-amz-checksum-mode"): "test_checksum_mode_returns_the_stored_checksum",
    ("HeadObject", "x-amz-checksum-mode"): "test_checksum_mode_returns_the_stored_checksum",
    ("DeleteObject", "x-amz-if-match-last-modified-time"): "test_conditional_delete",
    ("DeleteObject", "x-amz-if-match-size"): "test_conditional_delete",
    ("CreateMultipartUpload", "x-amz-acl"): VALUE_TEST,
    ("CreateMultipartUpload", "x-amz-storage-class"): VALUE_TEST,
    ("CreateMultipartUpload", "x-amz-meta-*"): "test_multipart_upload",
    ("CreateMultipartUpload", "x-amz-checksum-algorithm"): "test_create_multipart_checksum_type",
    ("CreateMultipartUpload", "x-amz-checksum-type"): "test_create_multipart_checksum_type",
    ("UploadPart", "x-amz-sdk-checksum-algorithm"):
        "test_sdk_checksum_algorithm_names_the_checksum",
    **{
        ("UploadPart", f"x-amz-checksum-{alg}"): "test_upload_part_checksums"
        for alg in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
    },
    ("UploadPartCopy", "x-amz-copy-source"): "test_upload_part_copy",
    ("UploadPartCopy", "x-amz-copy-source-range"): "test_upload_part_copy_ranges",
    ("UploadPartCopy", "x-amz-copy-source-if-match"): "test_copy_source_time_conditions",
    ("UploadPartCopy", "x-amz-copy-source-if-none-match"): "test_copy_source_time_conditions",
    ("UploadPartCopy", "x-amz-copy-source-if-modified-since"): "test_copy_source_time_conditions",
    ("UploadPartCopy", "x-amz-copy-source-if-unmodified-since"): "test_copy_source_time_conditions",
    ("UploadPartCopy", "x-amz-source-expected-bucket-owner"): "test_source_expected_bucket_owner",
    **{
        ("CompleteMultipartUpload", f"x-amz-checksum-{alg}"):
            "test_complete_checksum_header_is_verified"
        for alg in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256")
    },
    ("CompleteMultipartUpload", "x-amz-checksum-type"): "test_complete_checksum_type_must_match",
    ("CompleteMultipartUpload", "x-amz-mp-object-size"): "test_complete_mp_object_size",
    ("AbortMultipartUpload", "x-amz-if-match-initiated-time"): "test_abort_if_match_initiated_time",
}

SSE = (
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
)
SSE_C = (
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
)
COPY_SOURCE_SSE_C = (
    "x-amz-copy-source-server-side-encryption-customer-algorithm",
    "x-amz-copy-source-server-side-encryption-customer-key",
    "x-amz-copy-source-server-side-encryption-customer-key-md5",
)
OBJECT_GRANTS = (
    "x-amz-grant-full-control",
    "x-amz-grant-read",
    "x-amz-grant-read-acp",
    "x-amz-grant-write-acp",
)
OBJECT_LOCK = (
    "x-amz-object-lock-mode",
    "x-amz-object-lock-retain-until-date",
    "x-amz-object-lock-legal-hold",
)
# Checksum algorithms S3 knows and LightningStor does not implement.
OTHER_CHECKSUMS = (
    "x-amz-checksum-sha512",
    "x-amz-checksum-md5",
    "x-amz-checksum-xxhash64",
    "x-amz-checksum-xxhash3",
    "x-amz-checksum-xxhash128",
)
NEW_OBJECT = OBJECT_GRANTS + SSE + SSE_C + OBJECT_LOCK + (
    "x-amz-website-redirect-location",
    "x-amz-tagging",
)

# Operation -> the headers of the model it refuses, whatever their value.
REFUSED = {
    "CreateBucket": OBJECT_GRANTS + ("x-amz-grant-write", "x-amz-bucket-namespace"),
    "DeleteObjects": ("x-amz-mfa", "x-amz-bypass-governance-retention"),
    "PutObject": NEW_OBJECT + OTHER_CHECKSUMS + ("x-amz-write-offset-bytes",),
    "CopyObject": NEW_OBJECT + COPY_SOURCE_SSE_C,
    "GetObject": SSE_C,
    "HeadObject": SSE_C,
    "DeleteObject": ("x-amz-mfa", "x-amz-bypass-governance-retention"),
    "CreateMultipartUpload": NEW_OBJECT,
    "UploadPart": SSE_C + OTHER_CHECKSUMS,
    "UploadPartCopy": SSE_C + COPY_SOURCE_SSE_C,
    "CompleteMultipartUpload": SSE_C + OTHER_CHECKSUMS,
    "ListParts": SSE_C,
}
REFUSED_PAIRS = sorted((op, header) for op, headers in REFUSED.items() for header in headers)

# ------------------------------------------------------------------ the scene

OBJECT_BODY = b"the object every walk starts from\n"
PART_BODY = b"part one of the walk's upload\n"
NEW_BODY = b"the body of a request that must be refused\n"
SSE_C_KEY = bytes(range(32))
WRONG_OWNER = "someone-else/default"


class Scene:
    """A bucket with the object `obj`, the upload `mpu` with part 1, and
    the name of a bucket that does not exist; `call(op)` runs one
    operation on them, `unchanged(op)` asserts that a refused `op` changed
    nothing."""

    def __init__(self, s3, bucket):
        self.s3 = s3
        self.bucket = bucket
        self.etag = s3.put_object(Bucket=bucket, Key="obj", Body=OBJECT_BODY)["ETag"]
        self.upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
        self.part_etag = s3.upload_part(
            Bucket=bucket, Key="mpu", UploadId=self.upload_id, PartNumber=1, Body=PART_BODY
        )["ETag"]
        self.new_bucket = unique_bucket_name("must-not-exist")
        self.empty_bucket = None

    def make_empty_bucket(self):
        self.empty_bucket = unique_bucket_name("empty")
        self.s3.create_bucket(Bucket=self.empty_bucket)
        return self.empty_bucket

    def cleanup(self):
        for name in (self.new_bucket, self.empty_bucket):
            if name and bucket_exists(self.s3, name):
                self.s3.delete_bucket(Bucket=name)

    def request(self, op):
        """The client method and parameters of a plausible `op`."""
        b = self.bucket
        source = {"Bucket": b, "Key": "obj"}
        upload = {"Bucket": b, "Key": "mpu", "UploadId": self.upload_id}
        return {
            "ListBuckets": ("list_buckets", {}),
            "CreateBucket": ("create_bucket", {"Bucket": self.new_bucket}),
            "HeadBucket": ("head_bucket", {"Bucket": b}),
            "DeleteBucket": ("delete_bucket", {"Bucket": self.empty_bucket or b}),
            "GetBucketLocation": ("get_bucket_location", {"Bucket": b}),
            "GetBucketVersioning": ("get_bucket_versioning", {"Bucket": b}),
            "ListObjects": ("list_objects", {"Bucket": b}),
            "ListObjectsV2": ("list_objects_v2", {"Bucket": b}),
            "ListObjectVersions": ("list_object_versions", {"Bucket": b}),
            "ListMultipartUploads": ("list_multipart_uploads", {"Bucket": b}),
            "DeleteObjects": (
                "delete_objects", {"Bucket": b, "Delete": {"Objects": [{"Key": "obj"}]}},
            ),
            "PutObject": ("put_object", {"Bucket": b, "Key": "new", "Body": NEW_BODY}),
            "CopyObject": ("copy_object", {"Bucket": b, "Key": "copy", "CopySource": source}),
            "GetObject": ("get_object", {"Bucket": b, "Key": "obj"}),
            "HeadObject": ("head_object", {"Bucket": b, "Key": "obj"}),
            "DeleteObject": ("delete_object", {"Bucket": b, "Key": "obj"}),
            "CreateMultipartUpload": ("create_multipart_upload", {"Bucket": b, "Key": "mpu-new"}),
            "UploadPart": ("upload_part", {**upload, "PartNumber": 2, "Body": PART_BODY}),
            "UploadPartCopy": (
                "upload_part_copy", {**upload, "PartNumber": 2, "CopySource": source},
            ),
            "CompleteMultipartUpload": (
                "complete_multipart_upload",
                {
                    **upload,
                    "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": self.part_etag}]},
                },
            ),
            "AbortMultipartUpload": ("abort_multipart_upload", upload),
            "ListParts": ("list_parts", upload),
        }[op]

    def call(self, client, op, **extra):
        method, params = self.request(op)
        response = getattr(client, method)(**params, **extra)
        if "Body" in response and hasattr(response["Body"], "read"):
            response["Body"].read()
        return response

    def key_exists(self, key):
        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as error:
            if status_of(error.response) == 404:
                return False
            raise

    def upload_ids(self):
        uploads = self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return sorted((u["Key"], u["UploadId"]) for u in uploads)

    def unchanged(self, op, why):
        s3, b = self.s3, self.bucket
        if op == "CreateBucket":
            assert not bucket_exists(s3, self.new_bucket), f"{why}: the bucket was created"
        elif op == "DeleteBucket":
            assert bucket_exists(s3, self.empty_bucket or b), f"{why}: the bucket was deleted"
        elif op in ("DeleteObject", "DeleteObjects"):
            head = s3.head_object(Bucket=b, Key="obj")
            assert head["ETag"] == self.etag, f"{why}: obj changed"
        elif op == "PutObject":
            assert not self.key_exists("new"), f"{why}: the object was stored"
        elif op == "CopyObject":
            assert not self.key_exists("copy"), f"{why}: the copy was stored"
        elif op == "CreateMultipartUpload":
            assert "mpu-new" not in [k for k, _ in self.upload_ids()], (
                f"{why}: the upload was created"
            )
        elif op in ("UploadPart", "UploadPartCopy"):
            parts = s3.list_parts(Bucket=b, Key="mpu", UploadId=self.upload_id).get("Parts", [])
            assert [p["PartNumber"] for p in parts] == [1], f"{why}: a part was stored: {parts}"
        elif op in ("CompleteMultipartUpload", "AbortMultipartUpload"):
            assert ("mpu", self.upload_id) in self.upload_ids(), f"{why}: the upload is gone"
            assert not self.key_exists("mpu"), f"{why}: the upload became an object"


@pytest.fixture
def scene(s3, bucket):
    made = Scene(s3, bucket)
    yield made
    made.cleanup()


def plausible_value(op, header):
    """A value a real client would send with `header` on `op`."""
    if header.startswith("x-amz-checksum-"):
        body = {"PutObject": NEW_BODY, "UploadPart": PART_BODY}.get(op, PART_BODY)
        algorithm = header.removeprefix("x-amz-checksum-")
        if algorithm == "sha512":
            return b64(hashlib.sha512(body).digest())
        if algorithm == "md5":
            return b64(hashlib.md5(body).digest())
        # xxhash needs a package this suite does not use; the length is right.
        length = {"xxhash64": 8, "xxhash3": 8, "xxhash128": 16}[algorithm]
        return b64(random_bytes(length, 7))
    if header.endswith("customer-algorithm"):
        return "AES256"
    if header.endswith("customer-key"):
        return b64(SSE_C_KEY)
    if header.endswith("customer-key-md5"):
        return b64(hashlib.md5(SSE_C_KEY).digest())
    return {
        "x-amz-server-side-encryption": "AES256",
        "x-amz-server-side-encryption-aws-kms-key-id":
            "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
        "x-amz-server-side-encryption-context": b64(json.dumps({"project": "photon"}).encode()),
        "x-amz-server-side-encryption-bucket-key-enabled": "true",
        "x-amz-grant-full-control": 'id="111122223333"',
        "x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/global/AllUsers"',
        "x-amz-grant-read-acp": 'id="111122223333"',
        "x-amz-grant-write": 'id="111122223333"',
        "x-amz-grant-write-acp": 'id="111122223333"',
        "x-amz-bucket-namespace": "account-regional",
        "x-amz-mfa": "arn:aws:iam::111122223333:mfa/root 123456",
        "x-amz-bypass-governance-retention": "true",
        "x-amz-object-lock-mode": "GOVERNANCE",
        "x-amz-object-lock-retain-until-date": "2030-01-01T00:00:00.000Z",
        "x-amz-object-lock-legal-hold": "ON",
        "x-amz-website-redirect-location": "/elsewhere.html",
        "x-amz-tagging": "project=photon&tier=gold",
        "x-amz-write-offset-bytes": "0",
    }[header]


HEAD_OPS = ("HeadBucket", "HeadObject")


def expect_refused(scene, op, headers, named=None):
    """Sends `op` with `headers` added on a fresh client that adds no
    checksum of its own; expects 501 NotImplemented naming `named` (the
    one header, by default), then that nothing changed."""
    named = named or next(iter(headers))
    why = f"{op} with {headers}"
    client = add_headers(plain_client(), op, headers)
    try:
        response = scene.call(client, op)
    except ClientError as error:
        response = error.response
        status, fields = status_of(response), response.get("Error", {})
        assert status == 501, f"{why}: expected 501 NotImplemented, got {status} {fields}"
        if op not in HEAD_OPS:
            assert fields.get("Code") == "NotImplemented", f"{why}: {fields}"
            names = named if isinstance(named, (tuple, list)) else (named,)
            assert (fields.get("Header") or "").lower() in names, (
                f"{why}: the error names header {fields.get('Header')!r}, not {named}: {fields}"
            )
    else:
        pytest.fail(f"{why}: accepted ({status_of(response)}) instead of 501 NotImplemented")
    scene.unchanged(op, why)


# ------------------------------------------------------------------ the walk


@functools.cache
def defined_tests():
    """Names of the test functions of the S3 client test files."""
    names = set()
    here = pathlib.Path(__file__).parent
    for file in ("test_headers.py", "test_s3_behaviour.py", "test_boto3.py"):
        tree = ast.parse((here / file).read_text())
        names |= {
            node.name
            for node in tree.body
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
        }
    return names


def pair_id(pair):
    return f"{pair[0]}:{pair[1]}"


@pytest.mark.parametrize("op,header", MODEL_HEADERS, ids=map(pair_id, MODEL_HEADERS))
def test_model_header_is_classified(op, header):
    """Each header of the model is honoured (and a named test proves it) or
    refused (and test_refused_header walks it), not both."""
    honoured = (op, header) in HONOURED
    refused = header in REFUSED.get(op, ())
    assert honoured or refused, (
        f"{op} {header}: botocore defines it but it is in neither HONOURED nor REFUSED "
        "of test_headers.py; decide which the server does and add it"
    )
    assert not (honoured and refused), f"{op} {header}: both honoured and refused"
    if honoured:
        name = HONOURED[(op, header)]
        assert name in defined_tests(), (
            f"{op} {header}: HONOURED names {name}, which is not a test in "
            "test_headers.py, test_s3_behaviour.py or test_boto3.py"
        )


def test_tables_name_only_model_headers():
    model = set(MODEL_HEADERS)
    stale = sorted(set(HONOURED) - model) + sorted(set(REFUSED_PAIRS) - model)
    assert not stale, f"in the tables but not in botocore's model: {stale}"
    assert len(set(REFUSED_PAIRS)) == len(REFUSED_PAIRS), "REFUSED lists a header twice"


@pytest.mark.parametrize("op,header", REFUSED_PAIRS, ids=map(pair_id, REFUSED_PAIRS))
def test_refused_header(scene, op, header):
    expect_refused(scene, op, {header: plausible_value(op, header)})


# Honoured headers with a value LightningStor does not implement.
REFUSED_VALUES = [
    ("PutObject", "x-amz-acl", "public-read"),
    ("CopyObject", "x-amz-acl", "public-read"),
    ("CreateMultipartUpload", "x-amz-acl", "public-read"),
    ("CreateBucket", "x-amz-acl", "public-read"),
    ("PutObject", "x-amz-acl", "bucket-owner-full-control"),
    ("PutObject", "x-amz-storage-class", "GLACIER"),
    ("CopyObject", "x-amz-storage-class", "GLACIER"),
    ("CreateMultipartUpload", "x-amz-storage-class", "GLACIER"),
    ("PutObject", "x-amz-storage-class", "STANDARD_IA"),
    ("CreateBucket", "x-amz-bucket-object-lock-enabled", "true"),
    ("CreateBucket", "x-amz-object-ownership", "ObjectWriter"),
    ("CreateBucket", "x-amz-object-ownership", "BucketOwnerPreferred"),
    ("CreateMultipartUpload", "x-amz-checksum-algorithm", "SHA512"),
    ("CopyObject", "x-amz-checksum-algorithm", "SHA512"),
]


@pytest.mark.parametrize(
    "op,header,value", REFUSED_VALUES, ids=[f"{o}:{h}={v}" for o, h, v in REFUSED_VALUES]
)
def test_refused_value(scene, op, header, value):
    expect_refused(scene, op, {header: value})


def test_unknown_header_is_refused(scene):
    expect_refused(scene, "PutObject", {"x-amz-frobnicate": "1"})


# Headers honoured by one operation and sent to another.
OTHER_OPERATIONS = [
    ("PutObject", "x-amz-checksum-mode", "ENABLED"),
    ("PutObject", "x-amz-mp-object-size", str(len(NEW_BODY))),
    ("PutObject", "x-amz-metadata-directive", "REPLACE"),
    ("PutObject", "x-amz-if-match-size", str(len(NEW_BODY))),
    ("PutObject", "x-amz-checksum-type", "FULL_OBJECT"),
    ("GetObject", "x-amz-meta-color", "blue"),
    ("GetObject", "x-amz-storage-class", "STANDARD"),
    ("DeleteObject", "x-amz-copy-source-if-match", '"0123456789abcdef0123456789abcdef"'),
    ("ListObjectsV2", "x-amz-acl", "private"),
    ("UploadPart", "x-amz-meta-color", "blue"),
    ("UploadPart", "x-amz-storage-class", "STANDARD"),
    ("CompleteMultipartUpload", "x-amz-metadata-directive", "COPY"),
    ("AbortMultipartUpload", "x-amz-if-match-size", "1"),
    ("HeadBucket", "x-amz-checksum-mode", "ENABLED"),
]


@pytest.mark.parametrize(
    "op,header,value", OTHER_OPERATIONS, ids=[f"{o}:{h}" for o, h, _ in OTHER_OPERATIONS]
)
def test_header_of_another_operation_is_refused(scene, op, header, value):
    expect_refused(scene, op, {header: value})


def test_sse_c_headers_together_are_refused(scene):
    # As a client sends them: all three at once. The error names one.
    headers = {h: plausible_value("PutObject", h) for h in SSE_C}
    expect_refused(scene, "PutObject", headers, named=SSE_C)
    headers = {h: plausible_value("GetObject", h) for h in SSE_C}
    expect_refused(scene, "GetObject", headers, named=SSE_C)


# ------------------------------------------------------------------ honoured ones


@pytest.mark.parametrize("op", OWNER_OPS)
def test_expected_bucket_owner(s3, scene, op):
    """x-amz-expected-bucket-owner: the owner's id works, another one is
    403 AccessDenied and changes nothing."""
    if op == "DeleteBucket":
        scene.make_empty_bucket()
    owner = owner_id(s3)
    code = "403" if op in HEAD_OPS else "AccessDenied"
    why = f"{op} with x-amz-expected-bucket-owner: {WRONG_OWNER}"
    expect_error(403, code, scene.call, s3, op, ExpectedBucketOwner=WRONG_OWNER)
    scene.unchanged(op, why)
    try:
        scene.call(s3, op, ExpectedBucketOwner=owner)
    except ClientError as error:
        pytest.fail(f"{op} with the owner's id {owner}: {error.response.get('Error')}")


@pytest.mark.parametrize("op", PAYER_OPS)
def test_request_payer(s3, scene, op):
    """x-amz-request-payer: requester is accepted (no bucket is
    requester-pays, so it changes nothing)."""
    try:
        scene.call(s3, op, RequestPayer="requester")
    except ClientError as error:
        pytest.fail(f"{op} with x-amz-request-payer: requester: {error.response.get('Error')}")


@pytest.mark.parametrize("op", LIST_OPS)
def test_optional_object_attributes(s3, scene, op):
    """x-amz-optional-object-attributes: RestoreStatus is accepted; nothing
    is archived, so no entry has a restore status."""
    response = scene.call(s3, op, OptionalObjectAttributes=["RestoreStatus"])
    entries = response.get("Contents", response.get("Versions", []))
    assert [e["Key"] for e in entries] == ["obj"], response
    assert not any("RestoreStatus" in e for e in entries), entries


def test_value_restricted_headers_accept_their_value(s3, bucket):
    """x-amz-acl private, x-amz-storage-class STANDARD, and on CreateBucket
    x-amz-bucket-object-lock-enabled false and x-amz-object-ownership
    BucketOwnerEnforced change nothing and are accepted."""
    plain = {"ACL": "private", "StorageClass": "STANDARD"}
    s3.put_object(Bucket=bucket, Key="put", Body=b"put", **plain)
    head = s3.head_object(Bucket=bucket, Key="put")
    assert head.get("StorageClass", "STANDARD") == "STANDARD", head
    s3.copy_object(
        Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "put"}, **plain
    )
    assert s3.get_object(Bucket=bucket, Key="copy")["Body"].read() == b"put"
    created = s3.create_multipart_upload(Bucket=bucket, Key="mpu", **plain)
    s3.abort_multipart_upload(Bucket=bucket, Key="mpu", UploadId=created["UploadId"])
    name = unique_bucket_name("plain-bucket")
    s3.create_bucket(
        Bucket=name, ACL="private", ObjectLockEnabledForBucket=False,
        ObjectOwnership="BucketOwnerEnforced",
    )
    try:
        assert bucket_exists(s3, name)
    finally:
        s3.delete_bucket(Bucket=name)


def test_sdk_checksum_algorithm_names_the_checksum(s3, bucket):
    """x-amz-sdk-checksum-algorithm must name the x-amz-checksum-* header
    sent with it (on PutObject, UploadPart and DeleteObjects)."""
    body = random_bytes(4000, 70)
    sha1 = b64(hashlib.sha1(body).digest())
    # botocore sends both headers when asked for an algorithm.
    put = s3.put_object(Bucket=bucket, Key="ok", Body=body, ChecksumAlgorithm="SHA1")
    assert put.get("ChecksumSHA1") == sha1, put
    # Naming one algorithm and sending another's checksum.
    mismatched = add_headers(
        plain_client(), "PutObject", {"x-amz-sdk-checksum-algorithm": "SHA256"}
    )
    expect_error(
        400, "InvalidRequest", mismatched.put_object, Bucket=bucket, Key="bad", Body=body,
        ChecksumSHA1=sha1,
    )
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="bad")

    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    part = s3.upload_part(
        Bucket=bucket, Key="mpu", UploadId=upload_id, PartNumber=1, Body=body,
        ChecksumAlgorithm="SHA1",
    )
    assert part.get("ChecksumSHA1") == sha1, part
    mismatched = add_headers(
        plain_client(), "UploadPart", {"x-amz-sdk-checksum-algorithm": "CRC32"}
    )
    expect_error(
        400, "InvalidRequest", mismatched.upload_part, Bucket=bucket, Key="mpu",
        UploadId=upload_id, PartNumber=2, Body=body, ChecksumSHA1=sha1,
    )
    parts = s3.list_parts(Bucket=bucket, Key="mpu", UploadId=upload_id)["Parts"]
    assert [p["PartNumber"] for p in parts] == [1], parts

    mismatched = add_headers(
        make_client(ACCESS_KEY, SECRET_KEY), "DeleteObjects",
        {"x-amz-sdk-checksum-algorithm": "SHA256"},
    )
    expect_error(
        400, "InvalidRequest", mismatched.delete_objects, Bucket=bucket,
        Delete={"Objects": [{"Key": "ok"}]},
    )
    assert s3.head_object(Bucket=bucket, Key="ok")["ContentLength"] == len(body)


def test_expected_bucket_owner_is_the_listed_owner(s3, bucket):
    """The id x-amz-expected-bucket-owner takes is the Owner.ID listings show."""
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    owner = owner_id(s3)
    listed = s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
    assert listed["Owner"]["ID"] == owner, (listed, owner)
    assert "/" in owner, f"the owner id is tenant/project, not {owner!r}"
    s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=owner)
    # Not its tenant alone, nor a longer id.
    for wrong in (owner.split("/")[0], owner + "x"):
        expect_error(
            403, "AccessDenied", s3.list_objects_v2, Bucket=bucket, ExpectedBucketOwner=wrong
        )

