"""Details of LightningStor's supported S3 APIs, each with its error cases:
retried and conditional CompleteMultipartUpload, checksums (stored,
returned with checksum mode, composite and full-object multipart),
conditional deletes and aborts, the bucket owner check, ListBuckets paging,
bucket names, URL-encoded v1 listings, `Expect: 100-continue` refusals.

Run with the other S3 client tests (see conftest.py).
"""

import datetime
import hashlib
import socket
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
import zlib

import pytest
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from conftest import (
    ACCESS_KEY,
    ALL_CHECKSUMS,
    MIB,
    PART_MIN,
    RAW_CHECKSUMS,
    SECRET_KEY,
    b64,
    bucket_exists,
    crc32c,
    empty_and_delete,
    expect_error,
    get_bytes,
    headers_of,
    make_client,
    md5_hex,
    object_url,
    owner_id,
    plain_client,
    random_bytes,
    raw_request,
    signed_headers,
    status_of,
    unique_bucket_name,
)

ALGORITHMS = sorted(ALL_CHECKSUMS)
CRC_ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME")


def checksum_headers(response):
    """The x-amz-checksum-* response headers, x-amz-checksum-type aside."""
    return {
        name: value
        for name, value in headers_of(response).items()
        if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-type"
    }


def composite(algorithm, parts):
    """S3's COMPOSITE checksum of a multipart object: the checksum of the
    parts' raw checksums, then -N."""
    raw = RAW_CHECKSUMS[algorithm]
    return f"{b64(raw(b''.join(raw(p) for p in parts)))}-{len(parts)}"


def key_exists(s3, bucket, key):
    try:
        s3.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as error:
        if status_of(error.response) == 404:
            return False
        raise


def upload_ids(s3, bucket):
    return [u["UploadId"] for u in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def local_name(element):
    return element.tag.rsplit("}", 1)[-1]


def children(element, name):
    return [c for c in element if local_name(c) == name]


def text_of(element, name):
    found = children(element, name)
    return found[0].text if found else None


def sent_headers(client, operation):
    """A dict that fills with the headers of the last `operation` sent."""
    sent = {}

    def keep(request, **_):
        sent.clear()
        for name, value in request.headers.items():
            sent[name.lower()] = value.decode() if isinstance(value, bytes) else value
        sent["__body__"] = request.body

    client.meta.events.register(f"before-send.s3.{operation}", keep)
    return sent


# ---------------------------------------------------------------- CompleteMultipartUpload


def test_complete_retry_answers_the_same(s3, bucket):
    """A second Complete of a completed upload (an SDK retrying after a lost
    response) answers 200 with the same result, until the key is
    overwritten."""
    key = "retry/object"
    body = random_bytes(3000, 100)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body)[
        "ETag"
    ]
    complete = lambda: s3.complete_multipart_upload(  # noqa: E731
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
    )
    first = complete()
    try:
        second = complete()
    except ClientError as error:
        pytest.fail(f"the retried Complete failed: {error.response.get('Error')}")
    assert status_of(second) == 200
    for field in ("Location", "Bucket", "Key", "ETag"):
        assert second.get(field) == first.get(field), (field, first, second)
    assert get_bytes(s3, bucket, key) == body
    s3.put_object(Bucket=bucket, Key=key, Body=b"overwritten")
    expect_error(404, "NoSuchUpload", complete)
    assert get_bytes(s3, bucket, key) == b"overwritten"


def test_complete_with_an_empty_body_is_malformed(s3, bucket):
    client = plain_client()
    sent = sent_headers(client, "CompleteMultipartUpload")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=b"part")
    expect_error(
        400, "MalformedXML", client.complete_multipart_upload, Bucket=bucket, Key="k",
        UploadId=upload_id,
    )
    assert not sent["__body__"], f"botocore sent a body: {sent['__body__']!r}"
    assert upload_id in upload_ids(s3, bucket)
    assert not key_exists(s3, bucket, "k")


def test_complete_conditional_write(s3, bucket):
    """If-None-Match / If-Match on Complete, as on PutObject."""
    existing = s3.put_object(Bucket=bucket, Key="k", Body=b"before")["ETag"]

    def upload(key, seed):
        body = random_bytes(2000, seed)
        upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        etag = s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=body
        )["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
        return upload_id, parts, body

    upload_id, parts, body = upload("k", 101)
    args = {"Bucket": bucket, "Key": "k", "UploadId": upload_id, "MultipartUpload": parts}
    expect_error(412, "PreconditionFailed", s3.complete_multipart_upload, IfNoneMatch="*", **args)
    expect_error(
        412, "PreconditionFailed", s3.complete_multipart_upload,
        IfMatch='"0123456789abcdef0123456789abcdef"', **args,
    )
    assert upload_id in upload_ids(s3, bucket), "a refused Complete ended the upload"
    assert get_bytes(s3, bucket, "k") == b"before"
    s3.complete_multipart_upload(IfMatch=existing, **args)
    assert get_bytes(s3, bucket, "k") == body

    upload_id, parts, body = upload("fresh", 102)
    args = {"Bucket": bucket, "Key": "fresh", "UploadId": upload_id, "MultipartUpload": parts}
    expect_error(404, "NoSuchKey", s3.complete_multipart_upload, IfMatch=existing, **args)
    s3.complete_multipart_upload(IfNoneMatch="*", **args)
    assert get_bytes(s3, bucket, "fresh") == body


def test_complete_mp_object_size(s3, bucket):
    """x-amz-mp-object-size must be the object's size."""
    body = random_bytes(1500, 103)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    etag = s3.upload_part(Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=body)[
        "ETag"
    ]
    args = {
        "Bucket": bucket, "Key": "k", "UploadId": upload_id,
        "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": etag}]},
    }
    for wrong in (len(body) - 1, len(body) + 1, 0):
        expect_error(
            400, "InvalidRequest", s3.complete_multipart_upload, MpuObjectSize=wrong, **args
        )
    assert upload_id in upload_ids(s3, bucket)
    s3.complete_multipart_upload(MpuObjectSize=len(body), **args)
    assert get_bytes(s3, bucket, "k") == body


