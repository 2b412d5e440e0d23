"""LightningStor's S3 API driven by boto3, asserting what AWS S3 does.

Every supported API with its error codes, presigned URLs, authentication,
tenant isolation and the viewer role. The helpers and fixtures (and how to
run this by hand against a `photon dev`) are in conftest.py beside this file.
"""

import concurrent.futures
import datetime
import hashlib
import re
import time
import urllib.parse
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import (
    ACCESS_KEY,
    CHECKSUMS,
    CHUNK,
    ENDPOINT,
    MIB,
    PART_MIN,
    REGION,
    SECRET_KEY,
    assert_request_id,
    b64,
    empty_and_delete,
    error_fields,
    eventually,
    expect_error,
    get_bytes,
    headers_of,
    http,
    make_client,
    md5_hex,
    multipart_etag,
    random_bytes,
    read_body,
    status_of,
    unique_bucket_name,
)

# ---------------------------------------------------------------- buckets


def test_list_buckets_shows_the_new_bucket(s3, bucket):
    response = s3.list_buckets()
    assert_request_id(response)
    mine = [b for b in response["Buckets"] if b["Name"] == bucket]
    assert len(mine) == 1, response["Buckets"]
    age = datetime.datetime.now(datetime.timezone.utc) - mine[0]["CreationDate"]
    assert abs(age.total_seconds()) < 600, mine[0]


def test_create_bucket_twice_is_owned_by_you(s3, bucket):
    # The contract's choice: AWS itself answers 200 in us-east-1 for legacy
    # reasons and BucketAlreadyOwnedByYou in every other region.
    expect_error(409, "BucketAlreadyOwnedByYou", s3.create_bucket, Bucket=bucket)


def test_create_bucket_with_location_constraint(s3):
    name = unique_bucket_name("location")
    # us-east-1 is the default region: naming it explicitly is an error.
    expect_error(
        400,
        "InvalidLocationConstraint",
        s3.create_bucket,
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "us-east-1"},
    )
    # A region this endpoint does not serve.
    expect_error(
        400,
        ("InvalidLocationConstraint", "IllegalLocationConstraintException"),
        s3.create_bucket,
        Bucket=name,
        CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
    )
    expect_error(404, "404", s3.head_bucket, Bucket=name)


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # shorter than 3
        "a" * 64,  # longer than 63
        "Upper-case-bucket",
        "under_score-bucket",
        "-leading-dash",
        "trailing-dash-",
        "two..dots",
        "192.168.5.4",  # formatted as an IP address
        "xn--punycode-prefix",
        "sthree-prefixed",
        "suffixed-s3alias",
    ],
)
def test_create_bucket_invalid_name(s3, name):
    expect_error(400, "InvalidBucketName", s3.create_bucket, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]


def test_create_bucket_edge_names(s3):
    suffix = uuid.uuid4().hex[:10]
    longest = (f"long-{suffix}-" + "x" * 63)[:63]
    dotted = f"dotted.name-{suffix}.b"
    for name in (longest, dotted):
        s3.create_bucket(Bucket=name)
        try:
            s3.head_bucket(Bucket=name)
        finally:
            s3.delete_bucket(Bucket=name)


def test_head_bucket(s3, bucket):
    response = s3.head_bucket(Bucket=bucket)
    assert status_of(response) == 200
    assert_request_id(response)
    assert headers_of(response).get("x-amz-bucket-region") == REGION
    expect_error(404, "404", s3.head_bucket, Bucket=unique_bucket_name("missing"))


def test_get_bucket_location(s3, bucket):
    # us-east-1 is reported as an empty LocationConstraint.
    assert s3.get_bucket_location(Bucket=bucket).get("LocationConstraint") is None
    expect_error(
        404, "NoSuchBucket", s3.get_bucket_location, Bucket=unique_bucket_name("missing")
    )


def test_delete_bucket(s3):
    name = unique_bucket_name("delete-bucket")
    s3.create_bucket(Bucket=name)
    s3.put_object(Bucket=name, Key="k", Body=b"v")
    expect_error(409, "BucketNotEmpty", s3.delete_bucket, Bucket=name)
    s3.delete_object(Bucket=name, Key="k")
    response = s3.delete_bucket(Bucket=name)
    assert status_of(response) == 204
    expect_error(404, "404", s3.head_bucket, Bucket=name)
    expect_error(404, "NoSuchBucket", s3.delete_bucket, Bucket=name)
    assert name not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    # The name is free again.
    s3.create_bucket(Bucket=name)
    s3.delete_bucket(Bucket=name)


def test_operations_on_missing_bucket(s3):
    name = unique_bucket_name("missing")
    expect_error(404, "NoSuchBucket", s3.put_object, Bucket=name, Key="k", Body=b"v")
    expect_error(404, "NoSuchBucket", s3.get_object, Bucket=name, Key="k")
    expect_error(404, "NoSuchBucket", s3.list_objects_v2, Bucket=name)
    expect_error(404, "NoSuchBucket", s3.delete_object, Bucket=name, Key="k")
    expect_error(404, "NoSuchBucket", s3.create_multipart_upload, Bucket=name, Key="k")


# ---------------------------------------------------------------- PutObject


def test_put_get_head_round_trip(s3, bucket):
    body = random_bytes(100_000, 1)
    put = s3.put_object(
        Bucket=bucket,
        Key="doc.bin",
        Body=body,
        Metadata={"color": "blue", "x-multi-word": "a b c", "MixedCase": "Value"},
        ContentType="application/x-photon",
        ContentEncoding="identity",
        ContentDisposition='attachment; filename="doc.bin"',
        ContentLanguage="fr-CA",
        CacheControl="max-age=3600, must-revalidate",
    )
    assert status_of(put) == 200
    assert_request_id(put)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    # S3 keeps metadata names in lower case.
    metadata = {"color": "blue", "x-multi-word": "a b c", "mixedcase": "Value"}
    for response in (
        s3.head_object(Bucket=bucket, Key="doc.bin"),
        s3.get_object(Bucket=bucket, Key="doc.bin"),
    ):
        assert_request_id(response)
        assert response["ETag"] == put["ETag"]
        assert response["ContentLength"] == len(body)
        assert response["Metadata"] == metadata
        assert response["ContentType"] == "application/x-photon"
        assert response["ContentEncoding"] == "identity"
        assert response["ContentDisposition"] == 'attachment; filename="doc.bin"'
        assert response["ContentLanguage"] == "fr-CA"
        assert response["CacheControl"] == "max-age=3600, must-revalidate"
        assert response.get("AcceptRanges") == "bytes"
        age = datetime.datetime.now(datetime.timezone.utc) - response["LastModified"]
        assert abs(age.total_seconds()) < 600
        if "Body" in response:
            assert read_body(response) == body


