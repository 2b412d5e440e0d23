//! Real clients against our XML: botocore (the library under boto3 and the
//! aws CLI) writes the request bodies this crate parses, and parses every
//! response body this crate writes, through a full botocore S3 client whose
//! HTTP send is replaced by a canned answer. The Python half is
//! `xml_botocore.py` beside this file; it needs `python3.11` with botocore.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use photon_s3::error::{S3Error, S3ErrorCode};
use photon_s3::xml::{
    complete_multipart_upload_result, copy_object_result, copy_part_result,
    initiate_multipart_upload_result, list_all_my_buckets_result, location_constraint,
    parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete,
    versioning_configuration, BucketEntry, ChecksumElement, DeleteObjectError, DeleteResult,
    DeletedObject, KeyEncoding, ListMultipartUploadsResult, ListObjectVersionsResult,
    ListObjectsV1Result, ListObjectsV2Result, ListPartsResult, ObjectEntry, Owner, PartEntry,
    UploadEntry, VersioningStatus,
};

const PYTHON: &str = "python3.11";

/// A fresh directory for one test's files, removed when dropped.
struct ScratchDirectory(PathBuf);

impl ScratchDirectory {
    fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "photon-s3-xml-botocore-{}-{label}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch directory");
        Self(path)
    }
}

impl Drop for ScratchDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn run_script(mode: &str, directory: &Path) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/xml_botocore.py");
    let output = Command::new(PYTHON)
        .arg(&script)
        .arg(mode)
        .arg(directory)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {PYTHON} (botocore is needed): {error}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{PYTHON} {} {mode} failed: {stderr}",
        script.display()
    );
    String::from_utf8(output.stdout).expect("script output is UTF-8")
}

fn unhex(text: &str) -> String {
    String::from_utf8(hex::decode(text).expect("hex")).expect("UTF-8")
}

fn at(seconds: u64, milliseconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(seconds * 1_000 + milliseconds)
}

fn milliseconds(time: SystemTime) -> String {
    time.duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_millis()
        .to_string()
}

fn unquote(etag: &str) -> &str {
    etag.strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(etag)
}

// Direction (a): botocore writes, we parse. ---------------------------------

#[test]
fn botocore_request_bodies_parse() {
    let directory = ScratchDirectory::new("requests");
    run_script("requests", &directory.0);
    let expected = std::fs::read_to_string(directory.0.join("expected.tsv")).unwrap();
    let mut by_body: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    for line in expected.lines() {
        let mut fields = line.split('\t').map(str::to_owned);
        let name = fields.next().unwrap();
        match by_body.iter_mut().find(|(body_name, _)| *body_name == name) {
            Some((_, lines)) => lines.push(fields.collect()),
            None => by_body.push((name, vec![fields.collect()])),
        }
    }
    assert!(by_body.len() >= 17, "{by_body:?}");
    for (name, lines) in &by_body {
        let body = std::fs::read(directory.0.join(format!("{name}.xml"))).unwrap();
        check_request_body(name, &body, lines);
    }
}

