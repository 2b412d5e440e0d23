//! Request body parsers: CompleteMultipartUpload, DeleteObjects and
//! CreateBucketConfiguration.
//!
//! One streaming walker ([`walk_document`]) enforces well-formedness, a
//! single root element, the depth and text limits, and refuses DTDs; each
//! operation adds a small visitor that picks out its elements by path and
//! skips the ones it does not know, so newer clients' extra elements (such
//! as part checksums) do not break older servers.

use quick_xml::events::{BytesStart, BytesText, Event};
use quick_xml::Reader;

use super::{
    COMPLETE_MULTIPART_BODY_BYTES_MAX, CREATE_BUCKET_BODY_BYTES_MAX, DELETE_OBJECTS_BODY_BYTES_MAX,
    DELETE_OBJECTS_MAX, ELEMENT_DEPTH_MAX, ELEMENT_TEXT_BYTES_MAX, MULTIPART_PARTS_MAX,
};
use crate::error::{S3Error, S3ErrorCode};

const UTF8_BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseXmlBodyError {
    #[error("the request body is empty")]
    Empty,
    #[error("the request body is {bytes} bytes, over the limit of {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("malformed XML at byte {position}: {reason}")]
    Malformed { reason: &'static str, position: u64 },
    #[error("more than {limit} {what} in one request")]
    TooManyItems { what: &'static str, limit: usize },
    #[error("part number {value:?} is outside 1..=10000")]
    PartNumberOutOfRange { value: String },
}

impl ParseXmlBodyError {
    /// The S3 answer for this refusal; the one place it is decided.
    pub fn to_s3_error(&self) -> S3Error {
        match self {
            Self::Empty => S3Error::new(S3ErrorCode::MissingRequestBodyError),
            Self::TooLarge { .. } => S3Error::new(S3ErrorCode::MaxMessageLengthExceeded),
            // S3 answers MalformedXML for a DeleteObjects over 1,000 keys.
            Self::Malformed { .. } | Self::TooManyItems { .. } => {
                S3Error::new(S3ErrorCode::MalformedXML)
            }
            Self::PartNumberOutOfRange { value } => S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "Part number must be an integer between 1 and 10000, inclusive",
            )
            .with_extra("ArgumentName", "partNumber")
            .with_extra("ArgumentValue", value.clone()),
        }
    }
}

impl From<ParseXmlBodyError> for S3Error {
    fn from(error: ParseXmlBodyError) -> Self {
        error.to_s3_error()
    }
}

/// Receives the elements of a request document from [`walk_document`].
/// Paths are local names joined by `/`, starting with the root.
trait DocumentVisitor {
    fn element_start(&mut self, path: &str) -> Result<(), VisitError>;
    /// `text` is the element's whole character data, or `None` when it has
    /// child elements.
    fn element_end(&mut self, path: &str, text: Option<&str>) -> Result<(), VisitError>;
}

/// A visitor's refusal: a schema error (the walker adds the position) or a
/// specific answer such as a limit.
enum VisitError {
    Malformed(&'static str),
    Refused(ParseXmlBodyError),
}

impl From<&'static str> for VisitError {
    fn from(reason: &'static str) -> Self {
        Self::Malformed(reason)
    }
}

struct OpenElement {
    path_length_before: usize,
    has_child: bool,
}

fn is_xml_whitespace(text: &[u8]) -> bool {
    text.iter()
        .all(|byte| matches!(byte, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Whether a body holds nothing but whitespace (after a byte order mark).
fn is_blank(body: &[u8]) -> bool {
    is_xml_whitespace(body.strip_prefix(UTF8_BYTE_ORDER_MARK).unwrap_or(body))
}

fn check_size(body: &[u8], limit: usize) -> Result<(), ParseXmlBodyError> {
    if body.len() > limit {
        return Err(ParseXmlBodyError::TooLarge {
            bytes: body.len(),
            limit,
        });
    }
    Ok(())
}

/// Streams `body` through `visitor`, enforcing well-formedness, a single
/// root named `root`, the depth and text limits, and no DTD.
fn walk_document(
    body: &[u8],
    root: &str,
    visitor: &mut impl DocumentVisitor,
) -> Result<(), ParseXmlBodyError> {
    let body = body.strip_prefix(UTF8_BYTE_ORDER_MARK).unwrap_or(body);
    let mut reader = Reader::from_reader(body);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    config.check_comments = true;
    let mut walker = DocumentWalker {
        root,
        path: String::new(),
        open_elements: Vec::with_capacity(ELEMENT_DEPTH_MAX),
        text: String::new(),
        root_closed: false,
    };
    loop {
        let event = reader.read_event();
        let position = reader.buffer_position();
        let fail = |reason: &'static str| ParseXmlBodyError::Malformed { reason, position };
        let refuse = |error: VisitError| match error {
            VisitError::Malformed(reason) => fail(reason),
            VisitError::Refused(error) => error,
        };
        match event.map_err(|_| fail("not well-formed"))? {
            Event::Start(start) => walker.start(&start, visitor).map_err(refuse)?,
            Event::End(_) => walker.end(visitor).map_err(refuse)?,
            Event::Text(raw) => walker.text(&raw).map_err(fail)?,
            Event::CData(data) => {
                let data = std::str::from_utf8(&data).map_err(|_| fail("CDATA is not UTF-8"))?;
                walker.character_data(data).map_err(fail)?;
            }
            // expand_empty_elements turns <a/> into Start and End.
            Event::Empty(_) => return Err(fail("unexpected empty element event")),
            Event::Decl(_) if walker.before_root() => {}
            Event::Decl(_) => return Err(fail("XML declaration after the root element started")),
            Event::DocType(_) => return Err(fail("document type declarations are refused")),
            Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => return walker.finish().map_err(fail),
        }
    }
}

/// The walker's state between events: where it is, and the text of the
/// innermost open element.
struct DocumentWalker<'root> {
    root: &'root str,
    /// Local names of the open elements joined by `/`.
    path: String,
    open_elements: Vec<OpenElement>,
    text: String,
    root_closed: bool,
}

impl DocumentWalker<'_> {
    fn before_root(&self) -> bool {
        !self.root_closed && self.open_elements.is_empty()
    }

    fn start(
        &mut self,
        start: &BytesStart<'_>,
        visitor: &mut impl DocumentVisitor,
    ) -> Result<(), VisitError> {
        if self.root_closed {
            return Err("content after the root element".into());
        }
        if self.open_elements.len() >= ELEMENT_DEPTH_MAX {
            return Err("elements nested too deeply".into());
        }
        let name = element_local_name(start)?;
        let path_length_before = self.path.len();
        if let Some(parent) = self.open_elements.last_mut() {
            parent.has_child = true;
            if !is_xml_whitespace(self.text.as_bytes()) {
                return Err("text mixed with elements".into());
            }
            self.text.clear();
            self.path.push('/');
        } else if name != self.root {
            return Err("unexpected root element".into());
        }
        self.open_elements.push(OpenElement {
            path_length_before,
            has_child: false,
        });
        self.path.push_str(name);
        visitor.element_start(&self.path)
    }

    fn end(&mut self, visitor: &mut impl DocumentVisitor) -> Result<(), VisitError> {
        // quick-xml has already matched the end tag to its start tag.
        let element = self.open_elements.pop().ok_or("unmatched end tag")?;
        let content = if element.has_child {
            if !is_xml_whitespace(self.text.as_bytes()) {
                return Err("text mixed with elements".into());
            }
            None
        } else {
            Some(self.text.as_str())
        };
        visitor.element_end(&self.path, content)?;
        self.text.clear();
        self.path.truncate(element.path_length_before);
        self.root_closed = self.open_elements.is_empty();
        Ok(())
    }

    fn text(&mut self, raw: &BytesText<'_>) -> Result<(), &'static str> {
        if self.open_elements.is_empty() {
            return if is_xml_whitespace(raw) {
                Ok(())
            } else {
                Err("text outside the root element")
            };
        }
        let unescaped = raw
            .unescape()
            .map_err(|_| "bad entity or character reference")?;
        self.character_data(&unescaped)
    }

    fn character_data(&mut self, data: &str) -> Result<(), &'static str> {
        if self.open_elements.is_empty() {
            return Err("character data outside the root element");
        }
        if self.text.len().saturating_add(data.len()) > ELEMENT_TEXT_BYTES_MAX {
            return Err("element text too long");
        }
        self.text.push_str(data);
        Ok(())
    }

    fn finish(&self) -> Result<(), &'static str> {
        if self.root_closed {
            Ok(())
        } else if self.open_elements.is_empty() {
            Err("no root element")
        } else {
            Err("the document ends inside an element")
        }
    }
}

fn element_local_name<'event>(start: &'event BytesStart<'_>) -> Result<&'event str, &'static str> {
    // Reading every attribute makes quick-xml check their syntax; their
    // values (namespace declarations) do not matter here.
    for attribute in start.attributes().with_checks(true) {
        attribute.map_err(|_| "malformed attribute")?;
    }
    let local_name = start.local_name().into_inner();
    std::str::from_utf8(local_name).map_err(|_| "element name is not UTF-8")
}

