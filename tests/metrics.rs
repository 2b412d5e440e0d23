//! NightLight against real clients: a real Prometheus (Debian `prometheus`)
//! scrapes a target and remote-writes to `photon dev`, and the samples it
//! holds itself are the ones NightLight answers; a kill -9 during ingestion
//! loses no acknowledged sample; bad input gets Prometheus' errors; tenants
//! see only their own series.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::http::{basic, dev_key, encode, http, now_ms, Reply};
use common::{dev_command, endpoints, need, temp_dir, Proc};
use photon_metrics_wire::{encode_remote_write_v1, encode_remote_write_v2, SeriesSamples};
use photon_tsdb::{Labels, Sample};
use serde_json::Value;

struct Dev {
    data: std::path::PathBuf,
    proc_: Option<Proc>,
    nightlight: SocketAddr,
    admin: SocketAddr,
    auth: String,
}

fn start_dev(data: &Path, extra: &[&str]) -> (Proc, BTreeMap<String, SocketAddr>) {
    let log = std::fs::File::create(data.with_extension("log")).unwrap();
    let mut child: Child = dev_command(data)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let _ = std::fs::remove_file(data.join("endpoints.json"));
    let eps = endpoints(data, &mut child);
    (Proc(child), eps)
}

impl Dev {
    fn start(name: &str) -> Dev {
        let dir = temp_dir(name);
        let data = dir.join("data");
        let (proc_, eps) = start_dev(&data, &[]);
        let auth = basic(&dev_key(&data));
        Dev {
            data,
            proc_: Some(proc_),
            nightlight: eps["nightlight"],
            admin: eps["admin"],
            auth,
        }
    }

    fn query(&self, path: &str) -> Reply {
        http(
            self.nightlight,
            "GET",
            path,
            &[("Authorization", self.auth.clone())],
            b"",
        )
    }