fn check_request_body(name: &str, body: &[u8], lines: &[Vec<String>]) {
    let context = || format!("{name}: {}", String::from_utf8_lossy(body));
    if let [line] = lines {
        if line[0] == "refused" {
            let error = parse_delete(body).expect_err("over the limit");
            assert_eq!(S3Error::from(error).code.as_str(), line[1], "{}", context());
            return;
        }
        if line[0] == "count" {
            let parts = parse_complete_multipart_upload(body)
                .unwrap_or_else(|error| panic!("{error}: {}", context()));
            assert_eq!(parts.len().to_string(), line[1], "{}", context());
            assert!(parts
                .iter()
                .enumerate()
                .all(|(index, part)| usize::from(part.part_number) == index + 1));
            return;
        }
    }
    if name.starts_with("complete") {
        let parts = parse_complete_multipart_upload(body)
            .unwrap_or_else(|error| panic!("{error}: {}", context()));
        let expected: Vec<(u16, String)> = lines
            .iter()
            .map(|line| {
                (
                    line[1].parse().unwrap(),
                    unquote(&unhex(&line[2])).to_owned(),
                )
            })
            .collect();
        let parsed: Vec<(u16, String)> = parts
            .into_iter()
            .map(|part| (part.part_number, part.etag))
            .collect();
        assert_eq!(parsed, expected, "{}", context());
    } else if name.starts_with("delete") {
        let request = parse_delete(body).unwrap_or_else(|error| panic!("{error}: {}", context()));
        let expected_objects: Vec<(String, Option<String>)> = lines
            .iter()
            .filter(|line| line[0] == "object")
            .map(|line| (unhex(&line[1]), (line[2] != "-").then(|| unhex(&line[2]))))
            .collect();
        let parsed: Vec<(String, Option<String>)> = request
            .objects
            .into_iter()
            .map(|object| (object.key, object.version_id))
            .collect();
        assert_eq!(parsed, expected_objects, "{}", context());
        let quiet = lines
            .iter()
            .find(|line| line[0] == "quiet")
            .map(|line| line[1] == "true");
        assert_eq!(Some(request.quiet), quiet, "{}", context());
    } else if name.starts_with("create_bucket") {
        let configuration = parse_create_bucket_configuration(body)
            .unwrap_or_else(|error| panic!("{error}: {}", context()));
        let expected = (lines[0][1] != "-").then(|| unhex(&lines[0][1]));
        assert_eq!(configuration.location_constraint, expected, "{}", context());
    } else {
        panic!("no parser for {name}");
    }
}

// Direction (b): we write, botocore parses. --------------------------------

const OWNER: Owner<'static> = Owner {
    id: "75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a",
    display_name: Some("owner & co"),
};

/// Keys no XML 1.0 parser can read back unless they are URL-encoded.
const CONTROL_KEY: &str = "control\u{1}key";

/// Keys that survive plain XML escaping, carriage return included.
const PRINTABLE_KEYS: [&str; 6] = [
    "a&b<c>\"d\"'e'",
    "  spaced  ",
    "dir one/sub+dir/é日本😀",
    "100%",
    "tab\tcr\rline\nend",
    "plain.txt",
];

struct ResponseCase {
    name: &'static str,
    method: &'static str,
    status: u16,
    parameters: &'static str,
    body: Vec<u8>,
}

fn objects<'a>(keys: &[&'a str]) -> Vec<ObjectEntry<'a>> {
    keys.iter()
        .enumerate()
        .map(|(index, key)| ObjectEntry {
            key,
            last_modified: at(1_700_000_000 + index as u64, 250),
            etag: if index % 2 == 0 {
                "0123456789abcdef0123456789abcdef"
            } else {
                "\"fedcba98-2\""
            },
            size: (index as u64 + 1) * 1_048_576 + 7,
        })
        .collect()
}

