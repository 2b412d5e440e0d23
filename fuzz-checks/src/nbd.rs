//! Feeds arbitrary bytes to the NBD parsers a client reaches: the client
//! flags, option headers, option payloads and request headers. They must
//! return a value or an error, never panic; an accepted request that passes
//! its checks must lie inside the export.

use photon_nbd::handshake::{parse_client_flags, ClientOption, OptionHeader};
use photon_nbd::transmission::{Command, Request};

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    if data.len() >= 4 {
        let _ = parse_client_flags([data[0], data[1], data[2], data[3]]);
    }
    if data.len() >= 16 {
        let mut header = [0u8; 16];
        header.copy_from_slice(&data[..16]);
        let _ = OptionHeader::parse(header);
        let option = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
        let _ = ClientOption::parse(option % 16, &data[16..]);
    }
    if data.len() >= Request::BYTES {
        let mut header = [0u8; Request::BYTES];
        header.copy_from_slice(&data[..Request::BYTES]);
        if let Ok(request) = Request::parse(header) {
            let size = 1u64 << 30;
            if request.check(size, 512, false).is_ok()
                && !matches!(request.command, Command::Flush | Command::Disconnect)
            {
                assert!(request.offset + u64::from(request.length) <= size);
            }
        }
    }
}
