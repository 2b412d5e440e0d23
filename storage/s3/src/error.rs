//! S3 error codes, their HTTP statuses, and the XML error document.
//!
//! Every failure the S3 front end reports goes through [`S3Error`], so the
//! mapping from a condition to its wire code, status and body lives here and
//! nowhere else. Codes and statuses follow the "List of error codes" section
//! of the Amazon S3 API reference; the messages are our own wording.

use std::fmt;

use crate::xml::XmlWriter;

/// Declares [`S3ErrorCode`] from one table so that the code's name, its
/// HTTP status and its default message cannot drift apart.
macro_rules! s3_error_codes {
    ($( $(#[$attribute:meta])* $name:ident = $status:literal, $message:literal; )*) => {
        /// An S3 error code: the `<Code>` of an error document.
        ///
        /// The variant name is the code exactly as S3 spells it on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum S3ErrorCode {
            $( $(#[$attribute])* $name, )*
        }

        impl S3ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [S3ErrorCode] = &[ $( S3ErrorCode::$name, )* ];

            /// The code as it appears in `<Code>`.
            pub const fn as_str(self) -> &'static str {
                match self { $( S3ErrorCode::$name => stringify!($name), )* }
            }

            /// The HTTP status S3 answers with for this code.
            pub const fn http_status(self) -> u16 {
                match self { $( S3ErrorCode::$name => $status, )* }
            }

            /// A message for `<Message>` when the caller has nothing more
            /// specific to say.
            pub const fn default_message(self) -> &'static str {
                match self { $( S3ErrorCode::$name => $message, )* }
            }
        }
    };
}