fn listing_cases(all_keys: &[&str]) -> Vec<ResponseCase> {
    let all_objects = objects(all_keys);
    let printable_objects = objects(&PRINTABLE_KEYS);
    let list_v2 = |encoding, objects: &[ObjectEntry<'_>]| {
        ListObjectsV2Result {
            bucket: "bucket",
            prefix: "dir one/",
            delimiter: Some("/"),
            max_keys: 7,
            is_truncated: true,
            continuation_token: Some("opaque+token/=="),
            next_continuation_token: Some("next token&more"),
            start_after: Some("after me+"),
            encoding,
            owner: Some(OWNER),
            objects,
            common_prefixes: &["dir one/sub dir/", "dir one/é+/"],
        }
        .to_xml()
    };
    vec![
        ResponseCase {
            name: "list_objects_v2_url",
            method: "list_objects_v2",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Prefix": "dir one/", "FetchOwner": true}"#,
            body: list_v2(KeyEncoding::Url, &all_objects),
        },
        ResponseCase {
            name: "list_objects_v2_plain",
            method: "list_objects_v2",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: list_v2(KeyEncoding::None, &printable_objects),
        },
        ResponseCase {
            name: "list_objects_v2_control_plain",
            method: "list_objects_v2",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: list_v2(KeyEncoding::None, &objects(&[CONTROL_KEY])),
        },
        ResponseCase {
            name: "list_objects_v1_url",
            method: "list_objects",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Marker": "m a+rk"}"#,
            body: ListObjectsV1Result {
                bucket: "bucket",
                prefix: "dir one/",
                marker: "m a+rk",
                next_marker: Some("next mark+"),
                delimiter: Some("/"),
                max_keys: 1000,
                is_truncated: true,
                encoding: KeyEncoding::Url,
                owner: Some(OWNER),
                objects: &all_objects,
                common_prefixes: &["dir one/sub dir/"],
            }
            .to_xml(),
        },
        ResponseCase {
            name: "list_object_versions_url",
            method: "list_object_versions",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: ListObjectVersionsResult {
                bucket: "bucket",
                prefix: "",
                key_marker: "key marker+",
                version_id_marker: "",
                next_key_marker: Some("next key+"),
                next_version_id_marker: Some("null"),
                delimiter: None,
                max_keys: 1000,
                is_truncated: true,
                encoding: KeyEncoding::Url,
                owner: Some(OWNER),
                objects: &all_objects,
                common_prefixes: &[],
            }
            .to_xml(),
        },
    ]
}

fn multipart_cases() -> Vec<ResponseCase> {
    let parts = [
        PartEntry {
            part_number: 1,
            last_modified: at(1_600_000_000, 1),
            etag: "p1",
            size: 5 * 1_048_576,
            checksum: Some(ChecksumElement {
                algorithm: "CRC32C",
                value: "yZRlqg==",
                kind: "FULL_OBJECT",
            }),
        },
        PartEntry {
            part_number: 10_000,
            last_modified: at(1_600_000_001, 2),
            etag: "\"p2\"",
            size: 3,
            checksum: None,
        },
    ];
    let uploads = [
        UploadEntry {
            key: "a&b upload",
            upload_id: "upload-1",
            initiated: at(1_600_000_002, 3),
            owner: OWNER,
        },
        UploadEntry {
            key: "z",
            upload_id: "upload-2",
            initiated: at(1_600_000_003, 4),
            owner: OWNER,
        },
    ];
    vec![
        ResponseCase {
            name: "create_multipart_upload",
            method: "create_multipart_upload",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Key": "big & file"}"#,
            body: initiate_multipart_upload_result("bucket", "big & file", "upload<1>"),
        },
        ResponseCase {
            name: "complete_multipart_upload",
            method: "complete_multipart_upload",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Key": "big", "UploadId": "u", "MultipartUpload": {"Parts": [{"PartNumber": 1, "ETag": "\"e\""}]}}"#,
            body: complete_multipart_upload_result(
                "http://localhost/bucket/big%20file",
                "bucket",
                "big file",
                "abc-2",
                Some(ChecksumElement {
                    algorithm: "CRC32",
                    value: "AAAAAA==-2",
                    kind: "COMPOSITE",
                }),
            ),
        },
        ResponseCase {
            name: "copy_object",
            method: "copy_object",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Key": "copy", "CopySource": "source/key"}"#,
            body: copy_object_result(
                at(1_650_000_000, 999),
                "copied",
                Some(ChecksumElement {
                    algorithm: "SHA256",
                    value: "c2hh",
                    kind: "FULL_OBJECT",
                }),
            ),
        },
        ResponseCase {
            name: "upload_part_copy",
            method: "upload_part_copy",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Key": "k", "UploadId": "u", "PartNumber": 2, "CopySource": "source/key"}"#,
            body: copy_part_result(at(1_650_000_001, 0), "\"part\"", None),
        },
        ResponseCase {
            name: "list_parts",
            method: "list_parts",
            status: 200,
            parameters: r#"{"Bucket": "bucket", "Key": "k", "UploadId": "u"}"#,
            body: ListPartsResult {
                bucket: "bucket",
                key: "k",
                upload_id: "u",
                part_number_marker: 0,
                next_part_number_marker: 10_000,
                max_parts: 2,
                is_truncated: true,
                owner: OWNER,
                parts: &parts,
                checksum: Some(("CRC32C", "COMPOSITE")),
            }
            .to_xml(),
        },
        ResponseCase {
            name: "list_multipart_uploads",
            method: "list_multipart_uploads",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: ListMultipartUploadsResult {
                bucket: "bucket",
                prefix: "",
                delimiter: Some("/"),
                key_marker: "",
                upload_id_marker: "",
                next_key_marker: "z",
                next_upload_id_marker: "upload-2",
                max_uploads: 2,
                is_truncated: true,
                encoding: KeyEncoding::None,
                uploads: &uploads,
                common_prefixes: &["dir/"],
            }
            .to_xml(),
        },
    ]
}

