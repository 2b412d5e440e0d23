//! The codec against the real client: a minimal in-memory NBD server built
//! only from this crate's parsing and framing (a test fixture, one thread
//! per connection), driven by qemu-io and qemu-img. If our bytes were wrong,
//! QEMU would refuse the handshake or read the wrong data.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command as Process;
use std::sync::{Arc, Mutex};

use photon_nbd::consts::*;
use photon_nbd::handshake::{self, ClientOption, OptionError, OptionHeader};
use photon_nbd::transmission::{self, Command, Request};

const SIZE: u64 = 4 << 20;
const BLOCK: u64 = 4096;

struct Disk {
    bytes: Vec<u8>,
    allocated: Vec<bool>,
}

fn tool_exists(name: &str) -> bool {
    Process::new(name).arg("--version").output().is_ok()
}

fn serve(listener: TcpListener, disk: Arc<Mutex<Disk>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let disk = disk.clone();
        std::thread::spawn(move || {
            let _ = connection(stream, &disk);
        });
    }
}

fn connection(mut s: TcpStream, disk: &Mutex<Disk>) -> std::io::Result<()> {
    s.write_all(&handshake::greeting())?;
    let mut flags = [0u8; 4];
    s.read_exact(&mut flags)?;
    let no_zeroes = handshake::parse_client_flags(flags).map_err(std::io::Error::other)?;
    let mut structured = false;
    let tflags = FLAG_HAS_FLAGS
        | FLAG_SEND_FLUSH
        | FLAG_SEND_FUA
        | FLAG_SEND_TRIM
        | FLAG_SEND_WRITE_ZEROES
        | FLAG_CAN_MULTI_CONN;
    loop {
        let mut h = [0u8; 16];
        s.read_exact(&mut h)?;
        let header = OptionHeader::parse(h).map_err(std::io::Error::other)?;
        let mut data = vec![0u8; header.length as usize];
        s.read_exact(&mut data)?;
        let option = match ClientOption::parse(header.option, &data) {
            Ok(o) => o,
            Err(e) => {
                s.write_all(&handshake::error_reply(header.option, &e))?;
                continue;
            }
        };
        match option {
            ClientOption::ExportName(name) if name == "vol" => {
                s.write_all(&handshake::export_name_reply(SIZE, tflags, no_zeroes))?;
                break;
            }
            ClientOption::ExportName(_) | ClientOption::Abort => return Ok(()),
            ClientOption::List => {
                s.write_all(&handshake::server_entry("vol"))?;
                s.write_all(&handshake::ack(OPT_LIST))?;
            }
            ClientOption::StructuredReply => {
                structured = true;
                s.write_all(&handshake::ack(header.option))?;
            }
            ClientOption::MetaContext {
                export, queries, ..
            } => {
                if export == "vol" && structured {
                    for q in queries.iter().filter(|q| q.as_str() == BASE_ALLOCATION) {
                        s.write_all(&handshake::meta_context(header.option, 1, q))?;
                    }
                }
                s.write_all(&handshake::ack(header.option))?;
            }
            ClientOption::Info { go, name, .. } => {
                if name != "vol" && !name.is_empty() {
                    let e = OptionError {
                        reply: REP_ERR_UNKNOWN,
                        message: format!("no export {name:?}"),
                    };
                    s.write_all(&handshake::error_reply(header.option, &e))?;
                    continue;
                }
                s.write_all(&handshake::info_export(header.option, SIZE, tflags))?;
                s.write_all(&handshake::info_block_size(
                    header.option,
                    512,
                    BLOCK as u32,
                    limits::PAYLOAD_BYTES_MAX,
                ))?;
                s.write_all(&handshake::ack(header.option))?;
                if go {
                    break;
                }
            }
            ClientOption::Unsupported(code) => {
                s.write_all(&handshake::error_reply(
                    code,
                    &OptionError::unsupported("not supported"),
                ))?;
            }
        }
    }
    transmission_phase(s, disk, structured)
}

