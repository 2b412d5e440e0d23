//! Engine behaviour: shards start and pin, keys route stably, forwarded calls
//! come back, full queues push back, shutdown drains.

use std::io::{Read, Write};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use photon_core::config::{ConfigLoader, CoreConfig};
use photon_core::{BoxError, CallError, EngineBuilder, ShardContext, ShardId, ShardService};

fn test_config(cores: usize) -> CoreConfig {
    let mut c = CoreConfig::default();
    c.engine.cores = cores;
    c.engine.io_memory_mib = 1;
    c.admin.listen = "127.0.0.1:0".parse().unwrap();
    c.shutdown.drain_timeout_ms = 3_000;
    c
}

/// What a probe service reports to the test thread.
#[derive(Debug)]
enum Event {
    Started {
        shard: ShardId,
        cpus: Vec<usize>,
    },
    Owner {
        shard: ShardId,
        owner: ShardId,
    },
    Echo {
        asker: ShardId,
        reply: (ShardId, ShardId, u64),
    },
    Pushback {
        accepted: usize,
        error: CallError,
    },
    Completed {
        count: usize,
    },
    Stopped,
}

struct Probe {
    events: Sender<Event>,
    gate: Rc<glommio::sync::Semaphore>,
}

#[derive(Clone)]
struct ProbeParams {
    events: Sender<Event>,
    scenario: Scenario,
}

#[derive(Clone, Copy, PartialEq)]
enum Scenario {
    Basics,
    Pushback,
}

fn affinity() -> Vec<usize> {
    // SAFETY: zeroed cpu_set_t is a valid empty set; the kernel fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pointer and size describe `set`; pid 0 is the calling thread.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0);
    // SAFETY: CPU_ISSET only reads the set the kernel filled.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect()
}

impl ShardService for Probe {
    type Params = ProbeParams;
    type Request = u64;
    type Reply = (ShardId, ShardId, u64);
    const NAME: &'static str = "probe";

    async fn start(ctx: &ShardContext<Self>, params: &ProbeParams) -> Result<Self, BoxError> {
        params.events.send(Event::Started {
            shard: ctx.shard(),
            cpus: affinity(),
        })?;
        let gate = if params.scenario == Scenario::Pushback {
            0
        } else {
            1 << 20
        };
        let probe = Self {
            events: params.events.clone(),
            gate: Rc::new(glommio::sync::Semaphore::new(gate)),
        };
        GATE.with(|g| *g.borrow_mut() = Some(probe.gate.clone()));
        if params.scenario == Scenario::Pushback && ctx.shard() == 0 {
            let ctx = ctx.clone();
            let events = probe.events.clone();
            ctx.clone()
                .spawn(async move {
                    ctx.shutdown()
                        .reached(photon_core::shutdown::Phase::Running)
                        .await;
                    pushback(&ctx, &events).await;
                })
                .detach();
        }
        Ok(probe)
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        if ctx.shard() == 0 && ctx.config().node.name == "basics" {
            for key in ["a", "bucket/key", "volume-7"] {
                let owner = ctx.owner_of(key.as_bytes());
                let _ = self.events.send(Event::Owner { shard: 0, owner });
            }
            for to in 0..ctx.shards() {
                let reply = ctx.call(to, 40 + to as u64).await.unwrap();
                let _ = self.events.send(Event::Echo { asker: 0, reply });
            }
        } else if ctx.config().node.name == "basics" {
            let owner = ctx.owner_of(b"bucket/key");
            let _ = self.events.send(Event::Owner {
                shard: ctx.shard(),
                owner,
            });
        }
        ctx.shutdown().draining().await;
    }

    async fn handle(
        self: Rc<Self>,
        ctx: &ShardContext<Self>,
        from: ShardId,
        request: u64,
    ) -> Self::Reply {
        // In the push-back scenario the gate is closed until the test opens it.
        self.gate.acquire(1).await.unwrap();
        self.gate.signal(1);
        (from, ctx.shard(), request * 2)
    }

    async fn stop(&self, ctx: &ShardContext<Self>) {
        let _ = (self.events.send(Event::Stopped), ctx);
    }
}

/// Shard 0 floods shard 1 with `try_call` while shard 1's handler is blocked:
/// the mesh must refuse with QueueFull after a bounded number, then deliver
/// every accepted call once the handler is released.
async fn pushback(ctx: &ShardContext<Probe>, events: &Sender<Event>) {
    let mut pending = Vec::new();
    let mut request = 0u64;
    let error = loop {
        match ctx.try_call(1, request) {
            Ok(fut) => pending.push(fut),
            Err((e, back)) => {
                assert_eq!(back, request, "the refused request comes back");
                break e;
            }
        }
        request += 1;
        if request > 10_000 {
            panic!("queue never pushed back");
        }
        // Let shard 1 take what it can.
        glommio::yield_if_needed().await;
        glommio::timer::sleep(Duration::from_micros(200)).await;
    };
    let _ = events.send(Event::Pushback {
        accepted: pending.len(),
        error,
    });
    // Shard 1's gate is opened through the other service's mesh (its queue
    // is not the full one): see GateOpener.
    REPORTED.with(|r| r.signal(1));
    let replies = futures_util::future::join_all(pending).await;
    let ok = replies.iter().filter(|r| r.is_ok()).count();
    let _ = events.send(Event::Completed { count: ok });
}