s3_error_codes! {
    /// The signature was right but the principal may not do this.
    AccessDenied = 403, "Access Denied";
    /// The account is blocked from completing the operation.
    AccountProblem = 403, "There is a problem with the account that prevents this operation from completing.";
    /// Every access to the resource has been turned off.
    AllAccessDisabled = 403, "All access to this resource has been disabled.";
    /// The `Authorization` header cannot be parsed, or names another region.
    AuthorizationHeaderMalformed = 400, "The authorization header is malformed.";
    /// The `X-Amz-*` query parameters of a presigned URL are not valid.
    AuthorizationQueryParametersError = 400, "The authorization query parameters are not valid.";
    /// `Content-MD5` (or a checksum header) does not match the received bytes.
    BadDigest = 400, "The Content-MD5 you specified did not match what was received.";
    /// Another owner already holds this bucket name.
    BucketAlreadyExists = 409, "The requested bucket name is not available. Bucket names are shared by all users; pick another name.";
    /// The caller already owns a bucket of this name.
    BucketAlreadyOwnedByYou = 409, "Your previous request to create the named bucket succeeded and you already own it.";
    /// A bucket must be empty before it can be deleted.
    BucketNotEmpty = 409, "The bucket you tried to delete is not empty.";
    /// The upload is larger than the maximum object or part size.
    EntityTooLarge = 400, "Your proposed upload exceeds the maximum allowed size.";
    /// A part other than the last is smaller than the minimum part size.
    EntityTooSmall = 400, "Your proposed upload is smaller than the minimum allowed size.";
    /// The session token has expired.
    ExpiredToken = 400, "The provided token has expired.";
    /// The location constraint names a region this endpoint does not serve.
    IllegalLocationConstraintException = 400, "The specified location constraint is not valid for this endpoint.";
    /// The versioning configuration in the body is not valid.
    IllegalVersioningConfigurationException = 400, "The versioning configuration specified in the request is invalid.";
    /// Fewer bytes arrived than `Content-Length` announced.
    IncompleteBody = 400, "You did not provide the number of bytes specified by the Content-Length HTTP header.";
    /// The storage device is full (HTTP 507, as WebDAV and S3-compatible
    /// stores answer it); deletes still work and free space.
    InsufficientStorage = 507, "There is not enough space on the storage device to complete this request.";
    /// A fault on the server side; the client may retry.
    InternalError = 500, "We encountered an internal error. Please try again.";
    /// The access key ID is unknown.
    InvalidAccessKeyId = 403, "The access key ID you provided does not exist in our records.";
    /// A request parameter or header has a value outside its domain.
    InvalidArgument = 400, "Invalid Argument";
    /// The bucket name breaks the naming rules.
    InvalidBucketName = 400, "The specified bucket is not valid.";
    /// The bucket is in a state that forbids the request.
    InvalidBucketState = 409, "The request is not valid for the current state of the bucket.";
    /// `Content-MD5` is not valid base64 of 16 bytes.
    InvalidDigest = 400, "The Content-MD5 you specified is not valid.";
    /// The location constraint is not a known region name.
    InvalidLocationConstraint = 400, "The specified location constraint is not valid.";
    /// The object is archived or otherwise not readable right now.
    InvalidObjectState = 403, "The operation is not valid for the current state of the object.";
    /// A listed part was not uploaded, or its ETag does not match.
    InvalidPart = 400, "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.";
    /// The part list is not in ascending order of part number.
    InvalidPartOrder = 400, "The list of parts was not in ascending order. Parts must be ordered by part number.";
    /// The `Range` header cannot be satisfied for this object.
    InvalidRange = 416, "The requested range is not satisfiable";
    /// The request is not valid as a whole (a catch-all S3 uses often).
    InvalidRequest = 400, "Invalid Request";
    /// The storage class is not one this service offers.
    InvalidStorageClass = 400, "The storage class you specified is not valid.";
    /// The session token is malformed or not valid.
    InvalidToken = 400, "The provided token is malformed or otherwise invalid.";
    /// The URI cannot be parsed.
    InvalidURI = 400, "Couldn't parse the specified URI.";
    /// The object key is longer than 1024 bytes.
    KeyTooLongError = 400, "Your key is too long.";
    /// The XML body is not well formed or does not follow the schema.
    MalformedXML = 400, "The XML you provided was not well-formed or did not validate against our published schema.";
    /// A request body (such as an XML document) is over its size limit.
    MaxMessageLengthExceeded = 400, "Your request was too big.";
    /// User metadata headers exceed 2 KB.
    MetadataTooLarge = 400, "Your metadata headers exceed the maximum allowed metadata size.";
    /// The HTTP method is not allowed on this resource.
    MethodNotAllowed = 405, "The specified method is not allowed against this resource.";
    /// A body was sent without `Content-Length`.
    MissingContentLength = 411, "You must provide the Content-Length HTTP header.";
    /// The operation needs a body and got none.
    MissingRequestBodyError = 400, "Request Body is empty.";
    /// A required header is missing.
    MissingSecurityHeader = 400, "Your request is missing a required header.";
    /// The bucket does not exist.
    NoSuchBucket = 404, "The specified bucket does not exist.";
    /// The bucket has no policy.
    NoSuchBucketPolicy = 404, "The bucket policy does not exist.";
    /// The bucket has no CORS configuration.
    NoSuchCORSConfiguration = 404, "The CORS configuration does not exist.";
    /// The object does not exist.
    NoSuchKey = 404, "The specified key does not exist.";
    /// The bucket has no lifecycle configuration.
    NoSuchLifecycleConfiguration = 404, "The lifecycle configuration does not exist.";
    /// The bucket or object has no tags.
    NoSuchTagSet = 404, "The TagSet does not exist.";
    /// The multipart upload does not exist, or was completed or aborted.
    NoSuchUpload = 404, "The specified multipart upload does not exist. The upload ID might not be valid, or the multipart upload might have been aborted or completed.";
    /// The version ID does not name a version of the object.
    NoSuchVersion = 404, "The specified version does not exist.";
    /// The bucket has no website configuration.
    NoSuchWebsiteConfiguration = 404, "The specified bucket does not have a website configuration.";
    /// A header or feature this service does not implement.
    NotImplemented = 501, "A header you provided implies functionality that is not implemented.";
    /// A conditional GET or HEAD whose condition says "unchanged": 304 and
    /// no body.
    NotModified = 304, "Not Modified";
    /// The bucket has no Object Lock configuration.
    ObjectLockConfigurationNotFoundError = 404, "Object Lock configuration does not exist for this bucket.";
    /// A conflicting operation on the same resource is in progress.
    OperationAborted = 409, "A conflicting conditional operation is currently in progress against this resource. Try again.";
    /// An `If-Match`, `If-None-Match` or `If-*-Since` condition failed.
    PreconditionFailed = 412, "At least one of the preconditions you specified did not hold.";
    /// The header section is over the size limit.
    RequestHeaderSectionTooLarge = 400, "Your request header section exceeds the maximum allowed size.";
    /// The client stopped sending the body for too long.
    RequestTimeout = 400, "Your socket connection to the server was not read from or written to within the timeout period.";
    /// The request time is too far from the server's clock.
    RequestTimeTooSkewed = 403, "The difference between the request time and the server's time is too large.";
    /// The bucket has no default encryption configuration.
    ServerSideEncryptionConfigurationNotFoundError = 404, "The server side encryption configuration was not found.";
    /// The server is overloaded; the client should back off.
    ServiceUnavailable = 503, "Service is unable to handle request.";
    /// The computed signature differs from the one sent.
    SignatureDoesNotMatch = 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method.";
    /// The request rate is too high; the client should back off.
    SlowDown = 503, "Please reduce your request rate.";
    /// The account has reached its bucket limit.
    TooManyBuckets = 400, "You have attempted to create more buckets than allowed.";
    /// The operation does not take a body and one was sent.
    UnexpectedContent = 400, "This request does not support content.";
    /// `x-amz-content-sha256` does not match the SHA-256 of the body.
    XAmzContentSHA256Mismatch = 400, "The provided 'x-amz-content-sha256' header does not match what was computed.";
}