fn bucket_and_error_cases() -> Vec<ResponseCase> {
    let deleted = [
        DeletedObject {
            key: "gone & done",
            version_id: None,
        },
        DeletedObject {
            key: "versioned",
            version_id: Some("null"),
        },
    ];
    let errors = [DeleteObjectError {
        key: "locked<key>",
        version_id: None,
        code: S3ErrorCode::AccessDenied,
        message: Some("no \"delete\" for you"),
    }];
    let delete_parameters =
        r#"{"Bucket": "bucket", "Delete": {"Objects": [{"Key": "gone & done"}]}}"#;
    let no_such_key =
        S3Error::with_message(S3ErrorCode::NoSuchKey, "The key <a&b> does not exist.")
            .with_extra("Key", "a&b")
            .with_resource("/bucket/a&b");
    let invalid_argument = KeyEncoding::from_query(Some("base64")).unwrap_err();
    vec![
        ResponseCase {
            name: "list_buckets",
            method: "list_buckets",
            status: 200,
            parameters: "{}",
            body: list_all_my_buckets_result(
                OWNER,
                &[
                    BucketEntry {
                        name: "alpha",
                        creation_date: at(1_255_369_830, 123),
                        region: "us-east-1",
                    },
                    BucketEntry {
                        name: "beta.bucket-2",
                        creation_date: at(0, 0),
                        region: "eu-west-1",
                    },
                ],
                Some("next+token/=="),
                Some("al"),
            ),
        },
        ResponseCase {
            name: "delete_objects",
            method: "delete_objects",
            status: 200,
            parameters: delete_parameters,
            body: DeleteResult {
                quiet: false,
                deleted: &deleted,
                errors: &errors,
            }
            .to_xml(),
        },
        ResponseCase {
            name: "delete_objects_quiet",
            method: "delete_objects",
            status: 200,
            parameters: delete_parameters,
            body: DeleteResult {
                quiet: true,
                deleted: &deleted,
                errors: &errors,
            }
            .to_xml(),
        },
        ResponseCase {
            name: "get_bucket_location",
            method: "get_bucket_location",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: location_constraint("eu-west-1"),
        },
        ResponseCase {
            name: "get_bucket_versioning_never",
            method: "get_bucket_versioning",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: versioning_configuration(None),
        },
        ResponseCase {
            name: "get_bucket_versioning_enabled",
            method: "get_bucket_versioning",
            status: 200,
            parameters: r#"{"Bucket": "bucket"}"#,
            body: versioning_configuration(Some(VersioningStatus::Enabled)),
        },
        ResponseCase {
            name: "error_no_such_key",
            method: "get_object",
            status: no_such_key.http_status(),
            parameters: r#"{"Bucket": "bucket", "Key": "a&b"}"#,
            body: no_such_key.to_xml("REQUEST-1&", "HOST<1>"),
        },
        ResponseCase {
            name: "error_invalid_argument",
            method: "list_objects_v2",
            status: invalid_argument.http_status(),
            parameters: r#"{"Bucket": "bucket"}"#,
            body: invalid_argument.to_xml("REQUEST-2", "HOST-2"),
        },
        ResponseCase {
            name: "error_slow_down",
            method: "list_buckets",
            status: S3ErrorCode::SlowDown.http_status(),
            parameters: "{}",
            body: S3Error::new(S3ErrorCode::SlowDown).to_xml("REQUEST-3", "HOST-3"),
        },
        ResponseCase {
            name: "error_not_modified",
            method: "get_object",
            status: S3ErrorCode::NotModified.http_status(),
            parameters: r#"{"Bucket": "bucket", "Key": "k", "IfNoneMatch": "\"e\""}"#,
            body: S3Error::new(S3ErrorCode::NotModified).to_xml("REQUEST-4", "HOST-4"),
        },
    ]
}