/// Runs one parser: the size and emptiness checks, then the walk.
fn parse_document(
    body: &[u8],
    limit: usize,
    root: &str,
    visitor: &mut impl DocumentVisitor,
) -> Result<(), ParseXmlBodyError> {
    check_size(body, limit)?;
    if is_blank(body) {
        return Err(ParseXmlBodyError::Empty);
    }
    walk_document(body, root, visitor)
}

fn trim_xml_whitespace(text: &str) -> &str {
    text.trim_matches(|character| matches!(character, ' ' | '\t' | '\r' | '\n'))
}

/// One `<Part>` of a CompleteMultipartUpload request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedPart {
    /// 1..=10000.
    pub part_number: u16,
    /// Without surrounding quotes, whether or not the client sent them.
    pub etag: String,
    /// `Checksum<ALGORITHM>` elements: (algorithm as named, value).
    pub checksums: Vec<(String, String)>,
}

#[derive(Default)]
struct CompleteVisitor {
    parts: Vec<CompletedPart>,
    part_number: Option<u16>,
    etag: Option<String>,
    checksums: Vec<(String, String)>,
}

/// At most this many checksum elements per part (S3 defines fewer).
const PART_CHECKSUMS_MAX: usize = 16;

impl DocumentVisitor for CompleteVisitor {
    fn element_start(&mut self, path: &str) -> Result<(), VisitError> {
        if path == "CompleteMultipartUpload/Part" {
            if self.parts.len() >= MULTIPART_PARTS_MAX {
                return Err(VisitError::Refused(ParseXmlBodyError::TooManyItems {
                    what: "parts",
                    limit: MULTIPART_PARTS_MAX,
                }));
            }
            self.part_number = None;
            self.etag = None;
            self.checksums.clear();
        }
        Ok(())
    }