def test_put_overwrites(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"first", Metadata={"gen": "1"})
    s3.put_object(Bucket=bucket, Key="k", Body=b"second!")
    got = s3.get_object(Bucket=bucket, Key="k")
    assert read_body(got) == b"second!"
    assert got["Metadata"] == {}
    # S3's type for an object stored without Content-Type.
    assert got["ContentType"] == "binary/octet-stream"


def test_put_empty_object(s3, bucket):
    put = s3.put_object(Bucket=bucket, Key="empty", Body=b"")
    assert put["ETag"] == '"d41d8cd98f00b204e9800998ecf8427e"'
    assert s3.head_object(Bucket=bucket, Key="empty")["ContentLength"] == 0
    assert get_bytes(s3, bucket, "empty") == b""
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"]) for o in listed] == [("empty", 0)]


def test_puts_after_an_empty_put_on_one_connection(bucket):
    # botocore sends `Expect: 100-continue` even with Content-Length: 0; the
    # next request on the kept-alive connection must still be answered
    # (Garage 2.5.0 hangs here).
    client = make_client(ACCESS_KEY, SECRET_KEY, max_pool_connections=1, read_timeout=10)
    bodies = [("e1", b""), ("small", b"gamma\n"), ("e2", b""), ("e3", b""), ("big", b"x" * 100_000)]
    for key, body in bodies:
        client.put_object(Bucket=bucket, Key=key, Body=body)
    for key, body in bodies:
        assert get_bytes(client, bucket, key) == body


def test_put_if_none_match(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="once", Body=b"one", IfNoneMatch="*")
    assert status_of(first) == 200
    expect_error(
        412, "PreconditionFailed", s3.put_object, Bucket=bucket, Key="once", Body=b"two",
        IfNoneMatch="*",
    )
    assert get_bytes(s3, bucket, "once") == b"one"


def test_put_if_match(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="k", Body=b"v1")["ETag"]
    expect_error(
        412, "PreconditionFailed", s3.put_object, Bucket=bucket, Key="k", Body=b"bad",
        IfMatch='"0123456789abcdef0123456789abcdef"',
    )
    assert get_bytes(s3, bucket, "k") == b"v1"
    second = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch=etag)
    assert second["ETag"] == f'"{md5_hex(b"v2")}"'
    assert get_bytes(s3, bucket, "k") == b"v2"
    # The old ETag no longer matches.
    expect_error(
        412, "PreconditionFailed", s3.put_object, Bucket=bucket, Key="k", Body=b"v3",
        IfMatch=etag,
    )
    # If-Match on a key that does not exist: 404, as in AWS's conditional writes.
    expect_error(
        404, "NoSuchKey", s3.put_object, Bucket=bucket, Key="absent", Body=b"x",
        IfMatch=etag,
    )


def test_put_content_md5(s3, bucket):
    body = b"content-md5 checked body"
    right = b64(hashlib.md5(body).digest())
    s3.put_object(Bucket=bucket, Key="ok", Body=body, ContentMD5=right)
    assert get_bytes(s3, bucket, "ok") == body
    wrong = b64(hashlib.md5(b"something else").digest())
    expect_error(
        400, "BadDigest", s3.put_object, Bucket=bucket, Key="bad", Body=body, ContentMD5=wrong
    )
    for malformed in ("not base64 at all!", b64(b"short"), b64(b"x" * 17)):
        expect_error(
            400, "InvalidDigest", s3.put_object, Bucket=bucket, Key="bad", Body=body,
            ContentMD5=malformed,
        )
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="bad")


@pytest.mark.parametrize("algorithm", sorted(CHECKSUMS))
def test_put_flexible_checksum(s3, bucket, algorithm):
    body = random_bytes(70_000, 2)
    member = f"Checksum{algorithm}"
    value = CHECKSUMS[algorithm](body)
    put = s3.put_object(Bucket=bucket, Key="ok", Body=body, **{member: value})
    # S3 answers with the checksum it verified and stored.
    assert put.get(member) == value, put
    assert get_bytes(s3, bucket, "ok") == body
    wrong = CHECKSUMS[algorithm](body + b"!")
    expect_error(400, "BadDigest", s3.put_object, Bucket=bucket, Key="bad", Body=body,
                 **{member: wrong})
    # Not base64 of the algorithm's digest length: the header is rejected.
    malformed = b64(b"\x01\x02\x03")
    expect_error(400, "InvalidRequest", s3.put_object, Bucket=bucket, Key="bad", Body=body,
                 **{member: malformed})
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="bad")


ODD_KEYS = [
    "with space",
    "plus+sign",
    "percent%41literal%",
    "ünïcødé/ключ/名前.txt",
    "a//double//slash",
    "trailing/",
    "/leading-slash",
    "query?x=1&y=2#frag",
    "tilde~star*paren()",
    "xml<&>\"'chars",
    "emoji-\U0001F680",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_odd_keys(s3, bucket, key):
    body = key.encode() * 3
    s3.put_object(Bucket=bucket, Key=key, Body=body)
    assert get_bytes(s3, bucket, key) == body
    assert s3.head_object(Bucket=bucket, Key=key)["ContentLength"] == len(body)
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=key)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    listed = s3.list_objects(Bucket=bucket)
    assert [o["Key"] for o in listed["Contents"]] == [key]
    copy = s3.copy_object(Bucket=bucket, Key=key + ".copy", CopySource={"Bucket": bucket, "Key": key})
    assert copy["CopyObjectResult"]["ETag"] == f'"{md5_hex(body)}"'
    assert get_bytes(s3, bucket, key + ".copy") == body
    s3.delete_object(Bucket=bucket, Key=key)
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=key)


def test_key_length_limit(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")
    expect_error(400, "KeyTooLongError", s3.put_object, Bucket=bucket, Key="k" * 1025, Body=b"x")
    # The limit is in UTF-8 bytes, not characters.
    s3.put_object(Bucket=bucket, Key="é" * 512, Body=b"x")
    expect_error(400, "KeyTooLongError", s3.put_object, Bucket=bucket, Key="é" * 513, Body=b"x")
    expect_error(
        400, "KeyTooLongError", s3.create_multipart_upload, Bucket=bucket, Key="k" * 1025
    )
    assert get_bytes(s3, bucket, "k" * 1024) == b"x"


def test_metadata_size_limit(s3, bucket):
    # 2 KiB counts the UTF-8 bytes of every name and value.
    fits = {"a": "v" * 1000, "b": "w" * 1000}
    s3.put_object(Bucket=bucket, Key="fits", Body=b"x", Metadata=fits)
    assert s3.head_object(Bucket=bucket, Key="fits")["Metadata"] == fits
    too_big = {"a": "v" * 1500, "b": "w" * 1500}
    expect_error(
        400, "MetadataTooLarge", s3.put_object, Bucket=bucket, Key="big", Body=b"x",
        Metadata=too_big,
    )
    expect_error(
        400, "MetadataTooLarge", s3.create_multipart_upload, Bucket=bucket, Key="big",
        Metadata=too_big,
    )
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="big")