fn collect(rx: &Receiver<Event>, n: usize) -> Vec<Event> {
    (0..n)
        .map(|_| rx.recv_timeout(Duration::from_secs(20)).expect("event"))
        .collect()
}

#[test]
fn shards_start_pinned_route_keys_and_answer_forwarded_calls() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut config = test_config(2);
    config.node.name = "basics".into();
    let engine = EngineBuilder::new(config)
        .service::<Probe>(ProbeParams {
            events: tx,
            scenario: Scenario::Basics,
        })
        .start()
        .unwrap();
    assert_eq!(engine.shards(), 2);

    let mut started = Vec::new();
    let mut owners = Vec::new();
    let mut echoes = Vec::new();
    for event in collect(&rx, 2 + 3 + 2 + 1) {
        match event {
            Event::Started { shard, cpus } => started.push((shard, cpus)),
            Event::Owner { shard, owner } => owners.push((shard, owner)),
            Event::Echo { asker, reply } => echoes.push((asker, reply)),
            other => panic!("unexpected {other:?}"),
        }
    }
    started.sort();
    let cpus: Vec<Vec<usize>> = started.iter().map(|(_, c)| c.clone()).collect();
    assert_eq!(cpus.len(), 2);
    for c in &cpus {
        assert_eq!(c.len(), 1, "each shard is pinned to one CPU: {cpus:?}");
    }
    if std::thread::available_parallelism().unwrap().get() >= 2 {
        assert_ne!(cpus[0], cpus[1], "shards pin to different CPUs");
    }
    // The same key is owned by the same shard whichever shard asks.
    let bucket_key_owner = photon_core::routing::owner_of(b"bucket/key", 2);
    let asked: Vec<_> = owners.iter().filter(|(s, _)| *s == 1).collect();
    assert_eq!(asked, vec![&(1, bucket_key_owner)]);
    // Calls to self and to the other shard both come back with their answer.
    echoes.sort_by_key(|(_, r)| r.1);
    assert_eq!(echoes, vec![(0, (0, 0, 80)), (0, (0, 1, 82))]);

    let report = engine.shutdown();
    assert!(report.clean(), "{report:?}");
    let stopped = collect(&rx, 2);
    assert!(stopped.iter().all(|e| matches!(e, Event::Stopped)));
}

#[test]
fn a_full_mesh_queue_pushes_back_instead_of_growing() {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut config = test_config(2);
    config.engine.mesh_queue_depth = 8;
    config.engine.forwarded_inflight_max = 2;
    config.engine.pin = false;
    let engine = EngineBuilder::new(config)
        .service::<Probe>(ProbeParams {
            events: tx,
            scenario: Scenario::Pushback,
        })
        .service::<GateOpener>(())
        .start()
        .unwrap();
    let _started = collect(&rx, 2);
    let Event::Pushback { accepted, error } = rx.recv_timeout(Duration::from_secs(20)).unwrap()
    else {
        panic!("expected the push-back event");
    };
    assert_eq!(error, CallError::QueueFull { to: 1, depth: 8 });
    // depth queued + at most `forwarded_inflight_max` taken by the handler
    // side + one held by the dispatcher waiting for a permit.
    assert!((8..=8 + 2 + 1).contains(&accepted), "accepted {accepted}");
    let Event::Completed { count } = rx.recv_timeout(Duration::from_secs(20)).unwrap() else {
        panic!("expected completion");
    };
    assert_eq!(
        count, accepted,
        "every accepted call completes once released"
    );
    assert!(engine.shutdown().clean());
}

thread_local! {
    /// This shard's probe gate (shard-local state shared by two services).
    static GATE: std::cell::RefCell<Option<Rc<glommio::sync::Semaphore>>> = const { std::cell::RefCell::new(None) };
    /// Signalled on shard 0 once the push-back was observed.
    static REPORTED: Rc<glommio::sync::Semaphore> = Rc::new(glommio::sync::Semaphore::new(0));
}

/// Once shard 0 saw the push-back, asks shard 1 (over this service's own
/// mesh, which is not full) to open its probe gate. Also shows that two
/// services' meshes are independent.
struct GateOpener;

impl ShardService for GateOpener {
    type Params = ();
    type Request = ();
    type Reply = ();
    const NAME: &'static str = "gate-opener";

    async fn start(_ctx: &ShardContext<Self>, _params: &()) -> Result<Self, BoxError> {
        Ok(Self)
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        if ctx.shard() == 0 {
            let reported = REPORTED.with(|r| r.clone());
            reported.acquire(1).await.unwrap();
            ctx.call(1, ()).await.unwrap();
        }
        ctx.shutdown().draining().await;
    }

    async fn handle(self: Rc<Self>, _ctx: &ShardContext<Self>, _from: ShardId, _request: ()) {
        GATE.with(|g| g.borrow().as_ref().unwrap().signal(1));
    }
}