    fn element_end(&mut self, path: &str, text: Option<&str>) -> Result<(), VisitError> {
        match path {
            "CompleteMultipartUpload/Part/PartNumber" => {
                let text = text.ok_or("PartNumber has child elements")?;
                if self.part_number.is_some() {
                    return Err("PartNumber given twice in one Part".into());
                }
                self.part_number = Some(parse_part_number(trim_xml_whitespace(text))?);
            }
            "CompleteMultipartUpload/Part/ETag" => {
                let text = text.ok_or("ETag has child elements")?;
                if self.etag.is_some() {
                    return Err("ETag given twice in one Part".into());
                }
                self.etag = Some(unquote_etag(text).to_owned());
            }
            "CompleteMultipartUpload/Part" => {
                let part_number = self.part_number.take().ok_or("Part without PartNumber")?;
                let etag = self.etag.take().ok_or("Part without ETag")?;
                let checksums = std::mem::take(&mut self.checksums);
                self.parts.push(CompletedPart {
                    part_number,
                    etag,
                    checksums,
                });
            }
            _ if path.starts_with("CompleteMultipartUpload/Part/Checksum") => {
                let text = text.ok_or("a checksum element has child elements")?;
                let name = &path["CompleteMultipartUpload/Part/Checksum".len()..];
                if self.checksums.len() >= PART_CHECKSUMS_MAX
                    || self.checksums.iter().any(|(n, _)| n == name)
                {
                    return Err("a checksum element given twice in one Part".into());
                }
                self.checksums
                    .push((name.to_owned(), trim_xml_whitespace(text).to_owned()));
            }
            _ => {}
        }
        Ok(())
    }
}

fn parse_part_number(text: &str) -> Result<u16, VisitError> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(VisitError::Malformed("PartNumber is not a decimal number"));
    }
    match text.trim_start_matches('0').parse::<u16>() {
        Ok(number) if (1..=MULTIPART_PARTS_MAX).contains(&usize::from(number)) => Ok(number),
        _ => Err(VisitError::Refused(
            ParseXmlBodyError::PartNumberOutOfRange {
                // Bounded: a long run of digits is cut for the message.
                value: text.chars().take(PART_NUMBER_ECHO_CHARACTERS_MAX).collect(),
            },
        )),
    }
}

/// How much of an out-of-range part number is echoed in the error.
const PART_NUMBER_ECHO_CHARACTERS_MAX: usize = 32;

fn unquote_etag(text: &str) -> &str {
    let trimmed = trim_xml_whitespace(text);
    trimmed
        .strip_prefix('"')
        .and_then(|inner| inner.strip_suffix('"'))
        .unwrap_or(trimmed)
}

/// Parses a CompleteMultipartUpload body into its parts, in the order
/// given. Checking the order (InvalidPartOrder) and the ETags (InvalidPart)
/// is the caller's work. Elements other than `PartNumber` and `ETag`, such
/// as checksums, are skipped.
pub fn parse_complete_multipart_upload(
    body: &[u8],
) -> Result<Vec<CompletedPart>, ParseXmlBodyError> {
    let mut visitor = CompleteVisitor::default();
    parse_document(
        body,
        COMPLETE_MULTIPART_BODY_BYTES_MAX,
        "CompleteMultipartUpload",
        &mut visitor,
    )
    .map_err(|e| match e {
        // S3 answers MalformedXML, not MissingRequestBody, for an empty
        // completion.
        ParseXmlBodyError::Empty => ParseXmlBodyError::Malformed {
            reason: "empty CompleteMultipartUpload body",
            position: 0,
        },
        other => other,
    })?;
    if visitor.parts.is_empty() {
        // S3 answers MalformedXML for a completion that lists no parts.
        return Err(ParseXmlBodyError::Malformed {
            reason: "no Part elements",
            position: 0,
        });
    }
    Ok(visitor.parts)
}

/// One `<Object>` of a DeleteObjects request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectToDelete {
    /// Exactly as sent, whitespace included. May be empty or longer than
    /// S3 allows; the caller answers per key.
    pub key: String,
    /// The version to delete; a store without versions has only `null`.
    pub version_id: Option<String>,
    /// Conditional delete: `ETag` (unquoted), `LastModifiedTime`, `Size`,
    /// as sent (the caller parses and answers per key).
    pub etag: Option<String>,
    pub last_modified_time: Option<String>,
    pub size: Option<String>,
}

/// A DeleteObjects request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRequest {
    pub objects: Vec<ObjectToDelete>,
    /// Report only failures.
    pub quiet: bool,
}

#[derive(Default)]
struct DeleteVisitor {
    request: DeleteRequest,
    object: Option<ObjectToDelete>,
    key_seen: bool,
    quiet_seen: bool,
}

/// Sets a field of the `<Object>` being read, once.
fn set_once(
    field: &mut Option<String>,
    text: Option<&str>,
    what: &'static str,
) -> Result<(), VisitError> {
    let text = text.ok_or(what)?;
    if field.is_some() {
        return Err(what.into());
    }
    *field = Some(text.to_owned());
    Ok(())
}

impl DocumentVisitor for DeleteVisitor {
    fn element_start(&mut self, path: &str) -> Result<(), VisitError> {
        if path == "Delete/Object" {
            if self.request.objects.len() >= DELETE_OBJECTS_MAX {
                return Err(VisitError::Refused(ParseXmlBodyError::TooManyItems {
                    what: "objects",
                    limit: DELETE_OBJECTS_MAX,
                }));
            }
            self.object = Some(ObjectToDelete {
                key: String::new(),
                version_id: None,
                etag: None,
                last_modified_time: None,
                size: None,
            });
            self.key_seen = false;
        }
        Ok(())
    }