def test_abort_if_match_initiated_time(s3, bucket):
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k")["UploadId"]
    listed = s3.list_multipart_uploads(Bucket=bucket)["Uploads"]
    initiated = [u["Initiated"] for u in listed if u["UploadId"] == upload_id][0]
    for wrong in (
        initiated - datetime.timedelta(days=1), initiated + datetime.timedelta(seconds=5)
    ):
        expect_error(
            412, "PreconditionFailed", s3.abort_multipart_upload, Bucket=bucket, Key="k",
            UploadId=upload_id, IfMatchInitiatedTime=wrong,
        )
    assert upload_id in upload_ids(s3, bucket), "a refused abort ended the upload"
    response = s3.abort_multipart_upload(
        Bucket=bucket, Key="k", UploadId=upload_id, IfMatchInitiatedTime=initiated
    )
    assert status_of(response) == 204
    assert upload_id not in upload_ids(s3, bucket)


# ---------------------------------------------------------------- DeleteBucket


def test_delete_bucket_with_only_uploads(s3, bucket):
    """Uploads in progress do not keep a bucket alive; objects do."""
    name = unique_bucket_name("uploads-only")
    s3.create_bucket(Bucket=name)
    try:
        first = s3.create_multipart_upload(Bucket=name, Key="a")["UploadId"]
        s3.upload_part(Bucket=name, Key="a", UploadId=first, PartNumber=1, Body=b"part")
        s3.create_multipart_upload(Bucket=name, Key="b/c")
        response = s3.delete_bucket(Bucket=name)
        assert status_of(response) == 204
        assert not bucket_exists(s3, name)
        # The name is free, and the new bucket has none of the old uploads.
        s3.create_bucket(Bucket=name)
        assert upload_ids(s3, name) == []
        expect_error(404, "NoSuchUpload", s3.list_parts, Bucket=name, Key="a", UploadId=first)
    finally:
        if bucket_exists(s3, name):
            empty_and_delete(s3, name)

    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="u")["UploadId"]
    expect_error(409, "BucketNotEmpty", s3.delete_bucket, Bucket=bucket)
    assert upload_ids(s3, bucket) == [upload_id]
    assert get_bytes(s3, bucket, "k") == b"v"


# ---------------------------------------------------------------- UploadPartCopy


def test_upload_part_copy_ranges(s3, bucket):
    size = 1000
    source = random_bytes(size, 104)
    s3.put_object(Bucket=bucket, Key="src", Body=source)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
    copy = lambda number, header: s3.upload_part_copy(  # noqa: E731
        Bucket=bucket, Key="dst", UploadId=upload_id, PartNumber=number,
        CopySource={"Bucket": bucket, "Key": "src"}, CopySourceRange=header,
    )
    for number, header in enumerate(
        (f"bytes=0-{size}", f"bytes={size}-{size + 10}", f"bytes={size + 5}-{size + 9}"), start=1
    ):
        expect_error(400, "InvalidRange", copy, number, header)
    for number, header in enumerate(("bytes=5-2", "bytes=abc", "bytes=-5", "5-10"), start=4):
        expect_error(400, "InvalidArgument", copy, number, header)
    parts = s3.list_parts(Bucket=bucket, Key="dst", UploadId=upload_id).get("Parts", [])
    assert parts == [], f"a refused range stored a part: {parts}"
    whole = copy(10, f"bytes=0-{size - 1}")
    assert whole["CopyPartResult"]["ETag"] == f'"{md5_hex(source)}"'
    middle = copy(11, "bytes=10-19")
    assert middle["CopyPartResult"]["ETag"] == f'"{md5_hex(source[10:20])}"'