impl S3ErrorCode {
    /// Looks a code up by its wire name, as a client would read `<Code>`.
    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL
            .iter()
            .copied()
            .find(|candidate| candidate.as_str() == code)
    }

    /// Whether the response carries an XML error document. A 304 never has
    /// a body (RFC 9110 section 15.4.5).
    pub const fn has_body(self) -> bool {
        !matches!(self, S3ErrorCode::NotModified)
    }
}

impl fmt::Display for S3ErrorCode {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One S3 error: the code, a message, and the details S3 puts beside them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct S3Error {
    /// The wire code; it also decides the HTTP status.
    pub code: S3ErrorCode,
    /// Human-readable text for `<Message>`.
    pub message: String,
    /// The bucket or object path the error concerns, for `<Resource>`.
    pub resource: Option<String>,
    /// Further elements S3 adds for some codes, written in order between
    /// `<Message>` and `<Resource>`: for example `("BucketName", ..)`,
    /// `("Key", ..)`, `("UploadId", ..)`, `("ArgumentName", ..)`,
    /// `("ArgumentValue", ..)`, `("Condition", ..)`. Names must be XML names
    /// made of ASCII letters and digits; others are left out of the body.
    pub extra: Vec<(&'static str, String)>,
    /// An HTTP status other than the code's own, where S3 answers one code
    /// with two statuses (InvalidRange: 416 on GET, 400 on UploadPartCopy).
    pub status: Option<u16>,
}

impl S3Error {
    /// An error with the code's default message.
    pub fn new(code: S3ErrorCode) -> Self {
        Self::with_message(code, code.default_message())
    }

    /// An error with a specific message.
    pub fn with_message(code: S3ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            resource: None,
            extra: Vec::new(),
            status: None,
        }
    }

    /// Answers with `status` instead of the code's usual one.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets `<Resource>`.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        self.resource = Some(resource.into());
        self
    }

    /// Appends an extra element such as `BucketName` or `ArgumentName`.
    pub fn with_extra(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra.push((name, value.into()));
        self
    }

    /// The HTTP status to answer with.
    pub fn http_status(&self) -> u16 {
        self.status.unwrap_or_else(|| self.code.http_status())
    }

    /// The response body: an `<Error>` document, or nothing for codes that
    /// have no body (see [`S3ErrorCode::has_body`]). S3 writes the error
    /// document without a namespace, unlike its other responses.
    pub fn to_xml(&self, request_id: &str, host_id: &str) -> Vec<u8> {
        if !self.code.has_body() {
            return Vec::new();
        }
        let mut writer = XmlWriter::new();
        writer.open("Error");
        writer.element("Code", self.code.as_str());
        writer.element("Message", &self.message);
        for (name, value) in &self.extra {
            if is_simple_element_name(name) {
                writer.element(name, value);
            } else {
                debug_assert!(
                    false,
                    "extra element name {name:?} is not a simple XML name"
                );
            }
        }
        if let Some(resource) = &self.resource {
            writer.element("Resource", resource);
        }
        writer.element("RequestId", request_id);
        writer.element("HostId", host_id);
        writer.close("Error");
        writer.finish()
    }
}

impl From<S3ErrorCode> for S3Error {
    fn from(code: S3ErrorCode) -> Self {
        Self::new(code)
    }
}

