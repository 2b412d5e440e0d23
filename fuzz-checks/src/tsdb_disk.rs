//! NightLight's readers of its own files: a block (opened on a memory map
//! and queried) and a WAL segment (read record by record). The first byte
//! picks which; the rest is the file. Each check also seals the input under
//! valid checksums (`photon_tsdb::fuzzing`), so the fuzzer reaches the
//! section and payload parsers behind the CRCs. Neither may panic or read
//! out of bounds on any bytes: a damaged file is an error.

/// One input: panics on a finding.
pub fn check(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    if which & 1 == 0 {
        photon_tsdb::fuzzing::block_bytes(rest);
    } else {
        photon_tsdb::fuzzing::wal_bytes(rest);
    }
}