def test_copy_source_time_conditions(s3, bucket):
    """x-amz-copy-source-if-(un)modified-since on CopyObject, and all four
    copy-source conditions on UploadPartCopy."""
    etag = s3.put_object(Bucket=bucket, Key="src", Body=b"conditional source")["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="src")["LastModified"]
    before = modified - datetime.timedelta(days=1)
    after = modified + datetime.timedelta(seconds=1)
    wait = (after - datetime.datetime.now(datetime.timezone.utc)).total_seconds() + 0.2
    if wait > 0:
        time.sleep(wait)
    other = '"0123456789abcdef0123456789abcdef"'
    source = {"Bucket": bucket, "Key": "src"}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    copy_object = lambda **c: s3.copy_object(  # noqa: E731
        Bucket=bucket, Key="dst", CopySource=source, **c
    )
    copy_part = lambda **c: s3.upload_part_copy(  # noqa: E731
        Bucket=bucket, Key="mpu", UploadId=upload_id, PartNumber=1, CopySource=source, **c
    )
    failing = [
        {"CopySourceIfModifiedSince": after},
        {"CopySourceIfUnmodifiedSince": before},
    ]
    for conditions in failing:
        expect_error(412, "PreconditionFailed", copy_object, **conditions)
        expect_error(412, "PreconditionFailed", copy_part, **conditions)
    for conditions in ({"CopySourceIfMatch": other}, {"CopySourceIfNoneMatch": etag}):
        expect_error(412, "PreconditionFailed", copy_part, **conditions)
    assert not key_exists(s3, bucket, "dst")
    assert s3.list_parts(Bucket=bucket, Key="mpu", UploadId=upload_id).get("Parts", []) == []
    for conditions in (
        {"CopySourceIfModifiedSince": before},
        {"CopySourceIfUnmodifiedSince": after},
        {"CopySourceIfMatch": etag},
        {"CopySourceIfNoneMatch": other},
    ):
        try:
            copy_object(**conditions)
            copy_part(**conditions)
        except ClientError as error:
            pytest.fail(f"{conditions}: expected success, got {error.response.get('Error')}")
    assert get_bytes(s3, bucket, "dst") == b"conditional source"


def test_source_expected_bucket_owner(s3, bucket):
    s3.put_object(Bucket=bucket, Key="src", Body=b"source")
    owner = owner_id(s3)
    source = {"Bucket": bucket, "Key": "src"}
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="mpu")["UploadId"]
    expect_error(
        403, "AccessDenied", s3.copy_object, Bucket=bucket, Key="dst", CopySource=source,
        ExpectedSourceBucketOwner="someone-else/default",
    )
    expect_error(
        403, "AccessDenied", s3.upload_part_copy, Bucket=bucket, Key="mpu", UploadId=upload_id,
        PartNumber=1, CopySource=source, ExpectedSourceBucketOwner="someone-else/default",
    )
    assert not key_exists(s3, bucket, "dst")
    assert s3.list_parts(Bucket=bucket, Key="mpu", UploadId=upload_id).get("Parts", []) == []
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource=source, ExpectedSourceBucketOwner=owner,
        ExpectedBucketOwner=owner,
    )
    s3.upload_part_copy(
        Bucket=bucket, Key="mpu", UploadId=upload_id, PartNumber=1, CopySource=source,
        ExpectedSourceBucketOwner=owner,
    )
    assert get_bytes(s3, bucket, "dst") == b"source"


# ---------------------------------------------------------------- CopyObject


def test_copy_object_directives(s3, bucket):
    """Metadata and content headers only with x-amz-metadata-directive:
    REPLACE; x-amz-tagging-directive COPY, or REPLACE without tags."""
    s3.put_object(
        Bucket=bucket, Key="src", Body=b"source", Metadata={"origin": "src"},
        ContentType="text/x-src",
    )
    source = {"Bucket": bucket, "Key": "src"}
    for extra in (
        {"Metadata": {"fresh": "yes"}},
        {"Metadata": {"fresh": "yes"}, "MetadataDirective": "COPY"},
        {"ContentType": "text/x-new"},
        {"ContentType": "text/x-new", "MetadataDirective": "COPY"},
        {"CacheControl": "no-cache", "MetadataDirective": "COPY"},
    ):
        response = expect_error(
            400, "InvalidArgument", s3.copy_object, Bucket=bucket, Key="dst", CopySource=source,
            **extra,
        )
        assert response["Error"].get("Message"), extra
    assert not key_exists(s3, bucket, "dst"), "a refused copy stored the object"
    s3.copy_object(Bucket=bucket, Key="dst", CopySource=source, MetadataDirective="COPY")
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert (head["Metadata"], head["ContentType"]) == ({"origin": "src"}, "text/x-src")
    s3.copy_object(
        Bucket=bucket, Key="dst", CopySource=source, MetadataDirective="REPLACE",
        Metadata={"fresh": "yes"}, ContentType="text/x-new", CacheControl="no-cache",
    )
    head = s3.head_object(Bucket=bucket, Key="dst")
    assert (head["Metadata"], head["ContentType"], head.get("CacheControl")) == (
        {"fresh": "yes"}, "text/x-new", "no-cache"
    )
    for directive in ("COPY", "REPLACE"):
        s3.copy_object(
            Bucket=bucket, Key=f"tags-{directive}", CopySource=source, TaggingDirective=directive
        )
        assert get_bytes(s3, bucket, f"tags-{directive}") == b"source"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_copy_object_checksum_algorithm(s3, bucket, algorithm):
    body = random_bytes(20_000, 105)
    member = f"Checksum{algorithm}"
    expected = ALL_CHECKSUMS[algorithm](body)
    plain_client().put_object(Bucket=bucket, Key="src", Body=body)
    copied = s3.copy_object(
        Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"},
        ChecksumAlgorithm=algorithm,
    )
    assert copied["CopyObjectResult"].get(member) == expected, copied["CopyObjectResult"]
    head = s3.head_object(Bucket=bucket, Key="dst", ChecksumMode="ENABLED")
    assert head.get(member) == expected, head
    assert head.get("ChecksumType") == "FULL_OBJECT", head


# ---------------------------------------------------------------- PutObject