# ---------------------------------------------------------------- GetObject


RANGE_CASES = [
    # (Range header, expected first byte, last byte) over a 100-byte object.
    ("bytes=0-0", 0, 0),
    ("bytes=0-99", 0, 99),
    ("bytes=0-100", 0, 99),
    ("bytes=0-999999", 0, 99),
    ("bytes=1-99", 1, 99),
    ("bytes=50-", 50, 99),
    ("bytes=0-", 0, 99),
    ("bytes=99-99", 99, 99),
    ("bytes=-1", 99, 99),
    ("bytes=-10", 90, 99),
    ("bytes=-100", 0, 99),
    ("bytes=-101", 0, 99),
]


def test_get_ranges(s3, bucket):
    body = random_bytes(100, 3)
    s3.put_object(Bucket=bucket, Key="r", Body=body)
    for header, first, last in RANGE_CASES:
        got = s3.get_object(Bucket=bucket, Key="r", Range=header)
        assert status_of(got) == 206, header
        assert got["ContentRange"] == f"bytes {first}-{last}/100", header
        assert got["ContentLength"] == last - first + 1, header
        assert read_body(got) == body[first : last + 1], header
    # A syntactically valid range past the end cannot be satisfied.
    for header in ("bytes=100-100", "bytes=100-110", "bytes=-0", "bytes=150-"):
        expect_error(416, "InvalidRange", s3.get_object, Bucket=bucket, Key="r", Range=header)
    # A range whose last byte precedes its first is ignored: the whole object.
    got = s3.get_object(Bucket=bucket, Key="r", Range="bytes=10-5")
    assert status_of(got) == 200
    assert "ContentRange" not in got
    assert read_body(got) == body
    # HEAD answers ranges too.
    head = s3.head_object(Bucket=bucket, Key="r", Range="bytes=10-19")
    assert status_of(head) == 206
    assert head["ContentLength"] == 10
    assert head["ContentRange"] == "bytes 10-19/100"


def test_get_conditional(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="c", Body=b"conditional")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="c")["LastModified"]
    before = modified - datetime.timedelta(days=1)
    # A time after the write that is not in the future (a future date is
    # invalid and would be ignored).
    after = modified + datetime.timedelta(seconds=1)
    wait = (after - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 0.2
    if wait > 0:
        time.sleep(wait)
    other = '"0123456789abcdef0123456789abcdef"'
    read = lambda **kw: s3.get_object(Bucket=bucket, Key="c", **kw)  # noqa: E731
    head = lambda **kw: s3.head_object(Bucket=bucket, Key="c", **kw)  # noqa: E731

    for conditions, outcome in [
        ({"IfMatch": etag}, 200),
        ({"IfMatch": etag.strip('"')}, 200),
        ({"IfMatch": other}, 412),
        ({"IfNoneMatch": etag}, 304),
        ({"IfNoneMatch": other}, 200),
        ({"IfModifiedSince": before}, 200),
        ({"IfModifiedSince": after}, 304),
        ({"IfUnmodifiedSince": before}, 412),
        ({"IfUnmodifiedSince": after}, 200),
        # The two combinations the GetObject reference spells out:
        ({"IfMatch": etag, "IfUnmodifiedSince": before}, 200),
        ({"IfNoneMatch": etag, "IfModifiedSince": before}, 304),
        # If-None-Match decides over If-Modified-Since.
        ({"IfNoneMatch": other, "IfModifiedSince": after}, 200),
    ]:
        for name, call in (("GET", read), ("HEAD", head)):
            if outcome == 200:
                try:
                    response = call(**conditions)
                except ClientError as error:
                    pytest.fail(f"{name} {conditions}: expected 200, got {error.response['Error']}")
                assert status_of(response) == 200, (name, conditions)
                if name == "GET":
                    assert read_body(response) == b"conditional"
            else:
                code = str(outcome)
                if name == "GET" and outcome == 412:
                    code = "PreconditionFailed"
                with pytest.raises(ClientError) as caught:
                    call(**conditions)
                response = caught.value.response
                assert status_of(response) == outcome, (name, conditions, response)
                assert response["Error"]["Code"] == code, (name, conditions, response)
                if outcome == 304:
                    assert headers_of(response).get("etag") == etag, (name, conditions)


def test_get_response_overrides(s3, bucket):
    s3.put_object(Bucket=bucket, Key="o", Body=b"override me", ContentType="text/plain")
    expires = datetime.datetime(2030, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
    got = s3.get_object(
        Bucket=bucket,
        Key="o",
        ResponseContentType="application/json",
        ResponseContentDisposition='attachment; filename="o.json"',
        ResponseContentEncoding="identity",
        ResponseContentLanguage="de",
        ResponseCacheControl="no-cache",
        ResponseExpires=expires,
    )
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == 'attachment; filename="o.json"'
    assert got["ContentEncoding"] == "identity"
    assert got["ContentLanguage"] == "de"
    assert got["CacheControl"] == "no-cache"
    assert headers_of(got).get("expires") == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert read_body(got) == b"override me"
    # The stored headers are unchanged.
    assert s3.head_object(Bucket=bucket, Key="o")["ContentType"] == "text/plain"


def test_get_and_head_missing_key(s3, bucket):
    response = expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="nope")
    assert response["Error"].get("Key") in (None, "nope")
    expect_error(404, "404", s3.head_object, Bucket=bucket, Key="nope")


# ---------------------------------------------------------------- deletes


def test_delete_object_is_idempotent(s3, bucket):
    s3.put_object(Bucket=bucket, Key="d", Body=b"x")
    for _ in range(2):
        response = s3.delete_object(Bucket=bucket, Key="d")
        assert status_of(response) == 204
        assert_request_id(response)
    assert status_of(s3.delete_object(Bucket=bucket, Key="never-was")) == 204
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="d")


def test_delete_objects(s3, bucket):
    for key in ("a", "b", "c/d", "keep"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    response = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": k} for k in ("a", "b", "missing")]},
    )
    assert sorted(d["Key"] for d in response["Deleted"]) == ["a", "b", "missing"]
    assert not response.get("Errors")
    quiet = s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": "c/d"}, {"Key": "also-missing"}], "Quiet": True},
    )
    # Quiet mode reports only the failures.
    assert not quiet.get("Deleted")
    assert not quiet.get("Errors")
    remaining = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert remaining == ["keep"]


