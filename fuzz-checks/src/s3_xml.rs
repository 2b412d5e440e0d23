//! Feeds arbitrary bytes to every S3 request body parser
//! (CompleteMultipartUpload, DeleteObjects, CreateBucketConfiguration) and
//! to the ISO 8601 timestamps DeleteObjects' conditions carry: each must
//! return a value or a refusal, never panic, and stay within its limits;
//! refusals must map to an S3 error that can be written out.

use photon_s3::sigv4::parse_iso8601_seconds;
use photon_s3::xml::{
    parse_complete_multipart_upload, parse_create_bucket_configuration, parse_delete, DeleteResult,
    DeletedObject, ParseXmlBodyError, DELETE_OBJECTS_MAX, ELEMENT_TEXT_BYTES_MAX,
    MULTIPART_PARTS_MAX,
};

fn refuse(error: ParseXmlBodyError) {
    let s3_error = error.to_s3_error();
    assert_eq!(s3_error.http_status(), 400);
    assert!(!s3_error.to_xml("request", "host").is_empty());
}

/// A timestamp either is refused or names a second of a four-digit year.
fn check_timestamp(text: &str) {
    if let Some(seconds) = parse_iso8601_seconds(text) {
        assert!(seconds < 253_402_300_800, "past year 9999: {text}");
    }
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        check_timestamp(text);
    }
    match parse_complete_multipart_upload(data) {
        Ok(parts) => {
            assert!(!parts.is_empty() && parts.len() <= MULTIPART_PARTS_MAX);
            assert!(parts
                .iter()
                .all(|part| (1..=10_000).contains(&part.part_number)));
            assert!(parts.iter().all(|part| part.checksums.len() <= 16));
        }
        Err(error) => refuse(error),
    }
    match parse_delete(data) {
        Ok(request) => {
            assert!(!request.objects.is_empty() && request.objects.len() <= DELETE_OBJECTS_MAX);
            assert!(request
                .objects
                .iter()
                .all(|object| object.key.len() <= ELEMENT_TEXT_BYTES_MAX));
            for object in &request.objects {
                if let Some(time) = &object.last_modified_time {
                    check_timestamp(time);
                }
            }
            // Whatever keys were read must be writable back as a DeleteResult.
            let deleted: Vec<DeletedObject<'_>> = request
                .objects
                .iter()
                .map(|object| DeletedObject {
                    key: &object.key,
                    version_id: object.version_id.as_deref(),
                })
                .collect();
            let body = DeleteResult {
                quiet: request.quiet,
                deleted: &deleted,
                errors: &[],
            }
            .to_xml();
            assert!(!body.is_empty());
        }
        Err(error) => refuse(error),
    }
    match parse_create_bucket_configuration(data) {
        Ok(configuration) => {
            if let Some(region) = configuration.location_constraint {
                assert!(!region.is_empty() && region.len() <= ELEMENT_TEXT_BYTES_MAX);
            }
        }
        Err(error) => refuse(error),
    }
}