def test_put_if_match_star(s3, bucket):
    s3.put_object(Bucket=bucket, Key="k", Body=b"v1")
    put = s3.put_object(Bucket=bucket, Key="k", Body=b"v2", IfMatch="*")
    assert put["ETag"] == f'"{md5_hex(b"v2")}"'
    assert get_bytes(s3, bucket, "k") == b"v2"
    expect_error(
        404, "NoSuchKey", s3.put_object, Bucket=bucket, Key="absent", Body=b"x", IfMatch="*"
    )
    assert not key_exists(s3, bucket, "absent")
    expect_error(
        412, "PreconditionFailed", s3.put_object, Bucket=bucket, Key="k", Body=b"v3",
        IfMatch=f'"{md5_hex(b"v1")}"',
    )
    assert get_bytes(s3, bucket, "k") == b"v2"


def test_content_encoding_aws_chunked_is_not_stored(s3, bucket):
    """aws-chunked describes the transfer, not the object: S3 drops it from
    the Content-Encoding it stores."""
    client = plain_client()
    sent = sent_headers(client, "PutObject")
    client.put_object(
        Bucket=bucket, Key="gz", Body=b"\x1f\x8b fake", ContentEncoding="gzip, aws-chunked"
    )
    assert sent.get("content-encoding") == "gzip, aws-chunked", sent
    client.put_object(Bucket=bucket, Key="plain", Body=b"plain", ContentEncoding="aws-chunked")
    assert sent.get("content-encoding") == "aws-chunked", sent
    for call in (s3.head_object, s3.get_object):
        assert call(Bucket=bucket, Key="gz").get("ContentEncoding") == "gzip"
        response = call(Bucket=bucket, Key="plain")
        assert "content-encoding" not in headers_of(response), headers_of(response)
    assert get_bytes(s3, bucket, "gz") == b"\x1f\x8b fake"


def test_expected_bucket_owner_get_put_list(s3, bucket):
    owner = owner_id(s3)
    wrong = "someone-else/default"
    s3.put_object(Bucket=bucket, Key="k", Body=b"owned", ExpectedBucketOwner=owner)
    assert get_bytes(s3, bucket, "k", ExpectedBucketOwner=owner) == b"owned"
    listed = s3.list_objects_v2(Bucket=bucket, ExpectedBucketOwner=owner)
    assert [o["Key"] for o in listed["Contents"]] == ["k"]
    expect_error(
        403, "AccessDenied", s3.get_object, Bucket=bucket, Key="k", ExpectedBucketOwner=wrong
    )
    expect_error(
        403, "AccessDenied", s3.put_object, Bucket=bucket, Key="k2", Body=b"x",
        ExpectedBucketOwner=wrong,
    )
    expect_error(
        403, "AccessDenied", s3.put_object, Bucket=bucket, Key="k", Body=b"overwrite",
        ExpectedBucketOwner=wrong,
    )
    expect_error(403, "AccessDenied", s3.list_objects_v2, Bucket=bucket, ExpectedBucketOwner=wrong)
    assert not key_exists(s3, bucket, "k2")
    assert get_bytes(s3, bucket, "k") == b"owned"


# ---------------------------------------------------------------- deletes


def test_conditional_delete(s3, bucket):
    body = b"delete me only if you mean it"
    etag = s3.put_object(Bucket=bucket, Key="k", Body=body)["ETag"]
    modified = s3.head_object(Bucket=bucket, Key="k")["LastModified"]
    delete = lambda key="k", **c: s3.delete_object(Bucket=bucket, Key=key, **c)  # noqa: E731
    for conditions in (
        {"IfMatch": '"0123456789abcdef0123456789abcdef"'},
        {"IfMatchSize": len(body) + 1},
        {"IfMatchLastModifiedTime": modified - datetime.timedelta(days=1)},
        {"IfMatch": etag, "IfMatchSize": len(body) - 1},
    ):
        expect_error(412, "PreconditionFailed", delete, **conditions)
        assert get_bytes(s3, bucket, "k") == body, f"{conditions} deleted the object"
    for conditions in ({"IfMatch": etag}, {"IfMatch": "*"}):
        expect_error(404, "NoSuchKey", delete, key="absent", **conditions)
    response = delete(IfMatch=etag, IfMatchSize=len(body), IfMatchLastModifiedTime=modified)
    assert status_of(response) == 204
    assert not key_exists(s3, bucket, "k")
    s3.put_object(Bucket=bucket, Key="k", Body=body)
    assert status_of(delete(IfMatch="*")) == 204
    assert not key_exists(s3, bucket, "k")
    s3.put_object(Bucket=bucket, Key="k", Body=body)
    assert status_of(delete(IfMatchSize=len(body))) == 204
    assert not key_exists(s3, bucket, "k")