# ---------------------------------------------------------------- CopyObject


def test_copy_object_metadata_copy_and_replace(s3, bucket):
    body = random_bytes(30_000, 4)
    src = s3.put_object(
        Bucket=bucket, Key="src", Body=body, Metadata={"origin": "src"}, ContentType="text/x-src"
    )
    copied = s3.copy_object(Bucket=bucket, Key="copy", CopySource={"Bucket": bucket, "Key": "src"})
    assert copied["CopyObjectResult"]["ETag"] == src["ETag"]
    assert "LastModified" in copied["CopyObjectResult"]
    got = s3.get_object(Bucket=bucket, Key="copy")
    assert read_body(got) == body
    assert got["Metadata"] == {"origin": "src"}
    assert got["ContentType"] == "text/x-src"

    s3.copy_object(
        Bucket=bucket,
        Key="replaced",
        CopySource={"Bucket": bucket, "Key": "src"},
        MetadataDirective="REPLACE",
        Metadata={"fresh": "yes"},
        ContentType="text/x-new",
    )
    got = s3.get_object(Bucket=bucket, Key="replaced")
    assert read_body(got) == body
    assert got["Metadata"] == {"fresh": "yes"}
    assert got["ContentType"] == "text/x-new"
    # The source is untouched.
    assert s3.head_object(Bucket=bucket, Key="src")["Metadata"] == {"origin": "src"}


def test_copy_object_across_buckets(s3, bucket):
    target = unique_bucket_name("copy-target")
    s3.create_bucket(Bucket=target)
    try:
        s3.put_object(Bucket=bucket, Key="x", Body=b"across")
        s3.copy_object(Bucket=target, Key="y", CopySource={"Bucket": bucket, "Key": "x"})
        assert get_bytes(s3, target, "y") == b"across"
    finally:
        empty_and_delete(s3, target)


def test_copy_object_conditions(s3, bucket):
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"cond")["ETag"]
    source = {"Bucket": bucket, "Key": "src"}
    other = '"0123456789abcdef0123456789abcdef"'
    expect_error(
        412, "PreconditionFailed", s3.copy_object, Bucket=bucket, Key="dst", CopySource=source,
        CopySourceIfMatch=other,
    )
    expect_error(
        412, "PreconditionFailed", s3.copy_object, Bucket=bucket, Key="dst", CopySource=source,
        CopySourceIfNoneMatch=etag,
    )
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="dst")
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, CopySourceIfMatch=etag)
    s3.copy_object(Bucket=bucket, Key="dst2", CopySource=source, CopySourceIfNoneMatch=other)
    assert get_bytes(s3, bucket, "dst") == b"cond"
    assert get_bytes(s3, bucket, "dst2") == b"cond"


def test_copy_object_onto_itself(s3, bucket):
    s3.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    source = {"Bucket": bucket, "Key": "self"}
    # Without a change, S3 refuses a copy onto itself.
    expect_error(400, "InvalidRequest", s3.copy_object, Bucket=bucket, Key="self", CopySource=source)
    s3.copy_object(
        Bucket=bucket, Key="self", CopySource=source, MetadataDirective="REPLACE",
        Metadata={"v": "2"},
    )
    got = s3.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"v": "2"}
    assert read_body(got) == b"me"


def test_copy_object_missing_source(s3, bucket):
    expect_error(
        404, "NoSuchKey", s3.copy_object, Bucket=bucket, Key="dst",
        CopySource={"Bucket": bucket, "Key": "absent"},
    )
    expect_error(
        404, "NoSuchBucket", s3.copy_object, Bucket=bucket, Key="dst",
        CopySource={"Bucket": unique_bucket_name("absent"), "Key": "absent"},
    )


# ---------------------------------------------------------------- listing

LIST_KEYS = sorted(
    [f"top-{i:02d}" for i in range(5)]
    + [f"d/{i:02d}" for i in range(6)]
    + [f"d/sub/{i}" for i in range(4)]
    + [f"d/sub2/{i}" for i in range(2)]
    + ["e/1", "e/2/x", "e/2/y", "f", "f/", "f/g", "g//h", "z"]
)


def model_list(keys, prefix="", delimiter="", start_after=""):
    """What a listing returns, in order: ("key", k) and ("prefix", p) entries."""
    entries = []
    seen_prefixes = set()
    for key in sorted(keys):
        if not key.startswith(prefix) or key <= start_after:
            continue
        rest = key[len(prefix):]
        if delimiter and delimiter in rest:
            common = prefix + rest[: rest.index(delimiter) + len(delimiter)]
            if common not in seen_prefixes and common > start_after:
                seen_prefixes.add(common)
                entries.append(("prefix", common))
            continue
        entries.append(("key", key))
    return entries


def page_entries(page):
    entries = [("key", o["Key"]) for o in page.get("Contents", [])]
    entries += [("prefix", p["Prefix"]) for p in page.get("CommonPrefixes", [])]
    return sorted(entries, key=lambda e: e[1])


@pytest.fixture
def listing_bucket(s3, bucket):
    for key in LIST_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    return bucket


def test_list_v2_prefix_and_delimiter(s3, listing_bucket):
    response = s3.list_objects_v2(Bucket=listing_bucket, Delimiter="/")
    assert [o["Key"] for o in response["Contents"]] == [
        "f", *[f"top-{i:02d}" for i in range(5)], "z"
    ]
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["d/", "e/", "f/", "g/"]
    assert response["KeyCount"] == 11
    assert response["IsTruncated"] is False
    assert response.get("Delimiter") == "/"
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="d/", Delimiter="/")
    assert [o["Key"] for o in response["Contents"]] == [f"d/{i:02d}" for i in range(6)]
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == ["d/sub/", "d/sub2/"]
    assert response["Prefix"] == "d/"
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="d/sub")
    assert [o["Key"] for o in response["Contents"]] == [k for k in LIST_KEYS if k.startswith("d/sub")]
    assert "CommonPrefixes" not in response
    response = s3.list_objects_v2(Bucket=listing_bucket, Prefix="no-such-prefix")
    assert response["KeyCount"] == 0
    assert "Contents" not in response
    # Sizes and ETags in the listing are the objects'.
    item = s3.list_objects_v2(Bucket=listing_bucket, Prefix="z")["Contents"][0]
    assert item["Size"] == 1
    assert item["ETag"] == f'"{md5_hex(b"z")}"'
    assert item.get("StorageClass") == "STANDARD"