    fn element_end(&mut self, path: &str, text: Option<&str>) -> Result<(), VisitError> {
        match path {
            "Delete/Object/Key" => {
                let text = text.ok_or("Key has child elements")?;
                let object = self.object.as_mut().ok_or("Key outside Object")?;
                if self.key_seen {
                    return Err("Key given twice in one Object".into());
                }
                self.key_seen = true;
                object.key = text.to_owned();
            }
            "Delete/Object/VersionId"
            | "Delete/Object/ETag"
            | "Delete/Object/LastModifiedTime"
            | "Delete/Object/Size" => {
                let object = self.object.as_mut().ok_or("field outside Object")?;
                let text = text.map(trim_xml_whitespace);
                match path.rsplit('/').next() {
                    Some("VersionId") => set_once(
                        &mut object.version_id,
                        text,
                        "VersionId given twice or with child elements",
                    )?,
                    Some("ETag") => set_once(
                        &mut object.etag,
                        text.map(unquote_etag),
                        "ETag given twice or with child elements",
                    )?,
                    Some("LastModifiedTime") => set_once(
                        &mut object.last_modified_time,
                        text,
                        "LastModifiedTime given twice or with child elements",
                    )?,
                    _ => set_once(
                        &mut object.size,
                        text,
                        "Size given twice or with child elements",
                    )?,
                }
            }
            "Delete/Object" => {
                let object = self.object.take().ok_or("Object closed twice")?;
                if !self.key_seen {
                    return Err("Object without Key".into());
                }
                self.request.objects.push(object);
            }
            "Delete/Quiet" => {
                let text = text.ok_or("Quiet has child elements")?;
                if self.quiet_seen {
                    return Err("Quiet given twice".into());
                }
                self.quiet_seen = true;
                let value = trim_xml_whitespace(text);
                self.request.quiet = if value.eq_ignore_ascii_case("true") {
                    true
                } else if value.eq_ignore_ascii_case("false") {
                    false
                } else {
                    return Err("Quiet is neither true nor false".into());
                };
            }
            _ => {}
        }
        Ok(())
    }
}

/// Parses a DeleteObjects body. More than [`DELETE_OBJECTS_MAX`] objects,
/// or none, is MalformedXML as in S3.
pub fn parse_delete(body: &[u8]) -> Result<DeleteRequest, ParseXmlBodyError> {
    let mut visitor = DeleteVisitor::default();
    parse_document(body, DELETE_OBJECTS_BODY_BYTES_MAX, "Delete", &mut visitor)?;
    if visitor.request.objects.is_empty() {
        return Err(ParseXmlBodyError::Malformed {
            reason: "no Object elements",
            position: 0,
        });
    }
    Ok(visitor.request)
}

/// A CreateBucket request body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateBucketConfiguration {
    /// `None` when the body is empty or the element absent or empty; S3
    /// then uses its default region, as should the caller.
    pub location_constraint: Option<String>,
}

#[derive(Default)]
struct CreateBucketVisitor {
    configuration: CreateBucketConfiguration,
    location_seen: bool,
}

impl DocumentVisitor for CreateBucketVisitor {
    fn element_start(&mut self, _path: &str) -> Result<(), VisitError> {
        Ok(())
    }

    fn element_end(&mut self, path: &str, text: Option<&str>) -> Result<(), VisitError> {
        if path == "CreateBucketConfiguration/LocationConstraint" {
            let text = text.ok_or("LocationConstraint has child elements")?;
            if self.location_seen {
                return Err("LocationConstraint given twice".into());
            }
            self.location_seen = true;
            let region = trim_xml_whitespace(text);
            self.configuration.location_constraint =
                (!region.is_empty()).then(|| region.to_owned());
        }
        Ok(())
    }
}