def test_delete_objects_requires_a_checksum(s3, bucket):
    """DeleteObjects needs Content-MD5 or an x-amz-checksum-* header (with
    x-amz-sdk-checksum-algorithm naming it), and checks it."""
    for key in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    url = object_url(bucket, query="delete")

    def document(key):
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
            f"<Object><Key>{key}</Key></Object><Quiet>true</Quiet></Delete>"
        ).encode()

    body = document("a")
    status, _, reply = raw_request("POST", url, {"Content-Type": "application/xml"}, body)
    assert status == 400, (status, reply)
    assert ET.fromstring(reply).findtext("Code") == "InvalidRequest", reply
    assert key_exists(s3, bucket, "a"), "DeleteObjects without a checksum deleted"

    crc = b64(zlib.crc32(body).to_bytes(4, "big"))
    wrong = b64(zlib.crc32(body + b" ").to_bytes(4, "big"))
    headers = {"x-amz-sdk-checksum-algorithm": "CRC32", "x-amz-checksum-crc32": wrong}
    status, _, reply = raw_request("POST", url, headers, body)
    assert status == 400, (status, reply)
    assert ET.fromstring(reply).findtext("Code") == "BadDigest", reply
    assert key_exists(s3, bucket, "a")

    headers["x-amz-checksum-crc32"] = crc
    status, _, reply = raw_request("POST", url, headers, body)
    assert status == 200, (status, reply)
    assert not key_exists(s3, bucket, "a")

    body = document("b")
    headers = {"Content-MD5": b64(hashlib.md5(body).digest())}
    status, _, reply = raw_request("POST", url, headers, body)
    assert status == 200, (status, reply)
    assert not key_exists(s3, bucket, "b")

    # botocore sends x-amz-sdk-checksum-algorithm and the checksum itself.
    sent = sent_headers(s3, "DeleteObjects")
    s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": "c"}]})
    assert "x-amz-sdk-checksum-algorithm" in sent or "content-md5" in sent, sent
    assert not key_exists(s3, bucket, "c")


# ---------------------------------------------------------------- listings and names


def test_list_v1_url_encoding_leaves_prefix_alone(s3, bucket):
    """ListObjects v1 with encoding-type=url encodes Contents/Key and
    CommonPrefixes/Prefix but not the request's Prefix, which botocore does
    not decode."""
    prefix = "dir ü/"
    keys = [prefix + "a b.txt", prefix + "sub dir/x"]
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")
    client = make_client(ACCESS_KEY, SECRET_KEY)
    raw = {}

    def keep(http_response, **_):
        raw["body"] = http_response.content

    client.meta.events.register("after-call.s3.ListObjects", keep)
    client.list_objects(Bucket=bucket, Prefix=prefix, Delimiter="/", EncodingType="url")
    root = ET.fromstring(raw["body"])
    assert text_of(root, "EncodingType") == "url", raw["body"]
    assert text_of(root, "Prefix") == prefix, f"Prefix was encoded: {raw['body']!r}"
    listed = [text_of(c, "Key") for c in children(root, "Contents")]
    common = [text_of(c, "Prefix") for c in children(root, "CommonPrefixes")]
    for encoded in listed + common:
        assert encoded.isascii() and " " not in encoded, f"not URL-encoded: {encoded!r}"
    assert [urllib.parse.unquote_plus(k) for k in listed] == [keys[0]]
    assert [urllib.parse.unquote_plus(p) for p in common] == [prefix + "sub dir/"]
    # What a boto3 user sees (it asks for url encoding and decodes).
    response = s3.list_objects(Bucket=bucket, Prefix=prefix, Delimiter="/")
    assert response["Prefix"] == prefix
    assert [o["Key"] for o in response["Contents"]] == [keys[0]]
    assert [p["Prefix"] for p in response["CommonPrefixes"]] == [prefix + "sub dir/"]


@pytest.mark.parametrize(
    "name",
    [
        "dash-.dot",
        "dot.-dash",
        "a-.b.-c",
        "suffixed.mrap",
        "suffixed--x-s3",
        "sthree-configurator-b",
        "amzn-s3-demo-bucket",
    ],
)
def test_create_bucket_reserved_names(s3, name):
    try:
        expect_error(400, "InvalidBucketName", s3.create_bucket, Bucket=name)
    finally:
        if bucket_exists(s3, name):
            s3.delete_bucket(Bucket=name)


def test_list_buckets_pages(s3):
    prefix = f"pages-{uuid.uuid4().hex[:10]}-"
    names = [f"{prefix}{i}" for i in range(5)]
    for name in names:
        s3.create_bucket(Bucket=name)
    try:
        listed = s3.list_buckets(Prefix=prefix)
        assert [b["Name"] for b in listed["Buckets"]] == names
        assert listed.get("Prefix") == prefix
        assert not listed.get("ContinuationToken"), listed
        got, token, pages = [], None, 0
        while True:
            args = {"ContinuationToken": token} if token else {}
            page = s3.list_buckets(Prefix=prefix, MaxBuckets=2, **args)
            pages += 1
            page_names = [b["Name"] for b in page["Buckets"]]
            assert len(page_names) <= 2, page_names
            got += page_names
            token = page.get("ContinuationToken")
            if not token:
                break
            assert pages < 10, f"ListBuckets paging does not end: {got}"
        assert got == names, f"paged {got}, created {names}"
        assert pages == 3, pages
        first = s3.list_buckets(MaxBuckets=2)
        assert len(first["Buckets"]) == 2 and first.get("ContinuationToken"), first
        rest = s3.list_buckets(ContinuationToken=first["ContinuationToken"])
        everything = [b["Name"] for b in first["Buckets"] + rest["Buckets"]]
        assert len(everything) == len(set(everything))
        assert set(names) <= set(everything)
        here = s3.list_buckets(Prefix=prefix, BucketRegion="us-east-1")
        assert [b["Name"] for b in here["Buckets"]] == names
        elsewhere = s3.list_buckets(Prefix=prefix, BucketRegion="eu-west-1")
        assert elsewhere.get("Buckets", []) == [], elsewhere
        unchecked = make_client(ACCESS_KEY, SECRET_KEY, parameter_validation=False)
        for wrong in (0, 10001):
            expect_error(400, "InvalidArgument", unchecked.list_buckets, MaxBuckets=wrong)
    finally:
        for name in names:
            s3.delete_bucket(Bucket=name)