/// botocore's parsed answers: case name to (path, value) pairs in order.
struct Parsed(HashMap<String, Vec<(String, String)>>);

impl Parsed {
    fn case(&self, name: &str) -> &[(String, String)] {
        self.0
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_else(|| panic!("botocore printed nothing for {name}"))
    }

    fn get(&self, name: &str, path: &str) -> &str {
        let case = self.case(name);
        case.iter()
            .find(|(leaf, _)| leaf == path)
            .map(|(_, value)| value.as_str())
            .unwrap_or_else(|| panic!("{name}: botocore has no {path}; it parsed {case:#?}"))
    }

    fn has(&self, name: &str, path_prefix: &str) -> bool {
        self.case(name)
            .iter()
            .any(|(leaf, _)| leaf.starts_with(path_prefix))
    }

    fn count(&self, name: &str, list: &str) -> usize {
        let prefix = format!("{list}[");
        let mut indexes: Vec<&str> = self
            .case(name)
            .iter()
            .filter_map(|(leaf, _)| leaf.strip_prefix(&prefix)?.split(']').next())
            .collect();
        indexes.dedup();
        indexes.len()
    }
}

fn parse_with_botocore(cases: &[ResponseCase]) -> Parsed {
    let directory = ScratchDirectory::new("responses");
    let mut listing = String::new();
    for case in cases {
        std::fs::write(directory.0.join(format!("{}.xml", case.name)), &case.body).unwrap();
        listing.push_str(&format!(
            "{}\t{}\t{}\t{}\n",
            case.name, case.method, case.status, case.parameters
        ));
    }
    std::fs::write(directory.0.join("cases.tsv"), listing).unwrap();
    let output = run_script("responses", &directory.0);
    let mut parsed: HashMap<String, Vec<(String, String)>> = HashMap::new();
    for line in output.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "unexpected output line {line:?}");
        parsed
            .entry(fields[0].to_owned())
            .or_default()
            .push((fields[1].to_owned(), unhex(fields[2])));
    }
    Parsed(parsed)
}

#[test]
fn botocore_reads_every_response() {
    let mut all_keys: Vec<&str> = PRINTABLE_KEYS.to_vec();
    all_keys.push(CONTROL_KEY);
    let mut cases = listing_cases(&all_keys);
    cases.extend(multipart_cases());
    cases.extend(bucket_and_error_cases());
    let parsed = parse_with_botocore(&cases);
    for case in &cases {
        assert!(
            !parsed.has(case.name, "!exception"),
            "{}: {:?}",
            case.name,
            parsed.case(case.name)
        );
    }
    check_listings(&parsed, &all_keys);
    check_multipart(&parsed);
    check_buckets_and_errors(&parsed);
}

fn check_objects(parsed: &Parsed, name: &str, list: &str, keys: &[&str]) {
    assert_eq!(parsed.count(name, list), keys.len(), "{name}");
    for (index, object) in objects(keys).iter().enumerate() {
        let field = |leaf: &str| format!("{list}[{index}].{leaf}");
        assert_eq!(
            parsed.get(name, &field("Key")),
            object.key,
            "{name} {index}"
        );
        assert_eq!(
            parsed.get(name, &field("ETag")),
            format!("\"{}\"", unquote(object.etag))
        );
        assert_eq!(parsed.get(name, &field("Size")), object.size.to_string());
        assert_eq!(
            parsed.get(name, &field("LastModified")),
            milliseconds(object.last_modified)
        );
        assert_eq!(parsed.get(name, &field("StorageClass")), "STANDARD");
        assert_eq!(parsed.get(name, &field("Owner.ID")), OWNER.id);
        assert_eq!(parsed.get(name, &field("Owner.DisplayName")), "owner & co");
    }
}