def test_list_v2_pages_match_model(s3, listing_bucket):
    # StartAfter values that do not fall inside a rolled-up common prefix.
    combos = [
        (prefix, delimiter, start_after)
        for prefix, starts in (("", ("", "e")), ("d/", ("", "d/03", "e")))
        for delimiter in ("", "/")
        for start_after in starts
    ]
    for max_keys in (1, 2, 3):
        for prefix, delimiter, start_after in combos:
            expected = model_list(LIST_KEYS, prefix, delimiter, start_after)
            got, token, pages = [], None, 0
            while True:
                args = {"Bucket": listing_bucket, "MaxKeys": max_keys, "Prefix": prefix}
                if delimiter:
                    args["Delimiter"] = delimiter
                if start_after:
                    args["StartAfter"] = start_after
                if token:
                    args["ContinuationToken"] = token
                page = s3.list_objects_v2(**args)
                pages += 1
                entries = page_entries(page)
                where = (max_keys, prefix, delimiter, start_after, pages)
                assert page["KeyCount"] == len(entries), where
                assert len(entries) <= max_keys, where
                assert page["MaxKeys"] == max_keys, where
                got += entries
                if not page["IsTruncated"]:
                    assert "NextContinuationToken" not in page, where
                    break
                assert entries, where
                token = page["NextContinuationToken"]
                assert token, where
                assert pages <= len(LIST_KEYS) + 1, where
            assert got == expected, (max_keys, prefix, delimiter, start_after)


def test_list_v2_max_keys(s3, listing_bucket):
    assert s3.list_objects_v2(Bucket=listing_bucket)["MaxKeys"] == 1000
    # Above 1000 is no error: S3 answers at most 1000 keys.
    response = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=5000)
    assert response["MaxKeys"] in (1000, 5000)
    assert response["KeyCount"] == len(LIST_KEYS)
    assert response["IsTruncated"] is False
    response = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=0)
    assert response["KeyCount"] == 0
    assert "Contents" not in response


def test_list_pages_hold_at_most_1000_keys(s3, bucket):
    keys = [f"many/{i:04d}" for i in range(1001)]
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
    for max_keys in ({}, {"MaxKeys": 5000}):
        first = s3.list_objects_v2(Bucket=bucket, **max_keys)
        assert first["KeyCount"] == 1000 and first["IsTruncated"] is True
        rest = s3.list_objects_v2(
            Bucket=bucket, ContinuationToken=first["NextContinuationToken"], **max_keys
        )
        assert [o["Key"] for o in first["Contents"] + rest["Contents"]] == keys
        assert rest["IsTruncated"] is False
    first = s3.list_objects(Bucket=bucket)
    assert len(first["Contents"]) == 1000 and first["IsTruncated"] is True
    # DeleteObjects takes up to 1000 keys at once.
    response = s3.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[:1000]], "Quiet": True}
    )
    assert not response.get("Errors")
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == keys[1000:]


def test_list_v2_continuation_token_is_opaque(s3, listing_bucket):
    first = s3.list_objects_v2(Bucket=listing_bucket, MaxKeys=2)
    second = s3.list_objects_v2(
        Bucket=listing_bucket, MaxKeys=2, ContinuationToken=first["NextContinuationToken"]
    )
    assert second["ContinuationToken"] == first["NextContinuationToken"]
    assert [o["Key"] for o in second["Contents"]] == LIST_KEYS[2:4]
    expect_error(
        400, "InvalidArgument", s3.list_objects_v2, Bucket=listing_bucket,
        ContinuationToken="not-a-token-we-issued",
    )


ENCODED_KEYS = ["plain", "with space", "plus+sign", "pct%2Fnot-a-slash", "ünï/cødé", "ctl\x01char",
                "lt<amp&", "dir one/file"]


def test_list_v2_encoding_type_url(s3, bucket):
    for key in ENCODED_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    # EncodingType given explicitly: boto3 leaves the encoded keys alone.
    raw = s3.list_objects_v2(Bucket=bucket, EncodingType="url")
    assert raw.get("EncodingType") == "url"
    encoded = [o["Key"] for o in raw["Contents"]]
    for key in encoded:
        assert not re.search(r"[\x00-\x20\x7f]", key), f"not URL-encoded: {key!r}"
    # boto3 decodes with unquote_plus, so "+" must come as %2B.
    assert sorted(urllib.parse.unquote_plus(k) for k in encoded) == sorted(ENCODED_KEYS)
    raw = s3.list_objects_v2(Bucket=bucket, EncodingType="url", Delimiter="/")
    prefixes = [urllib.parse.unquote_plus(p["Prefix"]) for p in raw["CommonPrefixes"]]
    assert prefixes == ["dir one/", "ünï/"]
    # boto3's default (it asks for url encoding itself, then decodes).
    decoded = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert decoded == sorted(ENCODED_KEYS, key=lambda k: k.encode())
    decoded = [o["Key"] for o in s3.list_objects(Bucket=bucket)["Contents"]]
    assert decoded == sorted(ENCODED_KEYS, key=lambda k: k.encode())


def test_list_is_in_utf8_byte_order(s3, bucket):
    keys = ["a", "B", "é", "z", "Z", "~", "\U0001F680", "ö/x", "a/b", "a-b", "a0"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"")
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert listed == sorted(keys, key=lambda k: k.encode())


def test_list_v1_marker_and_next_marker(s3, listing_bucket):
    # Without a delimiter the next marker is the last key of the page.
    got, marker = [], ""
    while True:
        page = s3.list_objects(Bucket=listing_bucket, MaxKeys=4, Marker=marker)
        assert page.get("Marker", "") == marker
        keys = [o["Key"] for o in page.get("Contents", [])]
        got += keys
        if not page["IsTruncated"]:
            break
        marker = page.get("NextMarker") or keys[-1]
    assert got == LIST_KEYS
    # With a delimiter S3 returns NextMarker, which may be a common prefix.
    for prefix in ("", "d/"):
        expected = model_list(LIST_KEYS, prefix, "/")
        got, marker = [], ""
        while True:
            page = s3.list_objects(
                Bucket=listing_bucket, MaxKeys=2, Marker=marker, Delimiter="/", Prefix=prefix
            )
            entries = page_entries(page)
            assert len(entries) <= 2
            got += entries
            if not page["IsTruncated"]:
                break
            assert page.get("NextMarker") == entries[-1][1], page
            marker = page["NextMarker"]
        assert got == expected, prefix
    # A marker that is not a key: listing starts after it.
    page = s3.list_objects(Bucket=listing_bucket, Marker="d/zzz")
    assert [o["Key"] for o in page["Contents"]] == [k for k in LIST_KEYS if k > "d/zzz"]


# ---------------------------------------------------------------- multipart


def upload_parts(s3, bucket, key, upload_id, parts):
    etags = []
    for number, data in enumerate(parts, start=1):
        response = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )
        assert response["ETag"] == f'"{md5_hex(data)}"'
        etags.append({"PartNumber": number, "ETag": response["ETag"]})
    return etags


