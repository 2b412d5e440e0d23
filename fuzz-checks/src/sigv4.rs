//! Feeds arbitrary bytes to the SigV4 verifier: the first lines become a
//! request (method, path, query, then `name: value` headers) that goes
//! through parse_auth, canonical_request and verify; the rest is an
//! aws-chunked body pushed into a ChunkedDecoder in pieces whose sizes come
//! from the input too. Nothing may panic, and data ranges must stay inside
//! the slice they describe.

use photon_s3::sigv4::{
    canonical_request, parse_auth, system_time, verify, Auth, ChunkEvent, ChunkVerifier,
    ChunkedDecoder, PayloadMode, RequestParts, Verified,
};

const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// 2013-05-24T00:00:00Z, the date of the AWS examples a seed corpus would use.
const NOW_S: u64 = 1_369_353_600;

/// Method, path, query, headers and the body that follows them.
type RequestPart<'a> = (String, String, String, Vec<(String, Vec<u8>)>, &'a [u8]);

fn request_part(data: &[u8]) -> RequestPart<'_> {
    // The request ends at the first empty line; the body follows it.
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let mut text = || String::from_utf8_lossy(lines.next().unwrap_or_default()).into_owned();
    let (method, path, query) = (text(), text(), text());
    let headers = lines
        .map(|line| match line.iter().position(|&b| b == b':') {
            Some(at) => (
                String::from_utf8_lossy(&line[..at]).into_owned(),
                line[at + 1..].to_vec(),
            ),
            None => (String::from_utf8_lossy(line).into_owned(), Vec::new()),
        })
        .collect();
    (method, path, query, headers, body)
}

fn decode_body(verified: &Verified, decoded_length: Option<u64>, body: &[u8], piece_sizes: &[u8]) {
    let mut decoder = ChunkedDecoder::new(ChunkVerifier::new(verified), decoded_length);
    let mut events = Vec::new();
    let mut at = 0;
    let mut sizes = piece_sizes.iter().cycle();
    while at < body.len() {
        let size = usize::from(sizes.next().copied().unwrap_or(u8::MAX)).max(1);
        let piece = &body[at..(at + size).min(body.len())];
        events.clear();
        let result = decoder.push(piece, &mut events);
        for event in &events {
            if let ChunkEvent::Data(range) = event {
                assert!(range.start <= range.end && range.end <= piece.len());
            }
        }
        if result.is_err() {
            assert!(
                decoder.push(b"x", &mut events).is_err(),
                "a failed decoder must stay failed"
            );
            return;
        }
        at += piece.len();
    }
    let _ = decoder.finish();
}

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let (method, path, query, headers, body) = request_part(data);
    let header_refs: Vec<(&str, &[u8])> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_slice()))
        .collect();
    let req = RequestParts {
        method: &method,
        path: &path,
        query: &query,
        headers: &header_refs,
    };

    let signed: Vec<String> = header_refs
        .iter()
        .take(8)
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    let _ = canonical_request(&req, &signed, "UNSIGNED-PAYLOAD", false);
    let _ = canonical_request(&req, &signed, "UNSIGNED-PAYLOAD", true);

    if let Ok(auth) = parse_auth(&req) {
        assert_eq!(auth.access_key_id().is_none(), auth == Auth::Anonymous);
        for region in ["us-east-1", "*"] {
            let _ = verify(&req, &auth, SECRET, system_time(NOW_S), region);
        }
    }

    // The body against a decoder whose key the input cannot know: framing,
    // limits and signature checks all run, and every chunk fails or frames.
    let verified = Verified {
        access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
        payload: PayloadMode::StreamingSigned {
            decoded_length: None,
        },
        seed_signature: [0; 32],
        signing_key: [1; 32],
        scope: "20130524/us-east-1/s3/aws4_request".into(),
        amz_date: "20130524T000000Z".into(),
    };
    let (sizes, body) = body.split_at(body.len().min(4));
    decode_body(&verified, None, body, sizes);
    decode_body(&verified, Some(body.len() as u64 / 2), body, sizes);
}