fn check_listings(parsed: &Parsed, all_keys: &[&str]) {
    // ListObjectsV2: botocore asked for encoding-type=url itself, so it
    // decodes Key, Prefix, Delimiter, StartAfter and CommonPrefixes.
    for (name, keys) in [
        ("list_objects_v2_url", all_keys),
        ("list_objects_v2_plain", &PRINTABLE_KEYS[..]),
    ] {
        check_objects(parsed, name, "Contents", keys);
        assert_eq!(parsed.get(name, "Name"), "bucket");
        assert_eq!(parsed.get(name, "Prefix"), "dir one/");
        assert_eq!(parsed.get(name, "Delimiter"), "/");
        assert_eq!(parsed.get(name, "StartAfter"), "after me+");
        assert_eq!(parsed.get(name, "ContinuationToken"), "opaque+token/==");
        assert_eq!(parsed.get(name, "NextContinuationToken"), "next token&more");
        assert_eq!(parsed.get(name, "IsTruncated"), "true");
        assert_eq!(parsed.get(name, "MaxKeys"), "7");
        assert_eq!(parsed.get(name, "KeyCount"), (keys.len() + 2).to_string());
        assert_eq!(
            parsed.get(name, "CommonPrefixes[0].Prefix"),
            "dir one/sub dir/"
        );
        assert_eq!(parsed.get(name, "CommonPrefixes[1].Prefix"), "dir one/é+/");
    }
    assert_eq!(parsed.get("list_objects_v2_url", "EncodingType"), "url");
    assert!(!parsed.has("list_objects_v2_plain", "EncodingType"));
    // A control character written as a character reference is not XML 1.0:
    // botocore refuses the whole page, which is why it asks for URL encoding.
    // botocore turns an unparseable 200 into a 500 and retries it.
    assert!(!parsed.has("list_objects_v2_control_plain", "Contents"));
    assert_eq!(
        parsed.get("list_objects_v2_control_plain", "Error.Code"),
        "500"
    );

    let name = "list_objects_v1_url";
    check_objects(parsed, name, "Contents", all_keys);
    assert_eq!(parsed.get(name, "Marker"), "m a+rk");
    assert_eq!(parsed.get(name, "NextMarker"), "next mark+");
    assert_eq!(parsed.get(name, "Delimiter"), "/");
    assert_eq!(
        parsed.get(name, "CommonPrefixes[0].Prefix"),
        "dir one/sub dir/"
    );
    // S3 leaves v1's Prefix unencoded and botocore's ListObjects (v1)
    // decoder leaves it alone: the caller sees its own prefix.
    assert_eq!(parsed.get(name, "Prefix"), "dir one/");

    let name = "list_object_versions_url";
    assert_eq!(parsed.count(name, "Versions"), all_keys.len());
    for (index, key) in all_keys.iter().enumerate() {
        assert_eq!(parsed.get(name, &format!("Versions[{index}].Key")), *key);
        assert_eq!(
            parsed.get(name, &format!("Versions[{index}].VersionId")),
            "null"
        );
        assert_eq!(
            parsed.get(name, &format!("Versions[{index}].IsLatest")),
            "true"
        );
    }
    assert!(!parsed.has(name, "DeleteMarkers"));
    assert_eq!(parsed.get(name, "KeyMarker"), "key marker+");
    assert_eq!(parsed.get(name, "NextKeyMarker"), "next key+");
    assert_eq!(parsed.get(name, "NextVersionIdMarker"), "null");
    assert_eq!(parsed.get(name, "IsTruncated"), "true");
}