/// Parses a CreateBucket body; an empty body is allowed and means no
/// location constraint. Elements other than `LocationConstraint` (bucket
/// info, tags) are skipped.
pub fn parse_create_bucket_configuration(
    body: &[u8],
) -> Result<CreateBucketConfiguration, ParseXmlBodyError> {
    check_size(body, CREATE_BUCKET_BODY_BYTES_MAX)?;
    if is_blank(body) {
        return Ok(CreateBucketConfiguration::default());
    }
    let mut visitor = CreateBucketVisitor::default();
    walk_document(body, "CreateBucketConfiguration", &mut visitor)?;
    Ok(visitor.configuration)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xml::escape_into;
    use proptest::prelude::*;

    const NAMESPACE: &str = "xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"";

    fn complete_body(parts: &[(u16, &str)]) -> Vec<u8> {
        let mut body = format!("<CompleteMultipartUpload {NAMESPACE}>").into_bytes();
        for (part_number, etag) in parts {
            body.extend_from_slice(
                format!("<Part><PartNumber>{part_number}</PartNumber><ETag>").as_bytes(),
            );
            escape_into(&mut body, etag);
            body.extend_from_slice(b"</ETag></Part>");
        }
        body.extend_from_slice(b"</CompleteMultipartUpload>");
        body
    }

    fn delete_body(keys: &[&str], quiet: Option<&str>) -> Vec<u8> {
        let mut body = format!("<Delete {NAMESPACE}>").into_bytes();
        for key in keys {
            body.extend_from_slice(b"<Object><Key>");
            escape_into(&mut body, key);
            body.extend_from_slice(b"</Key></Object>");
        }
        if let Some(quiet) = quiet {
            body.extend_from_slice(format!("<Quiet>{quiet}</Quiet>").as_bytes());
        }
        body.extend_from_slice(b"</Delete>");
        body
    }

    fn part(part_number: u16, etag: &str) -> CompletedPart {
        CompletedPart {
            part_number,
            etag: etag.to_owned(),
            checksums: Vec::new(),
        }
    }

    fn malformed_reason(result: Result<impl std::fmt::Debug, ParseXmlBodyError>) -> &'static str {
        match result {
            Err(ParseXmlBodyError::Malformed { reason, .. }) => reason,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn complete_reads_parts_in_the_order_given() {
        let body = complete_body(&[(3, "\"c\""), (1, "a"), (2, "\"b-2\"")]);
        assert_eq!(
            parse_complete_multipart_upload(&body),
            Ok(vec![part(3, "c"), part(1, "a"), part(2, "b-2")])
        );
    }

    #[test]
    fn complete_tolerates_whitespace_prefixes_comments_and_extra_elements() {
        let body = "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- by hand -->\n\
            <s3:CompleteMultipartUpload xmlns:s3=\"http://s3.amazonaws.com/doc/2006-03-01/\">\n\
              <s3:Part>\n    <s3:ETag> &quot;abc&quot; </s3:ETag>\n    <s3:PartNumber> 0001 </s3:PartNumber>\n\
                <s3:ChecksumCRC32>AAAAAA==</s3:ChecksumCRC32>\n  </s3:Part>\n\
              <?pi ignored?>\n  <Part><PartNumber>10000</PartNumber><ETag><![CDATA[\"x<y\"]]></ETag></Part>\n\
            </s3:CompleteMultipartUpload>\n";
        assert_eq!(
            parse_complete_multipart_upload(body.as_bytes()),
            Ok(vec![
                CompletedPart {
                    checksums: vec![("CRC32".to_owned(), "AAAAAA==".to_owned())],
                    ..part(1, "abc")
                },
                part(10_000, "x<y")
            ])
        );
    }

    #[test]
    fn complete_refuses_part_numbers_out_of_range() {
        for (text, echoed) in [
            ("0", "0"),
            ("10001", "10001"),
            ("99999999999999999999", "99999999999999999999"),
        ] {
            let body = format!("<CompleteMultipartUpload><Part><PartNumber>{text}</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>");
            let error = parse_complete_multipart_upload(body.as_bytes()).unwrap_err();
            assert_eq!(
                error,
                ParseXmlBodyError::PartNumberOutOfRange {
                    value: echoed.to_owned()
                }
            );
            let s3_error = error.to_s3_error();
            assert_eq!(s3_error.code, S3ErrorCode::InvalidArgument);
            assert!(s3_error
                .extra
                .contains(&("ArgumentValue", echoed.to_owned())));
        }
        let long = "9".repeat(100);
        let body = format!("<CompleteMultipartUpload><Part><PartNumber>{long}</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>");
        let ParseXmlBodyError::PartNumberOutOfRange { value } =
            parse_complete_multipart_upload(body.as_bytes()).unwrap_err()
        else {
            panic!("expected PartNumberOutOfRange");
        };
        assert_eq!(value.len(), PART_NUMBER_ECHO_CHARACTERS_MAX);
    }

    #[test]
    fn complete_refuses_malformed_parts() {
        let cases = [
            (
                "<Part><PartNumber>x</PartNumber><ETag>a</ETag></Part>",
                "PartNumber is not a decimal number",
            ),
            (
                "<Part><PartNumber>-1</PartNumber><ETag>a</ETag></Part>",
                "PartNumber is not a decimal number",
            ),
            (
                "<Part><PartNumber></PartNumber><ETag>a</ETag></Part>",
                "PartNumber is not a decimal number",
            ),
            ("<Part><ETag>a</ETag></Part>", "Part without PartNumber"),
            (
                "<Part><PartNumber>1</PartNumber></Part>",
                "Part without ETag",
            ),
            (
                "<Part><PartNumber>1</PartNumber><PartNumber>2</PartNumber><ETag>a</ETag></Part>",
                "PartNumber given twice in one Part",
            ),
            (
                "<Part><PartNumber>1</PartNumber><ETag>a</ETag><ETag>b</ETag></Part>",
                "ETag given twice in one Part",
            ),
            (
                "<Part><PartNumber><x/></PartNumber><ETag>a</ETag></Part>",
                "PartNumber has child elements",
            ),
            (
                "<Part>text<PartNumber>1</PartNumber><ETag>a</ETag></Part>",
                "text mixed with elements",
            ),
            (
                "<Part><PartNumber>1</PartNumber><ETag>a</ETag>tail</Part>",
                "text mixed with elements",
            ),
            ("", "no Part elements"),
            ("<Other/>", "no Part elements"),
        ];
        for (inner, reason) in cases {
            let body = format!("<CompleteMultipartUpload>{inner}</CompleteMultipartUpload>");
            assert_eq!(
                malformed_reason(parse_complete_multipart_upload(body.as_bytes())),
                reason,
                "{inner}"
            );
        }
    }

    #[test]
    fn complete_accepts_ten_thousand_parts_and_no_more() {
        let parts: Vec<(u16, &str)> = (1..=10_000)
            .map(|number| (number, "\"0123456789abcdef0123456789abcdef\""))
            .collect();
        let body = complete_body(&parts);
        assert!(body.len() <= COMPLETE_MULTIPART_BODY_BYTES_MAX);
        assert_eq!(
            parse_complete_multipart_upload(&body).map(|parts| parts.len()),
            Ok(10_000)
        );
        let mut too_many = parts.clone();
        too_many.push((1, "a"));
        let error = parse_complete_multipart_upload(&complete_body(&too_many)).unwrap_err();
        assert_eq!(
            error,
            ParseXmlBodyError::TooManyItems {
                what: "parts",
                limit: MULTIPART_PARTS_MAX
            }
        );
        assert_eq!(error.to_s3_error().code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn bodies_over_the_limit_are_refused_before_parsing() {
        let oversized = vec![b' '; COMPLETE_MULTIPART_BODY_BYTES_MAX + 1];
        let error = parse_complete_multipart_upload(&oversized).unwrap_err();
        assert_eq!(
            error,
            ParseXmlBodyError::TooLarge {
                bytes: COMPLETE_MULTIPART_BODY_BYTES_MAX + 1,
                limit: COMPLETE_MULTIPART_BODY_BYTES_MAX
            }
        );
        assert_eq!(
            error.to_s3_error().code,
            S3ErrorCode::MaxMessageLengthExceeded
        );
        assert!(matches!(
            parse_delete(&vec![b' '; DELETE_OBJECTS_BODY_BYTES_MAX + 1]),
            Err(ParseXmlBodyError::TooLarge { .. })
        ));
        assert!(matches!(
            parse_create_bucket_configuration(&vec![b' '; CREATE_BUCKET_BODY_BYTES_MAX + 1]),
            Err(ParseXmlBodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_bodies() {
        for body in [&b""[..], b"  \r\n\t", b"\xEF\xBB\xBF"] {
            assert_eq!(
                parse_complete_multipart_upload(body)
                    .unwrap_err()
                    .to_s3_error()
                    .code,
                S3ErrorCode::MalformedXML
            );
            assert_eq!(parse_delete(body), Err(ParseXmlBodyError::Empty));
            assert_eq!(
                parse_create_bucket_configuration(body),
                Ok(CreateBucketConfiguration::default())
            );
        }
        assert_eq!(
            ParseXmlBodyError::Empty.to_s3_error().code,
            S3ErrorCode::MissingRequestBodyError
        );
    }

    #[test]
    fn documents_that_are_not_well_formed() {
        let cases: [(&str, &str); 14] = [
            (
                "<Delete><Object><Key>a</Key></Object>",
                "the document ends inside an element",
            ),
            (
                "<Delete><Object><Key>a</Key></Object></Wrong>",
                "not well-formed",
            ),
            (
                "<Delete><Object><Key>a</Key></Object></Delete><Delete/>",
                "content after the root element",
            ),
            (
                "<Delete><Object><Key>a</Key></Object></Delete>trailing",
                "text outside the root element",
            ),
            (
                "leading<Delete><Object><Key>a</Key></Object></Delete>",
                "text outside the root element",
            ),
            (
                "<Remove><Object><Key>a</Key></Object></Remove>",
                "unexpected root element",
            ),
            (
                "<Delete><Object><Key>a&foo;</Key></Object></Delete>",
                "bad entity or character reference",
            ),
            (
                "<Delete><Object><Key>a&#0;</Key></Object></Delete>",
                "bad entity or character reference",
            ),
            (
                "<Delete><Object><Key>a & b</Key></Object></Delete>",
                "bad entity or character reference",
            ),
            (
                "<Delete><Object><Key>a</Key></Object><?xml version=\"1.0\"?></Delete>",
                "XML declaration after the root element started",
            ),
            (
                "<Delete attribute=><Object><Key>a</Key></Object></Delete>",
                "malformed attribute",
            ),
            (
                "<Delete><Object><Key>a</Key></Object><!-- a -- b --></Delete>",
                "not well-formed",
            ),
            (
                "<Delete><Object><Key>a<</Key></Object></Delete>",
                "text mixed with elements",
            ),
            ("<!-- only a comment -->", "no root element"),
        ];
        for (body, reason) in cases {
            assert_eq!(
                malformed_reason(parse_delete(body.as_bytes())),
                reason,
                "{body}"
            );
        }
        assert_eq!(
            malformed_reason(parse_delete(b"<Delete><Key>\xFF</Key></Delete>")),
            "bad entity or character reference"
        );
    }

    #[test]
    fn document_type_declarations_are_refused() {
        let billion_laughs = "<?xml version=\"1.0\"?><!DOCTYPE Delete [<!ENTITY lol \"lol\">\
            <!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>\
            <Delete><Object><Key>&lol2;</Key></Object></Delete>";
        assert_eq!(
            malformed_reason(parse_delete(billion_laughs.as_bytes())),
            "document type declarations are refused"
        );
        let external = "<!DOCTYPE Delete SYSTEM \"file:///etc/passwd\"><Delete><Object><Key>a</Key></Object></Delete>";
        assert_eq!(
            malformed_reason(parse_delete(external.as_bytes())),
            "document type declarations are refused"
        );
        // An undeclared entity is an error too, never a lookup.
        let undeclared = "<Delete><Object><Key>&xxe;</Key></Object></Delete>";
        assert_eq!(
            malformed_reason(parse_delete(undeclared.as_bytes())),
            "bad entity or character reference"
        );
    }

    #[test]
    fn nesting_and_text_are_bounded() {
        let deep = format!(
            "<CreateBucketConfiguration>{}{}</CreateBucketConfiguration>",
            "<a>".repeat(ELEMENT_DEPTH_MAX),
            "</a>".repeat(ELEMENT_DEPTH_MAX)
        );
        assert_eq!(
            malformed_reason(parse_create_bucket_configuration(deep.as_bytes())),
            "elements nested too deeply"
        );
        let allowed = format!(
            "<CreateBucketConfiguration>{}{}</CreateBucketConfiguration>",
            "<a>".repeat(ELEMENT_DEPTH_MAX - 1),
            "</a>".repeat(ELEMENT_DEPTH_MAX - 1)
        );
        assert_eq!(
            parse_create_bucket_configuration(allowed.as_bytes()),
            Ok(CreateBucketConfiguration::default())
        );
        let long_key = "k".repeat(ELEMENT_TEXT_BYTES_MAX);
        assert_eq!(
            parse_delete(&delete_body(&[&long_key], None))
                .map(|request| request.objects[0].key.len()),
            Ok(ELEMENT_TEXT_BYTES_MAX)
        );
        let too_long = "k".repeat(ELEMENT_TEXT_BYTES_MAX + 1);
        assert_eq!(
            malformed_reason(parse_delete(&delete_body(&[&too_long], None))),
            "element text too long"
        );
        // Text split across escapes and CDATA still counts as a whole.
        let split = format!(
            "<Delete><Object><Key>{}&amp;<![CDATA[{}]]></Key></Object></Delete>",
            "k".repeat(ELEMENT_TEXT_BYTES_MAX / 2),
            "c".repeat(ELEMENT_TEXT_BYTES_MAX / 2)
        );
        assert_eq!(
            malformed_reason(parse_delete(split.as_bytes())),
            "element text too long"
        );
    }

    #[test]
    fn delete_keeps_keys_exactly() {
        let keys = [
            "a&b<c>\"d\"'e'",
            "  spaced  ",
            "line\nbreak\ttab",
            "é/ü/日本",
            "",
            "cr\rkept",
        ];
        let request = parse_delete(&delete_body(&keys, Some("true"))).unwrap();
        assert!(request.quiet);
        let parsed: Vec<&str> = request
            .objects
            .iter()
            .map(|object| object.key.as_str())
            .collect();
        assert_eq!(parsed, keys);
        let references = "<Delete><Object><Key>&#13;&#x1F600;&#65;&lt;</Key></Object></Delete>";
        assert_eq!(
            parse_delete(references.as_bytes()).unwrap().objects[0].key,
            "\r😀A<"
        );
    }

    #[test]
    fn delete_reads_version_ids_and_quiet() {
        let body = "<Delete><Quiet> FALSE </Quiet><Object><Key>k</Key><VersionId> null </VersionId><ETag>\"x\"</ETag></Object></Delete>";
        let request = parse_delete(body.as_bytes()).unwrap();
        assert!(!request.quiet);
        assert_eq!(
            request.objects,
            [ObjectToDelete {
                key: "k".to_owned(),
                version_id: Some("null".to_owned()),
                etag: Some("x".to_owned()),
                last_modified_time: None,
                size: None,
            }]
        );
        assert!(!parse_delete(&delete_body(&["k"], None)).unwrap().quiet);
        assert!(
            parse_delete(&delete_body(&["k"], Some("True")))
                .unwrap()
                .quiet
        );
        assert_eq!(
            malformed_reason(parse_delete(&delete_body(&["k"], Some("yes")))),
            "Quiet is neither true nor false"
        );
        let twice =
            "<Delete><Object><Key>k</Key></Object><Quiet>true</Quiet><Quiet>true</Quiet></Delete>";
        assert_eq!(
            malformed_reason(parse_delete(twice.as_bytes())),
            "Quiet given twice"
        );
    }

    #[test]
    fn delete_refuses_missing_keys_and_empty_lists() {
        for (body, reason) in [
            (
                "<Delete><Object><VersionId>v</VersionId></Object></Delete>",
                "Object without Key",
            ),
            (
                "<Delete><Object><Key>a</Key><Key>b</Key></Object></Delete>",
                "Key given twice in one Object",
            ),
            ("<Delete><Quiet>true</Quiet></Delete>", "no Object elements"),
            ("<Delete/>", "no Object elements"),
        ] {
            assert_eq!(
                malformed_reason(parse_delete(body.as_bytes())),
                reason,
                "{body}"
            );
        }
    }

    #[test]
    fn delete_accepts_a_thousand_objects_and_no_more() {
        let keys: Vec<String> = (0..DELETE_OBJECTS_MAX)
            .map(|index| format!("key-{index}"))
            .collect();
        let key_references: Vec<&str> = keys.iter().map(String::as_str).collect();
        assert_eq!(
            parse_delete(&delete_body(&key_references, None)).map(|request| request.objects.len()),
            Ok(1_000)
        );
        let mut too_many = key_references.clone();
        too_many.push("one more");
        let error = parse_delete(&delete_body(&too_many, None)).unwrap_err();
        assert_eq!(
            error,
            ParseXmlBodyError::TooManyItems {
                what: "objects",
                limit: DELETE_OBJECTS_MAX
            }
        );
        assert_eq!(S3Error::from(error).code, S3ErrorCode::MalformedXML);
    }

    #[test]
    fn create_bucket_configuration() {
        let body = format!("<CreateBucketConfiguration {NAMESPACE}><LocationConstraint> eu-west-1 </LocationConstraint></CreateBucketConfiguration>");
        assert_eq!(
            parse_create_bucket_configuration(body.as_bytes()),
            Ok(CreateBucketConfiguration {
                location_constraint: Some("eu-west-1".to_owned())
            })
        );
        let empty_element =
            "<CreateBucketConfiguration><LocationConstraint/></CreateBucketConfiguration>";
        assert_eq!(
            parse_create_bucket_configuration(empty_element.as_bytes()),
            Ok(CreateBucketConfiguration::default())
        );
        let directory_bucket = "<CreateBucketConfiguration><Location><Type>AvailabilityZone</Type><Name>z1</Name></Location>\
            <Bucket><DataRedundancy>SingleAvailabilityZone</DataRedundancy><Type>Directory</Type></Bucket>\
            <Tags><Tag><Key>k</Key><Value>v</Value></Tag></Tags></CreateBucketConfiguration>";
        assert_eq!(
            parse_create_bucket_configuration(directory_bucket.as_bytes()),
            Ok(CreateBucketConfiguration::default())
        );
        for (body, reason) in [
            ("<CreateBucketConfiguration><LocationConstraint>a</LocationConstraint><LocationConstraint>b</LocationConstraint></CreateBucketConfiguration>", "LocationConstraint given twice"),
            ("<LocationConstraint>eu-west-1</LocationConstraint>", "unexpected root element"),
            ("<CreateBucketConfiguration>", "the document ends inside an element"),
        ] {
            assert_eq!(malformed_reason(parse_create_bucket_configuration(body.as_bytes())), reason, "{body}");
        }
    }

    #[test]
    fn every_refusal_maps_to_an_s3_code() {
        let cases = [
            (
                ParseXmlBodyError::Empty,
                S3ErrorCode::MissingRequestBodyError,
            ),
            (
                ParseXmlBodyError::TooLarge { bytes: 2, limit: 1 },
                S3ErrorCode::MaxMessageLengthExceeded,
            ),
            (
                ParseXmlBodyError::Malformed {
                    reason: "r",
                    position: 0,
                },
                S3ErrorCode::MalformedXML,
            ),
            (
                ParseXmlBodyError::TooManyItems {
                    what: "objects",
                    limit: 1,
                },
                S3ErrorCode::MalformedXML,
            ),
            (
                ParseXmlBodyError::PartNumberOutOfRange {
                    value: "0".to_owned(),
                },
                S3ErrorCode::InvalidArgument,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.to_s3_error().code, code, "{error}");
            assert_eq!(S3Error::from(error).http_status(), 400);
        }
    }

    proptest! {
        #[test]
        fn delete_round_trips_any_keys(
            keys in prop::collection::vec("[^\u{0}]{0,40}", 1..20),
            quiet in any::<bool>(),
        ) {
            let key_references: Vec<&str> = keys.iter().map(String::as_str).collect();
            let request = parse_delete(&delete_body(&key_references, Some(if quiet { "true" } else { "false" }))).unwrap();
            prop_assert_eq!(request.quiet, quiet);
            let parsed: Vec<String> = request.objects.into_iter().map(|object| object.key).collect();
            prop_assert_eq!(parsed, keys);
        }

        #[test]
        fn complete_round_trips_any_parts(
            parts in prop::collection::vec((1u16..=10_000, "[!-~]{0,40}"), 1..50),
        ) {
            let part_references: Vec<(u16, &str)> = parts.iter().map(|(number, etag)| (*number, etag.as_str())).collect();
            let parsed = parse_complete_multipart_upload(&complete_body(&part_references)).unwrap();
            let expected: Vec<CompletedPart> = parts.iter().map(|(number, etag)| part(*number, unquote_etag(etag))).collect();
            prop_assert_eq!(parsed, expected);
        }

        /// The fuzz target's body, run here too: no input may panic.
        #[test]
        fn no_input_panics(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_complete_multipart_upload(&body).map_err(|error| error.to_s3_error().to_xml("r", "h"));
            let _ = parse_delete(&body).map_err(|error| error.to_s3_error().to_xml("r", "h"));
            let _ = parse_create_bucket_configuration(&body).map_err(|error| error.to_s3_error().to_xml("r", "h"));
        }

        /// Random documents built from the parsers' own vocabulary reach far
        /// deeper than random bytes.
        #[test]
        fn no_vocabulary_soup_panics(tokens in prop::collection::vec(prop::sample::select(vec![
            "<Delete>", "</Delete>", "<Object>", "</Object>", "<Key>", "</Key>", "<Quiet>", "</Quiet>",
            "<CompleteMultipartUpload>", "</CompleteMultipartUpload>", "<Part>", "</Part>",
            "<PartNumber>", "</PartNumber>", "<ETag>", "</ETag>", "<CreateBucketConfiguration>",
            "</CreateBucketConfiguration>", "<LocationConstraint>", "</LocationConstraint>",
            "1", "10001", "true", "k", "&amp;", "&#13;", "&bad;", "<![CDATA[x]]>", "<!-- c -->",
            "<?xml version=\"1.0\"?>", "<!DOCTYPE d>", " ", "\"", "<x/>", "<a:Key>", "</a:Key>",
        ]), 0..40)) {
            let body = tokens.concat();
            let _ = parse_complete_multipart_upload(body.as_bytes());
            let _ = parse_delete(body.as_bytes());
            let _ = parse_create_bucket_configuration(body.as_bytes());
        }
    }
}