# ---------------------------------------------------------------- checksums


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_checksum_mode_returns_the_stored_checksum(s3, bucket, algorithm):
    """A checksum sent with PutObject is verified, stored, and returned by
    GET and HEAD with x-amz-checksum-mode: ENABLED (not with a range)."""
    client = plain_client()
    body = random_bytes(10_000, 106)
    member = f"Checksum{algorithm}"
    value = ALL_CHECKSUMS[algorithm](body)
    put = client.put_object(Bucket=bucket, Key="k", Body=body, **{member: value})
    assert put.get(member) == value, put
    for call in (client.head_object, client.get_object):
        response = call(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert response.get(member) == value, (call.__name__, response)
        assert response.get("ChecksumType") == "FULL_OBJECT", (call.__name__, response)
        assert list(checksum_headers(response)) == [f"x-amz-checksum-{algorithm.lower()}"]
    ranged = client.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED", Range="bytes=0-99")
    assert checksum_headers(ranged) == {}, headers_of(ranged)
    assert ranged["Body"].read() == body[:100]
    wrong = ALL_CHECKSUMS[algorithm](body + b"!")
    expect_error(
        400, "BadDigest", client.put_object, Bucket=bucket, Key="bad", Body=body,
        **{member: wrong},
    )
    assert not key_exists(s3, bucket, "bad")


def test_object_without_checksum_returns_none(s3, bucket):
    client = plain_client()
    sent = sent_headers(client, "PutObject")
    client.put_object(Bucket=bucket, Key="k", Body=b"no checksum")
    assert not [h for h in sent if h.startswith("x-amz-checksum")], sent
    for call in (client.head_object, client.get_object):
        response = call(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
        assert checksum_headers(response) == {}, headers_of(response)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_create_multipart_checksum_type(s3, bucket, algorithm):
    """x-amz-checksum-algorithm and x-amz-checksum-type on Create: COMPOSITE
    for every algorithm but CRC64NVME (whole-object only, as in AWS),
    FULL_OBJECT for the CRCs only."""
    types = (["COMPOSITE"] if algorithm != "CRC64NVME" else []) + (
        ["FULL_OBJECT"] if algorithm in CRC_ALGORITHMS else []
    )
    if algorithm == "CRC64NVME":
        expect_error(
            400, "InvalidRequest", s3.create_multipart_upload, Bucket=bucket, Key="bad",
            ChecksumAlgorithm=algorithm, ChecksumType="COMPOSITE",
        )
    for checksum_type in types:
        created = s3.create_multipart_upload(
            Bucket=bucket, Key=f"ok-{checksum_type}", ChecksumAlgorithm=algorithm,
            ChecksumType=checksum_type,
        )
        assert created["UploadId"]
    if algorithm not in CRC_ALGORITHMS:
        expect_error(
            400, "InvalidRequest", s3.create_multipart_upload, Bucket=bucket, Key="bad",
            ChecksumAlgorithm=algorithm, ChecksumType="FULL_OBJECT",
        )
    listed = sorted(u["Key"] for u in s3.list_multipart_uploads(Bucket=bucket)["Uploads"])
    assert listed == sorted(f"ok-{t}" for t in types), listed


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_upload_part_checksums(s3, bucket, algorithm):
    """A part's x-amz-checksum-* is verified and answered; Complete returns
    the checksum of the parts' checksums (COMPOSITE, the default type), or
    for CRC64NVME, whose default type is FULL_OBJECT as in AWS, the CRC of
    the whole object."""
    client = plain_client()
    member = f"Checksum{algorithm}"
    parts = [random_bytes(PART_MIN, 107), random_bytes(3000, 108)]
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm=algorithm
    )["UploadId"]
    upload = {"Bucket": bucket, "Key": "k", "UploadId": upload_id}
    wrong = ALL_CHECKSUMS[algorithm](b"not the part")
    expect_error(
        400, "BadDigest", client.upload_part, PartNumber=1, Body=parts[0], **upload,
        **{member: wrong},
    )
    assert client.list_parts(**upload).get("Parts", []) == []
    completed = []
    for number, data in enumerate(parts, start=1):
        value = ALL_CHECKSUMS[algorithm](data)
        response = client.upload_part(PartNumber=number, Body=data, **upload, **{member: value})
        assert response.get(member) == value, response
        completed.append({"PartNumber": number, "ETag": response["ETag"], member: value})
    done = client.complete_multipart_upload(MultipartUpload={"Parts": completed}, **upload)
    if algorithm == "CRC64NVME":
        expected = (ALL_CHECKSUMS[algorithm](b"".join(parts)), "FULL_OBJECT")
    else:
        expected = (composite(algorithm, parts), "COMPOSITE")
    assert (done.get(member), done.get("ChecksumType")) == expected, done


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_part_of_a_checksummed_upload_answers_its_checksum(s3, bucket, algorithm):
    """A part sent without a checksum to an upload with an algorithm still
    gets the part's checksum of that algorithm in the response."""
    client = plain_client()
    sent = sent_headers(client, "UploadPart")
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm=algorithm
    )["UploadId"]
    body = random_bytes(3000, 118)
    response = client.upload_part(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=body
    )
    assert not [h for h in sent if h.startswith("x-amz-checksum")], sent
    assert response.get(f"Checksum{algorithm}") == ALL_CHECKSUMS[algorithm](body), response