def test_multipart_upload(s3, bucket):
    parts = [random_bytes(PART_MIN, 10), random_bytes(PART_MIN, 11), random_bytes(MIB + 7, 12)]
    body = b"".join(parts)
    created = s3.create_multipart_upload(
        Bucket=bucket, Key="mp/object", ContentType="application/x-mp", Metadata={"kind": "mp"}
    )
    assert created["Bucket"] == bucket and created["Key"] == "mp/object"
    upload_id = created["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)
    assert [(u["Key"], u["UploadId"]) for u in listed["Uploads"]] == [("mp/object", upload_id)]
    # Not visible as an object until it completes.
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="mp/object")

    etags = upload_parts(s3, bucket, "mp/object", upload_id, parts)
    listed = s3.list_parts(Bucket=bucket, Key="mp/object", UploadId=upload_id)
    assert [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]] == [
        (e["PartNumber"], e["ETag"], len(d)) for e, d in zip(etags, parts)
    ]
    assert listed["IsTruncated"] is False
    page = s3.list_parts(Bucket=bucket, Key="mp/object", UploadId=upload_id, MaxParts=1)
    assert [p["PartNumber"] for p in page["Parts"]] == [1]
    assert page["IsTruncated"] is True
    assert int(page["NextPartNumberMarker"]) == 1
    page = s3.list_parts(
        Bucket=bucket, Key="mp/object", UploadId=upload_id, PartNumberMarker=1
    )
    assert [p["PartNumber"] for p in page["Parts"]] == [2, 3]

    done = s3.complete_multipart_upload(
        Bucket=bucket, Key="mp/object", UploadId=upload_id, MultipartUpload={"Parts": etags}
    )
    assert done["ETag"] == multipart_etag(parts)
    assert done["Key"] == "mp/object"
    head = s3.head_object(Bucket=bucket, Key="mp/object")
    assert head["ETag"] == multipart_etag(parts)
    assert head["ContentLength"] == len(body)
    assert head["ContentType"] == "application/x-mp"
    assert head["Metadata"] == {"kind": "mp"}
    assert get_bytes(s3, bucket, "mp/object") == body
    # Across the boundary of parts 1 and 2, and of the 8 MiB chunks.
    for first, last in ((PART_MIN - 10, PART_MIN + 10), (CHUNK - 3, CHUNK + 3)):
        got = get_bytes(s3, bucket, "mp/object", Range=f"bytes={first}-{last}")
        assert got == body[first : last + 1]
    listed = s3.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == [
        ("mp/object", len(body), multipart_etag(parts))
    ]
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key="mp/object", UploadId=upload_id)


def test_multipart_complete_errors(s3, bucket):
    key = "mp/errors"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    big = [random_bytes(PART_MIN, 20), random_bytes(PART_MIN, 21)]
    etags = upload_parts(s3, bucket, key, upload_id, big)
    complete = lambda parts: s3.complete_multipart_upload(  # noqa: E731
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    wrong = [etags[0], {"PartNumber": 2, "ETag": '"0123456789abcdef0123456789abcdef"'}]
    expect_error(400, "InvalidPart", complete, wrong)
    expect_error(400, "InvalidPart", complete, [etags[0], {"PartNumber": 3, "ETag": etags[1]["ETag"]}])
    expect_error(400, "InvalidPartOrder", complete, [etags[1], etags[0]])
    for number in (0, 10001):
        expect_error(
            400, "InvalidArgument", s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
            PartNumber=number, Body=b"x",
        )
    # Nothing became visible, and the upload still works after the errors.
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=key)
    done = complete(etags)
    assert done["ETag"] == multipart_etag(big)

    small_key = "mp/small"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=small_key)["UploadId"]
    small = [b"a" * 1024, b"b" * 1024]
    small_etags = upload_parts(s3, bucket, small_key, upload_id, small)
    expect_error(
        400, "EntityTooSmall", s3.complete_multipart_upload, Bucket=bucket, Key=small_key,
        UploadId=upload_id, MultipartUpload={"Parts": small_etags},
    )
    # A single small part is also the last one: allowed.
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=small_key, UploadId=upload_id,
        MultipartUpload={"Parts": small_etags[:1]},
    )
    assert done["ETag"] == multipart_etag(small[:1])
    assert get_bytes(s3, bucket, small_key) == small[0]


def test_multipart_part_overwrite(s3, bucket):
    key = "mp/rewrite"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"old" * 100)
    final = random_bytes(PART_MIN, 30)
    etags = upload_parts(s3, bucket, key, upload_id, [final, b"tail"])
    listed = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id)["Parts"]
    assert [(p["PartNumber"], p["Size"]) for p in listed] == [(1, PART_MIN), (2, 4)]
    s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": etags}
    )
    assert get_bytes(s3, bucket, key) == final + b"tail"


def test_multipart_abort(s3, bucket):
    key = "mp/aborted"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = upload_parts(s3, bucket, key, upload_id, [b"part one"])
    response = s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
    assert status_of(response) == 204
    expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=bucket, Key=key, UploadId=upload_id)
    expect_error(
        404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key=key, UploadId=upload_id,
        PartNumber=2, Body=b"late",
    )
    expect_error(
        404, "NoSuchUpload", s3.complete_multipart_upload, Bucket=bucket, Key=key,
        UploadId=upload_id, MultipartUpload={"Parts": etags},
    )
    assert not s3.list_multipart_uploads(Bucket=bucket).get("Uploads")
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key=key)
    bogus = "bm90LWFuLXVwbG9hZC1pZA"
    expect_error(
        404, "NoSuchUpload", s3.abort_multipart_upload, Bucket=bucket, Key=key, UploadId=bogus
    )
    expect_error(
        404, "NoSuchUpload", s3.upload_part, Bucket=bucket, Key=key, UploadId=bogus,
        PartNumber=1, Body=b"x",
    )


