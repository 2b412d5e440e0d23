//! The control plane driven from outside: `photon ctl` against `photon dev`,
//! and three real `photon node` processes that lose their leader to kill -9
//! under writes without losing an acknowledged write.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{block_on, ctl_as, ctl_json_as, Cluster, Dev};
use photon_control::client::{Client, ClientError, Code};
use photon_control::kv::{PutRequest, RangeRequest};

#[test]
fn ctl_drives_the_kv_of_photon_dev() {
    let dev = Dev::start("dev");
    let control = dev.control;
    let ctl = |_: std::net::SocketAddr, args: &[&str]| ctl_as(&dev.admin_config, control, args);
    let ctl_json =
        |_: std::net::SocketAddr, args: &[&str]| ctl_json_as(&dev.admin_config, control, args);

    let put = ctl_json(control, &["kv", "put", "app/a", "1"]);
    let first_revision = put["revision"].as_i64().unwrap();
    ctl_json(control, &["kv", "put", "app/b", "2"]);
    let got = ctl_json(control, &["kv", "get", "app/", "--prefix"]);
    assert_eq!(got["count"], 2);
    assert_eq!(got["kvs"][0]["key"], "app/a");
    assert_eq!(got["kvs"][1]["value"], "2");

    // Overwrite, then read the old value at the earlier revision.
    ctl_json(control, &["kv", "put", "app/a", "one"]);
    let old = ctl_json(
        control,
        &["kv", "get", "app/a", "--rev", &first_revision.to_string()],
    );
    assert_eq!(old["kvs"][0]["value"], "1");

    // Compare-and-swap: succeeds once, then fails.
    let cas = ctl_json(
        control,
        &["kv", "txn", "--if", "app/a==one", "--then", "put:app/a=two"],
    );
    assert_eq!(cas["succeeded"], true);
    let cas = ctl_json(
        control,
        &[
            "kv",
            "txn",
            "--if",
            "app/a==one",
            "--then",
            "put:app/a=three",
            "--else",
            "get:app/a",
        ],
    );
    assert_eq!(cas["succeeded"], false);
    assert_eq!(cas["responses"][0]["range"]["kvs"][0]["value"], "two");

    // A leased key disappears when the lease is revoked.
    let lease = ctl_json(control, &["lease", "grant", "60"]);
    let id = lease["id"].as_i64().unwrap().to_string();
    ctl_json(control, &["kv", "put", "session/x", "up", "--lease", &id]);
    let ttl = ctl_json(control, &["lease", "ttl", &id, "--keys"]);
    assert_eq!(ttl["keys"][0], "session/x");
    ctl_json(control, &["lease", "revoke", &id]);
    assert_eq!(ctl_json(control, &["kv", "get", "session/x"])["count"], 0);

    // Watch replays history from a revision and stops after N events.
    let watched = ctl(
        control,
        &[
            "--json", "kv", "watch", "app/", "--prefix", "--rev", "1", "--count", "3",
        ],
    );
    assert!(
        watched.status.success(),
        "{}",
        String::from_utf8_lossy(&watched.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&watched.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["kv"]["key"], "app/a");
    assert_eq!(lines[0]["type"], "PUT");

    // Compaction makes old revisions unreadable, with a clear error.
    ctl_json(
        control,
        &["kv", "compact", &(first_revision + 2).to_string()],
    );
    let out = ctl(
        control,
        &["kv", "get", "app/a", "--rev", &first_revision.to_string()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("compacted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let status = ctl_json(control, &["cluster", "status"]);
    assert_eq!(status["leader_id"], 1);
    assert_eq!(status["members"].as_array().unwrap().len(), 1);

    // Bad input is refused in the API's terms.
    let out = ctl(control, &["kv", "put", "", "x"]);
    assert!(!out.status.success());
    let long_key = "k".repeat(9000);
    let out = ctl(control, &["kv", "put", &long_key, "x"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("limit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn put(client: &mut Client, key: &str, value: &str) -> bool {
    client
        .put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
            lease: 0,
            prev_kv: false,
            ignore_value: false,
            ignore_lease: false,
        })
        .await
        .is_ok()
}

async fn read_all(client: &mut Client, serializable: bool) -> BTreeMap<String, String> {
    let r = client
        .range(
            RangeRequest {
                key: b"w/".to_vec(),
                range_end: b"w0".to_vec(),
                ..RangeRequest::default()
            },
            serializable,
        )
        .await
        .unwrap();
    r.kvs
        .into_iter()
        .map(|kv| {
            (
                String::from_utf8(kv.key).unwrap(),
                String::from_utf8(kv.value).unwrap(),
            )
        })
        .collect()
}

#[test]
fn three_nodes_survive_leader_kill_9_without_losing_acknowledged_writes() {
    let mut cluster = Cluster::new("kill9");
    for id in 1..=3 {
        cluster.start(id);
    }
    let endpoints = cluster.endpoints();
    let token = cluster.admin_token();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let leader = block_on(async {
        let mut client = Cluster::client(endpoints.clone(), &token);
        for i in 0..150 {
            let (k, v) = (format!("w/{i:05}"), format!("v{i}"));
            if put(&mut client, &k, &v).await {
                acked.insert(k, v);
            }
        }
        client.status().await.unwrap().leader_id
    });
    assert_eq!(
        acked.len(),
        150,
        "a healthy cluster acknowledges every write"
    );
    assert!(leader != 0);

    // A follower's "not the leader" names the leader in typed fields (the
    // client follows them; a pinned client shows them).
    let follower = *endpoints
        .iter()
        .find(|a| **a != cluster.addresses[&leader])
        .unwrap();
    let refusal = block_on(async {
        let mut pinned = Cluster::client(vec![follower], &token).pinned();
        pinned
            .put(PutRequest {
                key: b"w/pinned".to_vec(),
                value: b"x".to_vec(),
                ..PutRequest::default()
            })
            .await
    });
    match refusal {
        Err(ClientError::Api(e)) => {
            assert_eq!(e.code, Code::NotLeader, "{e}");
            assert!(e.retryable());
            let hint = e.leader.expect("a follower that knows the leader names it");
            assert_eq!(hint.id, leader);
            assert_eq!(hint.address, cluster.addresses[&leader].to_string());
        }
        other => panic!("a follower must refuse a write with a leader hint: {other:?}"),
    }

    // kill -9 the leader, keep writing through the survivors.
    cluster.kill9(leader);
    let started = Instant::now();
    let new_leader = block_on(async {
        let mut client = Cluster::client(endpoints.clone(), &token);
        for i in 150..300 {
            let (k, v) = (format!("w/{i:05}"), format!("v{i}"));
            if put(&mut client, &k, &v).await {
                acked.insert(k, v);
            }
        }
        // Ask a survivor who leads now.
        let survivor = *endpoints
            .iter()
            .find(|a| **a != cluster.addresses[&leader])
            .unwrap();
        Cluster::client(vec![survivor], &token)
            .status()
            .await
            .unwrap()
            .leader_id
    });
    assert!(
        new_leader != 0 && new_leader != leader,
        "a new leader took over"
    );
    assert!(acked.len() > 150, "writes continue after the leader died");
    eprintln!(
        "{} writes acknowledged; failover and 150 writes took {:?}",
        acked.len(),
        started.elapsed()
    );

    // Every acknowledged write is there, read linearizably from the cluster.
    let seen = block_on(async {
        let mut client = Cluster::client(endpoints.clone(), &token);
        read_all(&mut client, false).await
    });
    for (k, v) in &acked {
        assert_eq!(seen.get(k), Some(v), "acknowledged write {k} lost");
    }

    // The killed node restarts from its own disk and catches up (through a
    // snapshot: the log was purged every 100 entries).
    cluster.start(leader);
    let caught_up = block_on(async {
        let mut client = Cluster::client(vec![cluster.addresses[&leader]], &token);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let local = read_all(&mut client, true).await;
            if local.len() >= seen.len() || Instant::now() > deadline {
                return local;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    assert_eq!(caught_up, seen, "the restarted node serves the same data");
}

#[test]
fn membership_changes_under_writes_and_watches_see_every_change_once_across_a_leader_change() {
    let mut cluster = Cluster::new("membership");
    for id in 1..=3 {
        cluster.start(id);
    }
    cluster.start(4);
    let endpoints = cluster.endpoints();
    let token = cluster.admin_token();
    let mut acked: BTreeMap<String, String> = BTreeMap::new();
    let (watched, members) = block_on(async {
        let mut client = Cluster::client(endpoints.clone(), &token);
        let leader = client.status().await.unwrap().leader_id;
        // Watch through a node that will survive the leader's death.
        let watch_node = (1..=3).find(|id| *id != leader).unwrap();
        let mut watcher = Cluster::client(vec![cluster.addresses[&watch_node]], &token);
        let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
        let (_handle, _) = watcher
            .watch(b"m/".to_vec(), b"m0".to_vec(), 1, false, tx)
            .await
            .unwrap();

        for i in 0..240 {
            let (k, v) = (format!("m/{i:05}"), format!("v{i}"));
            if put(&mut client, &k, &v).await {
                acked.insert(k, v);
            }
            match i {
                60 => {
                    client
                        .add_learner(4, &cluster.addresses[&4].to_string())
                        .await
                        .unwrap();
                    client.promote(4).await.unwrap();
                }
                120 => cluster.kill9(leader),
                180 => client.remove(leader).await.unwrap(),
                _ => {}
            }
        }
        // Collect events until every acknowledged write was seen (or time out).
        let mut events = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while events.len() < acked.len() {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(photon_control::client::WatchMessage::Events(batch))) => {
                    events.extend(batch)
                }
                Ok(Some(photon_control::client::WatchMessage::Cancelled(reason))) => {
                    panic!("watch cancelled: {reason}")
                }
                Ok(None) | Err(_) => break,
            }
        }
        let status = Cluster::client(vec![cluster.addresses[&watch_node]], &token)
            .status()
            .await
            .unwrap();
        let members: Vec<u64> = status
            .members
            .iter()
            .filter(|m| m.voter)
            .map(|m| m.node_id)
            .collect();
        (events, (leader, members))
    });
    let (old_leader, voters) = members;
    assert!(voters.contains(&4), "node 4 joined as a voter: {voters:?}");
    assert!(
        !voters.contains(&old_leader),
        "the dead leader was removed: {voters:?}"
    );
    assert_eq!(voters.len(), 3);

    // Exactly once, in revision order, and every acknowledged write is there.
    let revisions: Vec<i64> = watched.iter().map(|e| e.kv.mod_revision).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "events out of order or repeated"
    );
    let seen: BTreeMap<String, String> = watched
        .iter()
        .map(|e| {
            (
                String::from_utf8(e.kv.key.clone()).unwrap(),
                String::from_utf8(e.kv.value.clone()).unwrap(),
            )
        })
        .collect();
    assert_eq!(seen.len(), watched.len(), "a key was reported twice");
    for (k, v) in &acked {
        assert_eq!(seen.get(k), Some(v), "watch missed {k}");
    }
}