/// HTTP service whose handler takes a configurable time.
struct Slow {
    listener: std::cell::RefCell<Option<glommio::net::TcpListener>>,
}

impl ShardService for Slow {
    type Params = Arc<Mutex<Option<std::net::SocketAddr>>>;
    type Request = ();
    type Reply = ();
    const NAME: &'static str = "slow";

    async fn start(ctx: &ShardContext<Self>, params: &Self::Params) -> Result<Self, BoxError> {
        let listener = ctx.listen("slow", "127.0.0.1:0".parse().unwrap())?;
        *params.lock().unwrap() = Some(listener.local_addr().map_err(|e| e.to_string())?);
        Ok(Self {
            listener: std::cell::RefCell::new(Some(listener)),
        })
    }

    async fn run(self: Rc<Self>, ctx: ShardContext<Self>) {
        let listener = self.listener.borrow_mut().take().unwrap();
        let options = photon_core::http::ServeOptions {
            service: Self::NAME,
            limits: Default::default(),
            shutdown: ctx.shutdown().clone(),
            in_flight: ctx.in_flight().clone(),
            metrics: photon_core::http::HttpMetrics::new(ctx.metrics(), Self::NAME),
            drain_deadline: ctx.drain_deadline(),
            task_queue: ctx.latency_queue(),
        };
        photon_core::http::serve(
            listener,
            |req: hyper::Request<hyper::body::Incoming>| async move {
                let ms: u64 = req
                    .uri()
                    .path()
                    .trim_start_matches('/')
                    .parse()
                    .unwrap_or(0);
                glommio::timer::sleep(Duration::from_millis(ms)).await;
                photon_core::http::text_response(http::StatusCode::OK, format!("slept {ms}\n"))
            },
            options,
        )
        .await;
    }

    async fn handle(self: Rc<Self>, _ctx: &ShardContext<Self>, _from: ShardId, _request: ()) {}
}

#[test]
fn shutdown_lets_an_in_flight_request_finish_and_closes_idle_connections() {
    let addr = Arc::new(Mutex::new(None));
    let engine = EngineBuilder::new(test_config(2))
        .service::<Slow>(addr.clone())
        .start()
        .unwrap();
    let addr = addr.lock().unwrap().unwrap();
    assert_eq!(engine.endpoint("slow"), Some(addr));

    // An idle keep-alive connection and one with a slow request in flight.
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    idle.write_all(b"GET /0 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = idle.read(&mut buf).unwrap();
    assert!(std::str::from_utf8(&buf[..n])
        .unwrap()
        .starts_with("HTTP/1.1 200"));

    let mut busy = std::net::TcpStream::connect(addr).unwrap();
    busy.write_all(b"GET /700 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(150));

    let shutdown = std::thread::spawn(move || engine.shutdown());
    let mut response = String::new();
    busy.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    busy.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("slept 700\n"), "{response}");

    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        idle.read(&mut buf).unwrap(),
        0,
        "idle keep-alive closed by the drain"
    );

    let report = shutdown.join().unwrap();
    assert!(report.clean(), "{report:?}");
    // New connections are refused once the listener is gone.
    assert!(std::net::TcpStream::connect(addr).is_err());
}

#[test]
fn a_port_held_by_another_process_is_refused_with_its_name() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = test_config(2);
    config.admin.listen = holder.local_addr().unwrap();
    let err = EngineBuilder::new(config)
        .service::<photon_core::admin::AdminService>(Default::default())
        .start()
        .unwrap_err();
    let text = format!("{err:#}: {}", std::error::Error::source(&err).unwrap());
    assert!(text.contains("already in use"), "{text}");
    assert!(text.contains("admin"), "{text}");
}

#[test]
fn config_layers_and_errors_name_the_key() {
    let dir = std::env::temp_dir().join(format!("photon-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("node.toml");
    std::fs::write(&file, "[engine]\ncores = 3\n[log]\nformat = \"json\"\n").unwrap();
    let config = ConfigLoader::<CoreConfig>::new()
        .file(&file)
        .unwrap()
        .env([(
            "PHOTON_ENGINE_MESH_QUEUE_DEPTH".to_string(),
            "64".to_string(),
        )])
        .unwrap()
        .with("engine.cores", "2", "flag --cores")
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(config.engine.cores, 2, "flags win over the file");
    assert_eq!(config.engine.mesh_queue_depth, 64, "environment applies");
    assert_eq!(config.log.format, photon_core::config::LogFormat::Json);

    std::fs::write(&file, "[engine]\ncorez = 3\n").unwrap();
    let err = ConfigLoader::<CoreConfig>::new()
        .file(&file)
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("engine") && err.contains("corez"), "{err}");

    std::fs::write(&file, "[engine]\ncores = \"many\"\n").unwrap();
    let err = ConfigLoader::<CoreConfig>::new()
        .file(&file)
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("engine.cores") && err.contains("invalid type"),
        "{err}"
    );

    let err = ConfigLoader::<CoreConfig>::new()
        .env([(
            "PHOTON_ENGINE_MESH_QUEUE_DEPTH".to_string(),
            "0".to_string(),
        )])
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("engine.mesh_queue_depth"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