def test_upload_part_copy(s3, bucket):
    source = random_bytes(PART_MIN + MIB, 40)
    s3.put_object(Bucket=bucket, Key="copy-src", Body=source)
    s3.put_object(Bucket=bucket, Key="copy-tail", Body=b"tail bytes")
    key = "mp/from-copies"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    first = s3.upload_part_copy(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1,
        CopySource={"Bucket": bucket, "Key": "copy-src"},
        CopySourceRange=f"bytes=0-{PART_MIN - 1}",
    )
    assert first["CopyPartResult"]["ETag"] == f'"{md5_hex(source[:PART_MIN])}"'
    second = s3.upload_part_copy(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=2,
        CopySource={"Bucket": bucket, "Key": "copy-tail"},
    )
    third = s3.upload_part(
        Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=3, Body=source[PART_MIN:]
    )
    parts = [
        {"PartNumber": 1, "ETag": first["CopyPartResult"]["ETag"]},
        {"PartNumber": 2, "ETag": second["CopyPartResult"]["ETag"]},
        {"PartNumber": 3, "ETag": third["ETag"]},
    ]
    # Part 2 (10 bytes) is not the last: too small.
    expect_error(
        400, "EntityTooSmall", s3.complete_multipart_upload, Bucket=bucket, Key=key,
        UploadId=upload_id, MultipartUpload={"Parts": parts},
    )
    done = s3.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [parts[0], {"PartNumber": 2, "ETag": parts[1]["ETag"]}]},
    )
    expected = source[:PART_MIN] + b"tail bytes"
    assert done["ETag"] == multipart_etag([source[:PART_MIN], b"tail bytes"])
    assert get_bytes(s3, bucket, key) == expected
    expect_error(
        404, "NoSuchKey", s3.upload_part_copy, Bucket=bucket, Key="mp/x",
        UploadId=s3.create_multipart_upload(Bucket=bucket, Key="mp/x")["UploadId"],
        PartNumber=1, CopySource={"Bucket": bucket, "Key": "absent"},
    )


def test_list_multipart_uploads(s3, bucket):
    ids = {}
    for key in ("a/1", "a/2", "b/1"):
        ids[key] = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    second = s3.create_multipart_upload(Bucket=bucket, Key="a/1")["UploadId"]
    assert second != ids["a/1"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert sorted((u["Key"], u["UploadId"]) for u in listed) == sorted(
        [(k, v) for k, v in ids.items()] + [("a/1", second)]
    )
    assert [u["Key"] for u in listed] == sorted(u["Key"] for u in listed)
    listed = s3.list_multipart_uploads(Bucket=bucket, Prefix="a/")["Uploads"]
    assert sorted(u["Key"] for u in listed) == ["a/1", "a/1", "a/2"]
    response = s3.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert [p["Prefix"] for p in response.get("CommonPrefixes", [])] == ["a/", "b/"]
    s3.abort_multipart_upload(Bucket=bucket, Key="a/1", UploadId=second)
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    assert second not in [u["UploadId"] for u in listed]


# ---------------------------------------------------------------- versioning


def test_unversioned_bucket(s3, bucket):
    versioning = s3.get_bucket_versioning(Bucket=bucket)
    assert "Status" not in versioning
    assert "MFADelete" not in versioning
    s3.put_object(Bucket=bucket, Key="v/a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="v/a", Body=b"22")
    s3.put_object(Bucket=bucket, Key="v/b", Body=b"333")
    response = s3.list_object_versions(Bucket=bucket)
    versions = response["Versions"]
    assert [(v["Key"], v["VersionId"], v["IsLatest"], v["Size"]) for v in versions] == [
        ("v/a", "null", True, 2),
        ("v/b", "null", True, 3),
    ]
    assert versions[0]["ETag"] == f'"{md5_hex(b"22")}"'
    assert not response.get("DeleteMarkers")
    assert get_bytes(s3, bucket, "v/a", VersionId="null") == b"22"
    s3.delete_object(Bucket=bucket, Key="v/a")
    response = s3.list_object_versions(Bucket=bucket, Prefix="v/")
    assert [v["Key"] for v in response["Versions"]] == ["v/b"]
    assert not response.get("DeleteMarkers")


# ---------------------------------------------------------------- presigned URLs


def test_presigned_put_and_get(s3, bucket):
    body = random_bytes(12_345, 50)
    put_url = s3.generate_presigned_url(
        "put_object", Params={"Bucket": bucket, "Key": "pre/signed file"}, ExpiresIn=300
    )
    status, headers, _ = http(
        "PUT", put_url, data=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert status == 200
    assert headers.get("ETag") == f'"{md5_hex(body)}"'
    assert headers.get("x-amz-request-id")
    get_url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "pre/signed file"}, ExpiresIn=300
    )
    status, headers, got = http("GET", get_url)
    assert status == 200
    assert got == body
    assert headers.get("ETag") == f'"{md5_hex(body)}"'
    overridden = s3.generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": "pre/signed file",
                "ResponseContentDisposition": "attachment; filename=x.bin"},
        ExpiresIn=300,
    )
    status, headers, got = http("GET", overridden)
    assert status == 200 and got == body
    assert headers.get("Content-Disposition") == "attachment; filename=x.bin"


def test_presigned_url_expired(s3, bucket):
    s3.put_object(Bucket=bucket, Key="soon", Body=b"gone soon")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "soon"}, ExpiresIn=1
    )
    time.sleep(2.5)
    status, headers, body = http("GET", url)
    assert status == 403
    code, message = error_fields(body)
    assert code == "AccessDenied"
    assert "Request has expired" in message
    assert headers.get("x-amz-request-id")


def test_presigned_url_tampered(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    s3.put_object(Bucket=bucket, Key="b", Body=b"b")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=300)
    signature = re.search(r"X-Amz-Signature=([0-9a-f]+)", url).group(1)
    flipped = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    for tampered in (
        url.replace(signature, flipped),
        url.replace(f"/{bucket}/a?", f"/{bucket}/b?"),
        url.replace("X-Amz-Expires=300", "X-Amz-Expires=301"),
    ):
        status, headers, body = http("GET", tampered)
        assert status == 403, tampered
        assert error_fields(body)[0] == "SignatureDoesNotMatch", body
        assert headers.get("x-amz-request-id")


def test_presigned_url_too_long_lived(s3, bucket):
    s3.put_object(Bucket=bucket, Key="a", Body=b"a")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": bucket, "Key": "a"}, ExpiresIn=604801
    )
    status, _, body = http("GET", url)
    assert status == 400
    assert error_fields(body)[0] == "AuthorizationQueryParametersError"


# ---------------------------------------------------------------- authentication