def test_multipart_composite_crc32(s3, bucket):
    """What `aws s3 cp` and boto3's upload_file do by default: CRC32 parts,
    a COMPOSITE checksum ending in -N."""
    parts = [random_bytes(PART_MIN, 109), random_bytes(PART_MIN, 110), random_bytes(MIB, 111)]
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32")[
        "UploadId"
    ]
    upload = {"Bucket": bucket, "Key": "k", "UploadId": upload_id}
    completed = []
    for number, data in enumerate(parts, start=1):
        response = s3.upload_part(PartNumber=number, Body=data, ChecksumAlgorithm="CRC32", **upload)
        assert response.get("ChecksumCRC32") == ALL_CHECKSUMS["CRC32"](data), response
        completed.append(
            {
                "PartNumber": number,
                "ETag": response["ETag"],
                "ChecksumCRC32": response["ChecksumCRC32"],
            }
        )
    bad = [dict(completed[0], ChecksumCRC32=ALL_CHECKSUMS["CRC32"](b"other")), *completed[1:]]
    expect_error(
        400, ("InvalidPart", "BadDigest", "InvalidRequest"), s3.complete_multipart_upload,
        MultipartUpload={"Parts": bad}, **upload,
    )
    assert upload_id in upload_ids(s3, bucket), "a refused Complete ended the upload"
    done = s3.complete_multipart_upload(MultipartUpload={"Parts": completed}, **upload)
    expected = composite("CRC32", parts)
    assert expected.endswith("-3")
    assert done.get("ChecksumCRC32") == expected, done
    assert done.get("ChecksumType") == "COMPOSITE", done
    head = s3.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head.get("ChecksumCRC32"), head.get("ChecksumType")) == (expected, "COMPOSITE"), head
    # A ranged or a part GET has no whole-object checksum to offer.
    ranged = s3.get_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED", Range="bytes=0-9")
    assert checksum_headers(ranged) == {}, headers_of(ranged)


def test_upload_file_default_checksum(s3, bucket, tmp_path):
    path = tmp_path / "upload.bin"
    body = random_bytes(PART_MIN + MIB, 112)
    path.write_bytes(body)
    config = TransferConfig(
        multipart_threshold=PART_MIN, multipart_chunksize=PART_MIN, use_threads=False
    )
    s3.upload_file(str(path), bucket, "uploaded", Config=config)
    head = s3.head_object(Bucket=bucket, Key="uploaded", ChecksumMode="ENABLED")
    expected = composite("CRC32", [body[:PART_MIN], body[PART_MIN:]])
    assert (head.get("ChecksumCRC32"), head.get("ChecksumType")) == (expected, "COMPOSITE"), head
    assert get_bytes(s3, bucket, "uploaded") == body


def test_multipart_full_object_crc32c(s3, bucket):
    client = plain_client()
    parts = [random_bytes(PART_MIN, 113), random_bytes(1234, 114)]
    whole = b64(crc32c(parts[1], crc32c(parts[0])).to_bytes(4, "big"))
    assert whole == ALL_CHECKSUMS["CRC32C"](b"".join(parts))
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32C", ChecksumType="FULL_OBJECT"
    )["UploadId"]
    upload = {"Bucket": bucket, "Key": "k", "UploadId": upload_id}
    completed = []
    for number, data in enumerate(parts, start=1):
        value = ALL_CHECKSUMS["CRC32C"](data)
        response = client.upload_part(PartNumber=number, Body=data, ChecksumCRC32C=value, **upload)
        assert response.get("ChecksumCRC32C") == value, response
        completed.append({"PartNumber": number, "ETag": response["ETag"], "ChecksumCRC32C": value})
    done = client.complete_multipart_upload(
        MultipartUpload={"Parts": completed}, ChecksumType="FULL_OBJECT", **upload
    )
    assert (done.get("ChecksumCRC32C"), done.get("ChecksumType")) == (whole, "FULL_OBJECT"), done
    head = client.head_object(Bucket=bucket, Key="k", ChecksumMode="ENABLED")
    assert (head.get("ChecksumCRC32C"), head.get("ChecksumType")) == (whole, "FULL_OBJECT"), head


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_complete_checksum_header_is_verified(s3, bucket, algorithm):
    """x-amz-checksum-<alg> on Complete: the whole object's CRC for a
    FULL_OBJECT upload, checked; a wrong value is refused and the upload
    stays."""
    client = plain_client()
    member = f"Checksum{algorithm}"
    body = random_bytes(2500, 115)
    kind = "FULL_OBJECT" if algorithm in CRC_ALGORITHMS else "COMPOSITE"
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm=algorithm, ChecksumType=kind
    )["UploadId"]
    upload = {"Bucket": bucket, "Key": "k", "UploadId": upload_id}
    value = ALL_CHECKSUMS[algorithm](body)
    etag = client.upload_part(PartNumber=1, Body=body, **upload, **{member: value})["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag, member: value}]}
    wrong = ALL_CHECKSUMS[algorithm](body + b"!")
    expect_error(
        400, ("BadDigest", "InvalidRequest"), client.complete_multipart_upload,
        MultipartUpload=parts, ChecksumType=kind, **upload, **{member: wrong},
    )
    assert upload_id in upload_ids(s3, bucket), "a refused Complete ended the upload"
    assert not key_exists(s3, bucket, "k")
    if kind == "FULL_OBJECT":
        done = client.complete_multipart_upload(
            MultipartUpload=parts, ChecksumType=kind, **upload, **{member: value}
        )
        assert done.get(member) == value, done
    else:
        done = client.complete_multipart_upload(MultipartUpload=parts, **upload)
        assert done.get(member) == composite(algorithm, [body]), done
    assert done.get("ChecksumType") == kind, done


def test_complete_checksum_type_must_match(s3, bucket):
    client = plain_client()
    body = random_bytes(2000, 116)
    value = ALL_CHECKSUMS["CRC32"](body)
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="CRC32", ChecksumType="COMPOSITE"
    )["UploadId"]
    upload = {"Bucket": bucket, "Key": "k", "UploadId": upload_id}
    etag = client.upload_part(PartNumber=1, Body=body, ChecksumCRC32=value, **upload)["ETag"]
    parts = {"Parts": [{"PartNumber": 1, "ETag": etag, "ChecksumCRC32": value}]}
    expect_error(
        400, ("InvalidRequest", "InvalidArgument"), client.complete_multipart_upload,
        MultipartUpload=parts, ChecksumType="FULL_OBJECT", **upload,
    )
    assert upload_id in upload_ids(s3, bucket)
    done = client.complete_multipart_upload(
        MultipartUpload=parts, ChecksumType="COMPOSITE", **upload
    )
    assert (done.get("ChecksumCRC32"), done.get("ChecksumType")) == (
        composite("CRC32", [body]), "COMPOSITE"
    ), done