fn check_multipart(parsed: &Parsed) {
    assert_eq!(parsed.get("create_multipart_upload", "Key"), "big & file");
    assert_eq!(
        parsed.get("create_multipart_upload", "UploadId"),
        "upload<1>"
    );
    assert_eq!(parsed.get("create_multipart_upload", "Bucket"), "bucket");

    let name = "complete_multipart_upload";
    assert_eq!(
        parsed.get(name, "Location"),
        "http://localhost/bucket/big%20file"
    );
    assert_eq!(parsed.get(name, "Key"), "big file");
    assert_eq!(parsed.get(name, "ETag"), "\"abc-2\"");
    assert_eq!(parsed.get(name, "ChecksumCRC32"), "AAAAAA==-2");
    assert_eq!(parsed.get(name, "ChecksumType"), "COMPOSITE");
    assert_eq!(
        parsed.get("copy_object", "CopyObjectResult.ChecksumSHA256"),
        "c2hh"
    );
    assert_eq!(
        parsed.get("copy_object", "CopyObjectResult.ChecksumType"),
        "FULL_OBJECT"
    );

    assert_eq!(
        parsed.get("copy_object", "CopyObjectResult.ETag"),
        "\"copied\""
    );
    assert_eq!(
        parsed.get("copy_object", "CopyObjectResult.LastModified"),
        milliseconds(at(1_650_000_000, 999))
    );
    assert_eq!(
        parsed.get("upload_part_copy", "CopyPartResult.ETag"),
        "\"part\""
    );

    let name = "list_parts";
    assert_eq!(parsed.count(name, "Parts"), 2);
    assert_eq!(parsed.get(name, "Parts[0].PartNumber"), "1");
    assert_eq!(parsed.get(name, "Parts[0].ETag"), "\"p1\"");
    assert_eq!(parsed.get(name, "Parts[0].Size"), "5242880");
    assert_eq!(
        parsed.get(name, "Parts[0].LastModified"),
        milliseconds(at(1_600_000_000, 1))
    );
    assert_eq!(parsed.get(name, "Parts[1].PartNumber"), "10000");
    assert_eq!(parsed.get(name, "Parts[1].ETag"), "\"p2\"");
    assert_eq!(parsed.get(name, "Parts[0].ChecksumCRC32C"), "yZRlqg==");
    assert!(!parsed.has(name, "Parts[1].ChecksumCRC32C"));
    assert_eq!(parsed.get(name, "ChecksumAlgorithm"), "CRC32C");
    assert_eq!(parsed.get(name, "ChecksumType"), "COMPOSITE");
    assert_eq!(parsed.get(name, "NextPartNumberMarker"), "10000");
    assert_eq!(parsed.get(name, "IsTruncated"), "true");
    assert_eq!(parsed.get(name, "Initiator.ID"), OWNER.id);
    assert_eq!(parsed.get(name, "Owner.ID"), OWNER.id);
    assert_eq!(parsed.get(name, "StorageClass"), "STANDARD");

    let name = "list_multipart_uploads";
    assert_eq!(parsed.count(name, "Uploads"), 2);
    assert_eq!(parsed.get(name, "Uploads[0].Key"), "a&b upload");
    assert_eq!(parsed.get(name, "Uploads[0].UploadId"), "upload-1");
    assert_eq!(
        parsed.get(name, "Uploads[0].Initiated"),
        milliseconds(at(1_600_000_002, 3))
    );
    assert_eq!(parsed.get(name, "Uploads[1].Initiator.ID"), OWNER.id);
    assert_eq!(parsed.get(name, "NextKeyMarker"), "z");
    assert_eq!(parsed.get(name, "NextUploadIdMarker"), "upload-2");
    assert_eq!(parsed.get(name, "CommonPrefixes[0].Prefix"), "dir/");
    assert_eq!(parsed.get(name, "IsTruncated"), "true");
}