def test_wrong_secret_is_signature_mismatch(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    bad = make_client(ACCESS_KEY, SECRET_KEY[:-1] + ("A" if SECRET_KEY[-1] != "A" else "B"))
    expect_error(403, "SignatureDoesNotMatch", bad.list_buckets)
    expect_error(403, "SignatureDoesNotMatch", bad.get_object, Bucket=bucket, Key="k")
    expect_error(403, "SignatureDoesNotMatch", bad.put_object, Bucket=bucket, Key="k", Body=b"evil")
    assert get_bytes(s3, bucket, "k") == b"v"


def test_unknown_access_key(s3, bucket):
    unknown = make_client("PKNOSUCHKEY0000000", "x" * 40)
    expect_error(403, "InvalidAccessKeyId", unknown.list_buckets)
    expect_error(403, "InvalidAccessKeyId", unknown.get_object, Bucket=bucket, Key="k")


def test_anonymous_requests_are_denied(s3, bucket):
    s3.put_object(Bucket=bucket, Key="private", Body=b"secret")
    base = ENDPOINT.rstrip("/")
    for method, url, data in (
        ("GET", f"{base}/{bucket}/private", None),
        ("GET", f"{base}/{bucket}", None),
        ("GET", f"{base}/", None),
        ("PUT", f"{base}/{bucket}/anon", b"anonymous"),
        ("DELETE", f"{base}/{bucket}/private", None),
    ):
        status, headers, body = http(method, url, data=data)
        assert status == 403, (method, url, status)
        assert error_fields(body)[0] == "AccessDenied", (method, url, body)
        assert headers.get("x-amz-request-id")
    assert get_bytes(s3, bucket, "private") == b"secret"
    expect_error(404, "NoSuchKey", s3.get_object, Bucket=bucket, Key="anon")


# ---------------------------------------------------------------- unsupported APIs


def test_not_implemented_apis(s3, bucket):
    response = expect_error(
        501, "NotImplemented", s3.put_bucket_lifecycle_configuration, Bucket=bucket,
        LifecycleConfiguration={
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {"Prefix": ""},
                       "Expiration": {"Days": 1}}]
        },
    )
    assert response["Error"].get("Message")
    expect_error(501, "NotImplemented", s3.get_bucket_policy, Bucket=bucket)


# ---------------------------------------------------------------- large objects


def test_large_object(s3, bucket):
    size = 40 * MIB + 12_345
    body = random_bytes(size, 60)
    put = s3.put_object(Bucket=bucket, Key="large", Body=body)
    assert put["ETag"] == f'"{md5_hex(body)}"'
    assert s3.head_object(Bucket=bucket, Key="large")["ContentLength"] == size
    assert md5_hex(get_bytes(s3, bucket, "large")) == md5_hex(body)
    for first, last in (
        (CHUNK - 100, CHUNK + 100),  # across one chunk boundary
        (CHUNK - 1, 3 * CHUNK),  # across several
        (5 * CHUNK - 5, size - 1),  # the last, partial chunk
        (0, CHUNK - 1),  # exactly the first chunk
    ):
        got = s3.get_object(Bucket=bucket, Key="large", Range=f"bytes={first}-{last}")
        assert got["ContentRange"] == f"bytes {first}-{last}/{size}"
        assert read_body(got) == body[first : last + 1], (first, last)
    got = get_bytes(s3, bucket, "large", Range="bytes=-1000")
    assert got == body[-1000:]


# ---------------------------------------------------------------- tenants and roles


def test_other_tenant_is_isolated(s3, bucket, other):
    s3.put_object(Bucket=bucket, Key="ours", Body=b"our data")
    assert bucket not in [b["Name"] for b in other.list_buckets()["Buckets"]]
    expect_error(403, "403", other.head_bucket, Bucket=bucket)
    expect_error(403, "AccessDenied", other.get_object, Bucket=bucket, Key="ours")
    expect_error(403, "403", other.head_object, Bucket=bucket, Key="ours")
    # No hint whether a key exists.
    expect_error(403, "AccessDenied", other.get_object, Bucket=bucket, Key="absent")
    expect_error(403, "AccessDenied", other.put_object, Bucket=bucket, Key="ours", Body=b"theirs")
    expect_error(403, "AccessDenied", other.put_object, Bucket=bucket, Key="new", Body=b"theirs")
    expect_error(403, "AccessDenied", other.list_objects_v2, Bucket=bucket)
    expect_error(403, "AccessDenied", other.list_objects, Bucket=bucket)
    expect_error(403, "AccessDenied", other.delete_object, Bucket=bucket, Key="ours")
    expect_error(403, "AccessDenied", other.delete_bucket, Bucket=bucket)
    expect_error(403, "AccessDenied", other.create_multipart_upload, Bucket=bucket, Key="mp")
    expect_error(409, "BucketAlreadyExists", other.create_bucket, Bucket=bucket)
    # Their own bucket works, but copying our object into it does not.
    theirs = unique_bucket_name("theirs")
    other.create_bucket(Bucket=theirs)
    try:
        other.put_object(Bucket=theirs, Key="own", Body=b"their data")
        expect_error(
            403, "AccessDenied", other.copy_object, Bucket=theirs, Key="stolen",
            CopySource={"Bucket": bucket, "Key": "ours"},
        )
        # Nor can we reach into theirs (the system tenant is no exception).
        assert theirs not in [b["Name"] for b in s3.list_buckets()["Buckets"]]
    finally:
        empty_and_delete(other, theirs)
    assert get_bytes(s3, bucket, "ours") == b"our data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["ours"]


def test_viewer_reads_but_cannot_write(s3, bucket, viewer):
    s3.put_object(Bucket=bucket, Key="shared", Body=b"shared data")
    # The viewer's binding may take a moment to reach the node.
    assert eventually(lambda: get_bytes(viewer, bucket, "shared")) == b"shared data"
    assert viewer.head_object(Bucket=bucket, Key="shared")["ContentLength"] == 11
    assert [o["Key"] for o in viewer.list_objects_v2(Bucket=bucket)["Contents"]] == ["shared"]
    assert status_of(viewer.head_bucket(Bucket=bucket)) == 200
    expect_error(403, "AccessDenied", viewer.put_object, Bucket=bucket, Key="shared", Body=b"no")
    expect_error(403, "AccessDenied", viewer.put_object, Bucket=bucket, Key="new", Body=b"no")
    expect_error(403, "AccessDenied", viewer.delete_object, Bucket=bucket, Key="shared")
    expect_error(403, "AccessDenied", viewer.delete_object, Bucket=bucket, Key="absent")
    expect_error(
        403, "AccessDenied", viewer.copy_object, Bucket=bucket, Key="copy",
        CopySource={"Bucket": bucket, "Key": "shared"},
    )
    expect_error(403, "AccessDenied", viewer.create_multipart_upload, Bucket=bucket, Key="mp")
    expect_error(403, "AccessDenied", viewer.delete_bucket, Bucket=bucket)
    expect_error(403, "AccessDenied", viewer.create_bucket, Bucket=unique_bucket_name("viewer"))
    # DeleteObjects: S3 reports AccessDenied per key (or refuses the request).
    try:
        response = viewer.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "shared"}]})
        assert not response.get("Deleted"), response
        assert [(e["Key"], e["Code"]) for e in response["Errors"]] == [("shared", "AccessDenied")]
    except ClientError as error:
        assert status_of(error.response) == 403
        assert error.response["Error"]["Code"] == "AccessDenied"
    assert get_bytes(s3, bucket, "shared") == b"shared data"
    assert [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["shared"]