/// Extra element names come from code, not from the network, but a wrong
/// one must not produce a broken document.
fn is_simple_element_name(name: &str) -> bool {
    let mut characters = name.chars();
    matches!(characters.next(), Some(first) if first.is_ascii_alphabetic())
        && characters.all(|character| character.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_own_name_a_status_and_a_message() {
        let mut names = std::collections::HashSet::new();
        for code in S3ErrorCode::ALL {
            assert!(names.insert(code.as_str()), "{code} listed twice");
            assert_eq!(S3ErrorCode::from_code(code.as_str()), Some(*code));
            assert!(matches!(code.http_status(), 300..=599), "{code}");
            assert!(!code.default_message().is_empty(), "{code}");
            assert_eq!(code.to_string(), code.as_str());
        }
        assert_eq!(S3ErrorCode::from_code("NoSuchThing"), None);
    }

    #[test]
    fn statuses_match_the_s3_reference() {
        let expected = [
            (S3ErrorCode::AccessDenied, 403),
            (S3ErrorCode::BadDigest, 400),
            (S3ErrorCode::BucketAlreadyExists, 409),
            (S3ErrorCode::BucketAlreadyOwnedByYou, 409),
            (S3ErrorCode::BucketNotEmpty, 409),
            (S3ErrorCode::EntityTooLarge, 400),
            (S3ErrorCode::InternalError, 500),
            (S3ErrorCode::InvalidAccessKeyId, 403),
            (S3ErrorCode::InvalidObjectState, 403),
            (S3ErrorCode::InvalidRange, 416),
            (S3ErrorCode::MethodNotAllowed, 405),
            (S3ErrorCode::MissingContentLength, 411),
            (S3ErrorCode::NoSuchKey, 404),
            (S3ErrorCode::NoSuchUpload, 404),
            (S3ErrorCode::NotImplemented, 501),
            (S3ErrorCode::NotModified, 304),
            (S3ErrorCode::PreconditionFailed, 412),
            (S3ErrorCode::RequestTimeTooSkewed, 403),
            (S3ErrorCode::SignatureDoesNotMatch, 403),
            (S3ErrorCode::SlowDown, 503),
            (S3ErrorCode::ServiceUnavailable, 503),
            (S3ErrorCode::XAmzContentSHA256Mismatch, 400),
        ];
        for (code, status) in expected {
            assert_eq!(code.http_status(), status, "{code}");
        }
    }

    #[test]
    fn error_document_has_the_s3_layout() {
        let error = S3Error::new(S3ErrorCode::NoSuchKey)
            .with_resource("/bucket/key")
            .with_extra("Key", "key");
        assert_eq!(error.http_status(), 404);
        let body = String::from_utf8(error.to_xml("REQ1", "HOST1")).unwrap();
        assert_eq!(
            body,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
             <Message>The specified key does not exist.</Message><Key>key</Key>\
             <Resource>/bucket/key</Resource><RequestId>REQ1</RequestId>\
             <HostId>HOST1</HostId></Error>"
        );
    }

    #[test]
    fn error_document_escapes_every_field() {
        let error = S3Error::with_message(S3ErrorCode::InvalidArgument, "a<b & \"c\" 'd'>")
            .with_resource("/b/<&>")
            .with_extra("ArgumentValue", "x&y\r");
        let body = String::from_utf8(error.to_xml("r&", "h<")).unwrap();
        assert!(body.contains("<Message>a&lt;b &amp; &quot;c&quot; &apos;d&apos;&gt;</Message>"));
        assert!(body.contains("<ArgumentValue>x&amp;y&#13;</ArgumentValue>"));
        assert!(body.contains("<Resource>/b/&lt;&amp;&gt;</Resource>"));
        assert!(body.contains("<RequestId>r&amp;</RequestId><HostId>h&lt;</HostId>"));
    }

    #[test]
    fn not_modified_has_no_body() {
        let error = S3Error::new(S3ErrorCode::NotModified);
        assert_eq!(error.http_status(), 304);
        assert!(error.to_xml("r", "h").is_empty());
    }

    #[test]
    fn bad_extra_names_are_left_out() {
        let error = S3Error::new(S3ErrorCode::InvalidArgument).with_extra("Bad Name", "v");
        let outcome = std::panic::catch_unwind(|| error.to_xml("r", "h"));
        if let Ok(body) = outcome {
            // Release builds skip the element instead of asserting.
            assert!(!String::from_utf8_lossy(&body).contains("Bad Name"));
        }
        assert!(is_simple_element_name("ArgumentName"));
        assert!(!is_simple_element_name("1Key"));
        assert!(!is_simple_element_name(""));
    }

    #[test]
    fn display_names_the_code_and_message() {
        let error = S3Error::new(S3ErrorCode::SlowDown);
        assert_eq!(
            error.to_string(),
            "SlowDown: Please reduce your request rate."
        );
    }
}