# ---------------------------------------------------------------- Expect: 100-continue


def first_status_line(url, headers, timeout_s=5.0):
    """Sends a PUT's head only (no body) and returns the first status line
    the server answers."""
    parsed = urllib.parse.urlsplit(url)
    lines = [f"PUT {parsed.path} HTTP/1.1", f"Host: {parsed.netloc}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout_s) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        received = b""
        deadline = time.monotonic() + timeout_s
        while b"\r\n" not in received:
            if time.monotonic() > deadline:
                break
            try:
                chunk = sock.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
    return received.split(b"\r\n", 1)[0].decode(errors="replace")


def test_expect_continue_is_refused_before_100(s3, bucket):
    """A request the server will refuse gets its 403 at once, not a
    `100 Continue` inviting the body first."""
    body = random_bytes(100_000, 117)
    url = object_url(bucket, "expect")
    base = {"Content-Length": str(len(body)), "Expect": "100-continue"}
    wrong_secret = SECRET_KEY[:-1] + ("A" if SECRET_KEY[-1] != "A" else "B")
    signed_wrong = signed_headers("PUT", url, base, body, secret_key=wrong_secret)
    for what, headers in (("a bad signature", signed_wrong), ("no signature", base)):
        line = first_status_line(url, headers)
        assert not line.startswith("HTTP/1.1 100"), (
            f"{what}: the server sent {line!r} before refusing"
        )
        assert line.startswith("HTTP/1.1 403"), f"{what}: expected 403 first, got {line!r}"
    assert not key_exists(s3, bucket, "expect")
    # The right signature is invited to send its body.
    good = signed_headers("PUT", url, base, body)
    line = first_status_line(url, good)
    assert line.startswith("HTTP/1.1 100"), f"a good request got {line!r}, not 100 Continue"


def test_transfer_coding_other_than_chunked_is_refused(s3, bucket):
    """`Transfer-Encoding: gzip, chunked` would store compressed bytes as the
    object: 501 NotImplemented, nothing stored (RFC 9112 section 6.1)."""
    url = object_url(bucket, "gzipped")
    headers = signed_headers(
        "PUT", url, {"Transfer-Encoding": "gzip, chunked", "x-amz-content-sha256": "UNSIGNED-PAYLOAD"}
    )
    parsed = urllib.parse.urlsplit(url)
    with socket.create_connection((parsed.hostname, parsed.port), timeout=30) as sock:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        sock.sendall(f"PUT {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n{head}\r\n".encode())
        sock.sendall(b"5\r\nhello\r\n0\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 501"), reply[:200]
    assert not key_exists(s3, bucket, "gzipped")
    # Plain chunked framing is fine (signed over the decoded payload).
    chunked = signed_headers("PUT", url, {"Transfer-Encoding": "chunked"}, b"hello")
    status, _, reply = raw_request("PUT", url, chunked, body=b"5\r\nhello\r\n0\r\n\r\n", sign=False)
    assert status == 200, reply
    assert get_bytes(s3, bucket, "gzipped") == b"hello"


def test_list_parts_shows_checksums(s3, bucket):
    """ListParts of a checksummed upload names its algorithm and type and
    each part's checksum, as S3 does."""
    client = plain_client()
    upload_id = client.create_multipart_upload(
        Bucket=bucket, Key="k", ChecksumAlgorithm="SHA256"
    )["UploadId"]
    data = random_bytes(1000, 131)
    client.upload_part(
        Bucket=bucket, Key="k", UploadId=upload_id, PartNumber=1, Body=data,
        ChecksumSHA256=ALL_CHECKSUMS["SHA256"](data),
    )
    listed = client.list_parts(Bucket=bucket, Key="k", UploadId=upload_id)
    assert listed.get("ChecksumAlgorithm") == "SHA256", listed
    assert listed.get("ChecksumType") == "COMPOSITE", listed
    assert listed["Parts"][0].get("ChecksumSHA256") == ALL_CHECKSUMS["SHA256"](data), listed
    client.abort_multipart_upload(Bucket=bucket, Key="k", UploadId=upload_id)