    fn query_ok(&self, path: &str) -> Value {
        let r = self.query(path);
        assert_eq!(
            r.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["data"].clone()
    }

    fn write_v1(&self, series: &[SeriesSamples]) -> Reply {
        http(
            self.nightlight,
            "POST",
            "/api/v1/write",
            &[
                ("Authorization", self.auth.clone()),
                ("Content-Type", "application/x-protobuf".into()),
                ("Content-Encoding", "snappy".into()),
                ("X-Prometheus-Remote-Write-Version", "0.1.0".into()),
            ],
            &encode_remote_write_v1(series),
        )
    }
}

fn series(pairs: &[(&str, &str)], samples: &[(i64, f64)]) -> SeriesSamples {
    SeriesSamples {
        labels: Labels::new(
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        ),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
    }
}

/// Samples of `selector[range]` at `time` as (ms, value text), per series.
fn raw_samples(doc: &Value) -> BTreeMap<String, Vec<(i64, String)>> {
    let mut out = BTreeMap::new();
    for s in doc["result"].as_array().unwrap() {
        let points = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        out.insert(s["metric"].to_string(), points);
    }
    out
}

#[test]
fn a_real_prometheus_remote_writes_and_nightlight_answers_with_its_samples() {
    need("prometheus", "prometheus");
    let dev = Dev::start("metrics-prometheus");
    let dir = dev.data.parent().unwrap().to_path_buf();
    let (id, secret) = dev_key(&dev.data);
    let prom_port = common::free_port();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: photon-admin\n    static_configs:\n      - targets: ['{}']\n\
         remote_write:\n  - url: http://{}/api/v1/write\n    basic_auth:\n      username: {id}\n      password: {secret}\n    queue_config:\n      batch_send_deadline: 1s\n",
        dev.admin, dev.nightlight
    );
    std::fs::write(dir.join("prometheus.yml"), config).unwrap();
    let prom_log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let _prometheus = Proc(
        Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prom-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(prom_log)
            .spawn()
            .unwrap(),
    );
    let prom: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    // Wait until NightLight has several scrapes of the target.
    let deadline = Instant::now() + Duration::from_secs(90);
    let selector =
        "{job=\"photon-admin\",__name__=~\"up|photon_http_requests_total|photon_shards\"}";
    loop {
        let d = dev.query_ok(&format!(
            "/api/v1/query?query={}",
            encode("count_over_time(up{job=\"photon-admin\"}[1m])")
        ));
        let n = d["result"][0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        if n >= 5.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "NightLight got fewer than 5 scrapes from Prometheus in 90 s: {d}\n{}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // Everything Prometheus holds up to 3 s ago it has sent (batches go
    // out every second): compare the raw samples of the last 30 s up to then.
    let at = (now_ms() - 3000) as f64 / 1000.0;
    std::thread::sleep(Duration::from_secs(3));
    let path = format!(
        "/api/v1/query?query={}&time={at}",
        encode(&format!("{selector}[30s]"))
    );
    let ours = raw_samples(&dev.query_ok(&path));
    let theirs_reply = http(prom, "GET", &path, &[], b"");
    assert_eq!(theirs_reply.status, 200);
    let theirs = raw_samples(&theirs_reply.json()["data"]);
    assert!(
        !theirs.is_empty(),
        "Prometheus has no samples of {selector}"
    );
    assert_eq!(
        ours, theirs,
        "NightLight and Prometheus disagree on the samples of {selector}"
    );
    // The same through PromQL: a rate over them.
    let rate = format!(
        "/api/v1/query?query={}&time={at}",
        encode("sum by (job) (rate(photon_http_requests_total{job=\"photon-admin\"}[20s]))")
    );
    let a = dev.query_ok(&rate);
    let b = http(prom, "GET", &rate, &[], b"").json()["data"].clone();
    assert_eq!(a, b, "rate() differs");
}

#[test]
fn acknowledged_samples_survive_kill_9_during_ingestion() {
    let mut dev = Dev::start("metrics-kill9");
    let base = now_ms() - 600_000;
    let writer_target = dev.nightlight;
    let auth = dev.auth.clone();
    // A writer thread sends requests until the node dies; it records the
    // batches that were acknowledged.
    let acked = std::thread::spawn(move || {
        let mut acked: Vec<i64> = Vec::new();
        for i in 0..100_000i64 {
            let t = base + i * 10;
            let batch: Vec<SeriesSamples> = (0..20)
                .map(|s| {
                    series(
                        &[("__name__", "kill_test"), ("series", &s.to_string())],
                        &[(t, i as f64)],
                    )
                })
                .collect();
            let body = encode_remote_write_v1(&batch);
            let r = std::panic::catch_unwind(|| {
                http(
                    writer_target,
                    "POST",
                    "/api/v1/write",
                    &[
                        ("Authorization", auth.clone()),
                        ("Content-Type", "application/x-protobuf".into()),
                        ("Content-Encoding", "snappy".into()),
                    ],
                    &body,
                )
                .status
            });
            match r {
                Ok(204) => acked.push(t),
                _ => break,
            }
        }
        acked
    });
    std::thread::sleep(Duration::from_millis(1500));
    let mut p = dev.proc_.take().unwrap();
    // SAFETY: kill(2) on the photon this test started.
    unsafe { libc::kill(p.0.id() as i32, libc::SIGKILL) };
    let _ = p.0.wait();
    drop(p);
    let acked = acked.join().unwrap();
    assert!(
        acked.len() > 20,
        "too few writes were acknowledged before the kill: {}",
        acked.len()
    );
    let (proc_, eps) = start_dev(&dev.data, &[]);
    dev.proc_ = Some(proc_);
    dev.nightlight = eps["nightlight"];
    let last = *acked.last().unwrap();
    let range_s = (last - base) / 1000 + 2;
    let path = format!(
        "/api/v1/query?query={}&time={}",
        encode(&format!("count_over_time(kill_test[{range_s}s])")),
        (last as f64) / 1000.0
    );
    let d = dev.query_ok(&path);
    let result = d["result"].as_array().unwrap();
    assert_eq!(result.len(), 20, "{d}");
    for s in result {
        let n: usize = s["value"][1].as_str().unwrap().parse::<f64>().unwrap() as usize;
        assert!(
            n >= acked.len(),
            "series {} has {n} samples, {} were acknowledged",
            s["metric"],
            acked.len()
        );
    }
}

#[test]
fn bad_input_gets_prometheus_errors_and_the_node_stays_up() {
    let dev = Dev::start("metrics-bad");
    let post = |headers: &[(&str, String)], body: &[u8]| {
        let mut h = vec![("Authorization", dev.auth.clone())];
        h.extend_from_slice(headers);
        http(dev.nightlight, "POST", "/api/v1/write", &h, body)
    };
    let proto = [
        ("Content-Type", "application/x-protobuf".to_string()),
        ("Content-Encoding", "snappy".to_string()),
    ];
    // Snappy that claims 4 GiB decoded; corrupt snappy; protobuf garbage
    // inside valid snappy.
    let r = post(&proto, b"\xff\xff\xff\xff\x0fnot snappy at all");
    assert_eq!(r.status, 413, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["errorType"], "bad_data");
    let r = post(&proto, b"\x20\xfe\xff\xff\xff\xffgarbage");
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    let garbage = snap::raw::Encoder::new()
        .compress_vec(&[0xffu8; 64])
        .unwrap();
    assert_eq!(post(&proto, &garbage).status, 400);
    // An invalid label name; a 1 MiB label value.
    let bad_name = encode_remote_write_v1(&[series(
        &[("__name__", "x"), ("bad-name", "v")],
        &[(now_ms(), 1.0)],
    )]);
    let r = post(&proto, &bad_name);
    assert_eq!(r.status, 400);
    assert!(
        String::from_utf8_lossy(&r.body).contains("bad-name"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let huge = "v".repeat(1 << 20);
    let big_value = encode_remote_write_v1(&[series(
        &[("__name__", "x"), ("l", &huge)],
        &[(now_ms(), 1.0)],
    )]);
    let r = post(&proto, &big_value);
    assert!(r.status == 400 || r.status == 413, "{}", r.status);
    // A million series in one request.
    let million: Vec<SeriesSamples> = (0..1_000_000)
        .map(|i| {
            series(
                &[("__name__", "m"), ("i", &i.to_string())],
                &[(now_ms(), 1.0)],
            )
        })
        .collect();
    let r = post(&proto, &encode_remote_write_v1(&million));
    assert!(
        r.status == 400 || r.status == 413,
        "a million series: {}",
        r.status
    );
    // Nothing of the refused writes is stored.
    let d = dev.query_ok(&format!(
        "/api/v1/series?match[]={}",
        encode("{__name__=~\"x|m\"}")
    ));
    assert_eq!(d, Value::Array(vec![]), "refused writes left series behind");
    // No credentials, wrong credentials.
    let r = http(dev.nightlight, "GET", "/api/v1/query?query=up", &[], b"");
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["status"], "error");
    let wrong = basic(&("nope".into(), "nope".into()));
    assert_eq!(
        http(
            dev.nightlight,
            "GET",
            "/api/v1/query?query=up",
            &[("Authorization", wrong)],
            b""
        )
        .status,
        401
    );
    // PromQL syntax errors and oversized queries.
    let r = dev.query("/api/v1/query?query=sum(");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["errorType"], "bad_data");
    let r = dev.query("/api/v1/query_range?query=up&start=0&end=100000000&step=1");
    assert_eq!(r.status, 400);
    assert!(String::from_utf8_lossy(&r.body).contains("11,000 points"));
    // Still serving.
    assert_eq!(
        dev.write_v1(&[series(&[("__name__", "ok_after")], &[(now_ms(), 1.0)])])
            .status,
        204
    );
    let d = dev.query_ok("/api/v1/query?query=ok_after");
    assert_eq!(d["result"].as_array().unwrap().len(), 1, "{d}");
}

#[test]
fn remote_write_2_influx_and_text_import_are_stored_and_out_of_order_is_refused() {
    let dev = Dev::start("metrics-formats");
    let t = now_ms() - 10_000;
    let v2 = encode_remote_write_v2(&[series(
        &[("__name__", "v2_metric"), ("a", "b")],
        &[(t, 1.5), (t + 1000, 2.5)],
    )]);
    let r = http(
        dev.nightlight,
        "POST",
        "/api/v1/write",
        &[
            ("Authorization", dev.auth.clone()),
            (
                "Content-Type",
                "application/x-protobuf;proto=io.prometheus.write.v2.Request".into(),
            ),
            ("Content-Encoding", "snappy".into()),
            ("X-Prometheus-Remote-Write-Version", "2.0.0".into()),
        ],
        &v2,
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("x-prometheus-remote-write-samples-written: 2"),
        "{}",
        r.headers
    );
    let line = format!(
        "weather,city=paris temperature=21.5,humidity=40i {}\n",
        t * 1_000_000
    );
    let r = http(
        dev.nightlight,
        "POST",
        "/api/v2/write?org=o&bucket=b&precision=ns",
        &[("Authorization", dev.auth.clone())],
        line.as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let text = format!("# TYPE imported_total counter\n# HELP imported_total Things imported.\nimported_total{{kind=\"a\"}} 7 {t}\n");
    let r = http(
        dev.nightlight,
        "POST",
        "/api/v1/import/prometheus",
        &[("Authorization", dev.auth.clone())],
        text.as_bytes(),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let at = (t + 1000) as f64 / 1000.0;
    for (query, want) in [
        ("v2_metric{a=\"b\"}", "2.5"),
        ("weather_temperature{city=\"paris\"}", "21.5"),
        ("weather_humidity{city=\"paris\"}", "40"),
        ("imported_total{kind=\"a\"}", "7"),
    ] {
        let d = dev.query_ok(&format!("/api/v1/query?query={}&time={at}", encode(query)));
        assert_eq!(d["result"][0]["value"][1], want, "{query}: {d}");
    }
    let meta = dev.query_ok("/api/v1/metadata?metric=imported_total");
    assert_eq!(meta["imported_total"][0]["type"], "counter", "{meta}");
    // Out of order (older than the series' newest sample) is refused, as
    // Prometheus does without an out-of-order window.
    let r = dev.write_v1(&[series(
        &[("__name__", "v2_metric"), ("a", "b")],
        &[(t - 5000, 9.0)],
    )]);
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert!(
        String::from_utf8_lossy(&r.body).contains("out of order"),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
}

#[test]
fn tenants_see_only_their_own_series() {
    let dev = Dev::start("metrics-tenants");
    let dir = dev.data.parent().unwrap().to_path_buf();
    let control: SocketAddr = {
        let text = std::fs::read_to_string(dev.data.join("endpoints.json")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        v["endpoints"]["control"].as_str().unwrap().parse().unwrap()
    };
    let admin = dir.join("admin-config");
    common::login_dev_admin(&admin, &dev.data);
    let out = common::ctl_stdin_as(
        &admin,
        control,
        &[
            "iam",
            "tenant",
            "create",
            "acme",
            "--admin",
            "alice",
            "--password-stdin",
        ],
        "Alice-metrics-pw-7Qz",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alice = dir.join("alice-config");
    common::login_as(&alice, control, "acme", "alice", "Alice-metrics-pw-7Qz");
    let key = common::ctl_json_as(&alice, control, &["iam", "access-key", "create"]);
    let alice_auth = basic(&(
        key["access_key_id"].as_str().unwrap().to_string(),
        key["secret_access_key"].as_str().unwrap().to_string(),
    ));
    let t = now_ms();
    assert_eq!(
        dev.write_v1(&[series(
            &[("__name__", "shared_name"), ("who", "system")],
            &[(t, 1.0)]
        )])
        .status,
        204
    );
    let r = http(
        dev.nightlight,
        "POST",
        "/api/v1/write",
        &[
            ("Authorization", alice_auth.clone()),
            ("Content-Type", "application/x-protobuf".into()),
            ("Content-Encoding", "snappy".into()),
        ],
        &encode_remote_write_v1(&[series(
            &[("__name__", "shared_name"), ("who", "acme")],
            &[(t, 2.0)],
        )]),
    );
    assert_eq!(r.status, 204, "{}", String::from_utf8_lossy(&r.body));
    let path = format!("/api/v1/query?query=shared_name&time={}", t as f64 / 1000.0);
    let mine = dev.query_ok(&path);
    assert_eq!(mine["result"].as_array().unwrap().len(), 1, "{mine}");
    assert_eq!(mine["result"][0]["metric"]["who"], "system");
    let theirs = http(
        dev.nightlight,
        "GET",
        &path,
        &[("Authorization", alice_auth.clone())],
        b"",
    )
    .json();
    assert_eq!(
        theirs["data"]["result"].as_array().unwrap().len(),
        1,
        "{theirs}"
    );
    assert_eq!(theirs["data"]["result"][0]["metric"]["who"], "acme");
    // Label values and series listings are per tenant too.
    let values = http(
        dev.nightlight,
        "GET",
        "/api/v1/label/who/values",
        &[("Authorization", alice_auth)],
        b"",
    )
    .json();
    assert_eq!(values["data"], serde_json::json!(["acme"]));
    // `photon ctl metrics query` presents alice's token (a bearer token,
    // Prometheus' `authorization` block) and prints her series only.
    let t_s = format!("{}", t as f64 / 1000.0);
    let endpoint = dev.nightlight.to_string();
    let cli = common::ctl_json_as(
        &alice,
        control,
        &[
            "metrics",
            "query",
            "shared_name",
            "--time",
            &t_s,
            "--endpoint",
            &endpoint,
        ],
    );
    assert_eq!(cli["result"].as_array().unwrap().len(), 1, "{cli}");
    assert_eq!(cli["result"][0]["metric"]["who"], "acme");
}
