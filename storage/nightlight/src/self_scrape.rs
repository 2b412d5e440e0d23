//! The node's own metrics into NightLight: shard 0 reads the node's
//! `/metrics` (the admin endpoint, over loopback, as any scraper would)
//! every `nightlight.self_scrape_interval_s` and stores it in the
//! `system/default` namespace with `job="photon"` and `instance=<node>`,
//! plus `up` as Prometheus records it.

use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use photon_metrics_wire::{SeriesSamples, WriteBatch};
use photon_tsdb::{Labels, Sample};

use crate::api::Api;

/// The namespace the node's own metrics go to.
pub const SYSTEM_NAMESPACE: &str = "system/default";
/// Largest `/metrics` page read.
const PAGE_BYTES_MAX: usize = 16 << 20;
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

async fn fetch(address: std::net::SocketAddr) -> Result<Vec<u8>, String> {
    let mut stream = glommio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect {address}: {e}"))?;
    let request = format!("GET /metrics HTTP/1.0\r\nHost: {address}\r\nAccept: text/plain\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut page = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            break;
        }
        if page.len() + n > PAGE_BYTES_MAX {
            return Err(format!("the page is over {PAGE_BYTES_MAX} bytes"));
        }
        page.extend_from_slice(&buf[..n]);
    }
    let split = page
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the response head")?;
    if !page.starts_with(b"HTTP/1.1 200") && !page.starts_with(b"HTTP/1.0 200") {
        return Err(format!(
            "status {}",
            String::from_utf8_lossy(&page[..page.len().min(12)])
        ));
    }
    Ok(page[split + 4..].to_vec())
}

async fn scrape_once(api: &Api, address: std::net::SocketAddr) -> Result<usize, String> {
    let node = api.service.params.node_name.clone();
    let t = crate::now_ms();
    let page = futures_lite::future::or(fetch(address), async {
        glommio::timer::sleep(SCRAPE_TIMEOUT).await;
        Err("timed out".to_string())
    })
    .await;
    let mut batch = match &page {
        Ok(page) => photon_metrics_wire::parse_prometheus_text(page, t, &api.service.wire_limits())
            .map_err(|e| e.to_string())?,
        Err(_) => WriteBatch::default(),
    };
    let up = if page.is_ok() { 1.0 } else { 0.0 };
    batch.series.push(SeriesSamples {
        labels: Labels::new(vec![("__name__".into(), "up".into())]),
        samples: vec![Sample { t, v: up }],
    });
    for s in &mut batch.series {
        s.labels.set("job", "photon");
        s.labels.set("instance", &node);
    }
    let n = batch.series.len();
    crate::ingest::store(api, SYSTEM_NAMESPACE, batch)
        .await
        .map_err(|e| e.message)?;
    page.map(|_| n)
}

pub async fn run(api: Rc<Api>) {
    let interval = Duration::from_secs(api.service.params.config.self_scrape_interval_s);
    loop {
        let stop = futures_lite::future::or(
            async {
                glommio::timer::sleep(interval).await;
                false
            },
            async {
                api.ctx.shutdown().draining().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
        let address = api
            .service
            .params
            .admin_address
            .lock()
            .ok()
            .and_then(|a| *a);
        let Some(address) = address else {
            continue;
        };
        match scrape_once(&api, address).await {
            Ok(series) => tracing::trace!(series, "stored this node's metrics"),
            Err(e) => tracing::debug!(error = %e, "self-scrape failed"),
        }
    }
}