fn check_buckets_and_errors(parsed: &Parsed) {
    let name = "list_buckets";
    assert_eq!(parsed.get(name, "Owner.ID"), OWNER.id);
    assert_eq!(parsed.get(name, "Owner.DisplayName"), "owner & co");
    assert_eq!(parsed.get(name, "Buckets[0].Name"), "alpha");
    assert_eq!(
        parsed.get(name, "Buckets[0].CreationDate"),
        milliseconds(at(1_255_369_830, 123))
    );
    assert_eq!(parsed.get(name, "Buckets[1].Name"), "beta.bucket-2");
    assert_eq!(parsed.get(name, "Buckets[1].CreationDate"), "0");
    assert_eq!(parsed.get(name, "Buckets[1].BucketRegion"), "eu-west-1");
    assert_eq!(parsed.get(name, "ContinuationToken"), "next+token/==");
    assert_eq!(parsed.get(name, "Prefix"), "al");

    let name = "delete_objects";
    assert_eq!(parsed.get(name, "Deleted[0].Key"), "gone & done");
    assert_eq!(parsed.get(name, "Deleted[1].Key"), "versioned");
    assert_eq!(parsed.get(name, "Deleted[1].VersionId"), "null");
    assert_eq!(parsed.get(name, "Errors[0].Key"), "locked<key>");
    assert_eq!(parsed.get(name, "Errors[0].Code"), "AccessDenied");
    assert_eq!(
        parsed.get(name, "Errors[0].Message"),
        "no \"delete\" for you"
    );
    assert!(!parsed.has("delete_objects_quiet", "Deleted"));
    assert_eq!(
        parsed.get("delete_objects_quiet", "Errors[0].Code"),
        "AccessDenied"
    );

    assert_eq!(
        parsed.get("get_bucket_location", "LocationConstraint"),
        "eu-west-1"
    );
    assert!(!parsed.has("get_bucket_versioning_never", "Status"));
    assert_eq!(
        parsed.get("get_bucket_versioning_enabled", "Status"),
        "Enabled"
    );

    let name = "error_no_such_key";
    assert_eq!(parsed.get(name, "Error.Code"), "NoSuchKey");
    assert_eq!(
        parsed.get(name, "Error.Message"),
        "The key <a&b> does not exist."
    );
    assert_eq!(parsed.get(name, "Error.Key"), "a&b");
    assert_eq!(parsed.get(name, "ResponseMetadata.HTTPStatusCode"), "404");
    assert_eq!(parsed.get(name, "Error.Resource"), "/bucket/a&b");
    // botocore reads the IDs from the x-amz-request-id and x-amz-id-2
    // headers and drops the body's copies, so the front end must send both.
    assert_eq!(
        parsed.get(name, "ResponseMetadata.RequestId"),
        "HEADER-REQUEST-ID"
    );
    assert_eq!(
        parsed.get(name, "ResponseMetadata.HostId"),
        "HEADER-HOST-ID"
    );
    assert!(!parsed.has(name, "Error.RequestId") && !parsed.has(name, "Error.HostId"));

    let name = "error_invalid_argument";
    assert_eq!(parsed.get(name, "Error.Code"), "InvalidArgument");
    assert_eq!(parsed.get(name, "Error.ArgumentName"), "encoding-type");
    assert_eq!(parsed.get(name, "Error.ArgumentValue"), "base64");
    assert_eq!(parsed.get(name, "ResponseMetadata.HTTPStatusCode"), "400");

    assert_eq!(parsed.get("error_slow_down", "Error.Code"), "SlowDown");
    assert_eq!(
        parsed.get("error_slow_down", "Error.Message"),
        "Please reduce your request rate."
    );
    assert_eq!(
        parsed.get("error_slow_down", "ResponseMetadata.HTTPStatusCode"),
        "503"
    );

    // 304 has no body; botocore names the error after the status.
    assert_eq!(parsed.get("error_not_modified", "Error.Code"), "304");
    assert_eq!(
        parsed.get("error_not_modified", "ResponseMetadata.HTTPStatusCode"),
        "304"
    );
}