fn transmission_phase(
    mut s: TcpStream,
    disk: &Mutex<Disk>,
    structured: bool,
) -> std::io::Result<()> {
    loop {
        let mut h = [0u8; Request::BYTES];
        s.read_exact(&mut h)?;
        let r = Request::parse(h).map_err(std::io::Error::other)?;
        let mut payload = vec![
            0u8;
            if r.command == Command::Write {
                r.length as usize
            } else {
                0
            }
        ];
        s.read_exact(&mut payload)?;
        if r.command == Command::Disconnect {
            return Ok(());
        }
        if let Err(errno) = r.check(SIZE, 512, false) {
            if structured {
                s.write_all(&transmission::structured_error(r.cookie, errno, "refused"))?;
            } else {
                s.write_all(&transmission::simple_reply(r.cookie, errno))?;
            }
            continue;
        }
        let (start, end) = (r.offset as usize, (r.offset + u64::from(r.length)) as usize);
        let mut d = disk.lock().unwrap();
        let blocks = (r.offset / BLOCK) as usize..(end as u64).div_ceil(BLOCK) as usize;
        match r.command {
            Command::Read => {
                let data = d.bytes[start..end].to_vec();
                if structured {
                    s.write_all(&transmission::offset_data(
                        r.cookie, r.offset, r.length, true,
                    ))?;
                } else {
                    s.write_all(&transmission::simple_reply(r.cookie, 0))?;
                }
                s.write_all(&data)?;
                continue;
            }
            Command::Write => {
                d.bytes[start..end].copy_from_slice(&payload);
                d.allocated[blocks].iter_mut().for_each(|b| *b = true);
            }
            Command::Trim | Command::WriteZeroes => {
                d.bytes[start..end].fill(0);
                d.allocated[blocks].iter_mut().for_each(|b| *b = false);
            }
            Command::BlockStatus => {
                let mut extents: Vec<(u32, u32)> = Vec::new();
                for b in blocks {
                    let status = if d.allocated[b] {
                        0
                    } else {
                        STATE_HOLE | STATE_ZERO
                    };
                    match extents.last_mut() {
                        Some((len, st)) if *st == status => *len += BLOCK as u32,
                        _ => extents.push((BLOCK as u32, status)),
                    }
                }
                s.write_all(&transmission::block_status(r.cookie, 1, &extents, true))?;
                continue;
            }
            _ => {}
        }
        if structured {
            s.write_all(&transmission::structured_done(r.cookie))?;
        } else {
            s.write_all(&transmission::simple_reply(r.cookie, 0))?;
        }
    }
}

fn start() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let disk = Arc::new(Mutex::new(Disk {
        bytes: vec![0; SIZE as usize],
        allocated: vec![false; (SIZE / BLOCK) as usize],
    }));
    std::thread::spawn(move || serve(listener, disk));
    format!("nbd://127.0.0.1:{port}/vol")
}

fn run(tool: &str, args: &[&str]) -> String {
    let out = Process::new(tool).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{tool} {args:?} failed: {text}");
    assert!(!text.contains("Pattern verification failed"), "{text}");
    text
}

#[test]
fn qemu_io_and_qemu_img_speak_to_the_codec() {
    // scripts/test.sh installs qemu-utils when they are missing.
    assert!(
        tool_exists("qemu-io") && tool_exists("qemu-img"),
        "qemu-io and qemu-img are needed (apt-get install qemu-utils)"
    );
    let uri = start();
    let io = |cmd: &str| run("qemu-io", &["-f", "raw", "-c", cmd, &uri]);
    io("write -P 0xab 0 64k");
    io("write -P 0xcd 1M 4k");
    io("read -P 0xab 0 64k");
    io("read -P 0xcd 1M 4k");
    io("flush");
    io("discard 0 32k");
    io("read -P 0 0 32k");
    io("read -P 0xab 32k 32k");
    io("write -z 1M 4k");
    io("read -P 0 1M 4k");
    let info = run("qemu-img", &["info", "-f", "raw", &uri]);
    assert!(info.contains("4 MiB"), "{info}");
    let map = run("qemu-img", &["map", "--output=json", "-f", "raw", &uri]);
    // The 32k..64k range holds data; the rest reads as zeroes.
    assert!(
        map.contains("\"start\": 32768, \"length\": 32768") && map.contains("\"data\": true"),
        "{map}"
    );
    assert!(map.contains("\"zero\": true"), "{map}");
    // A name the server does not export is refused.
    let bad = Process::new("qemu-io")
        .args([
            "-f",
            "raw",
            "-c",
            "read 0 512",
            &uri.replace("/vol", "/nope"),
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}
