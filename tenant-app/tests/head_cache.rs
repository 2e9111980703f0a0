//! The public head behind a real nginx configured as a deal's head Ingress configures
//! ingress-nginx (the snippet and zone line of `timedeal_api::head_cache`, the operator's own),
//! in front of two storefronts of one deal: a crowd reading the head every 50 ms reaches the
//! storefronts about once a second; a request carrying a session is never answered from the
//! cache; a made-up query is answered from the cache; everything else passes through.

mod common;

use std::time::{Duration, Instant};

use common::{client, postgres, DealFile, Shopper, Storefront};
use reqwest::StatusCode;
use timedeal_api::head_cache::{snippet, zone_line, HEAD_PATH};
use timedeal_testkit::{CachingProxy, ProxyConfig, RedisServer};

/// The head requests the storefronts answered themselves (200 or 304), by their metrics.
async fn origin_head_reads(fronts: &[&Storefront]) -> u64 {
    let mut total = 0;
    for front in fronts {
        let text = common::get_text(&format!("{}/metrics", front.url())).await;
        total += text
            .lines()
            .filter(|l| {
                l.starts_with("timedeal_http_request_duration_seconds_count{")
                    && l.contains("route=\"/api/queue/head\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    total
}

fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_with_the_head_ingress_snippet_reads_the_head_about_once_a_second() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 1,
        max_active: 1,
        ..DealFile::live("cached-head")
    };
    let first = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let second = first.replica(&redis, &[]);
    first.queue_open().await;
    let zone = "timedeal_head";
    let location = snippet(zone);
    let proxy = CachingProxy::start(&ProxyConfig {
        upstreams: &[port_of(&first.url()), port_of(&second.url())],
        cached_path: HEAD_PATH,
        http_snippet: &|dir| zone_line(zone, &dir.display().to_string()),
        location_snippet: &location,
    })
    .unwrap();

    // Shoppers join through the proxy, and one waits.
    let client = client();
    for _ in 0..2 {
        let (code, joined) = Shopper::new(&client, &proxy.url()).join().await;
        assert_eq!(code, StatusCode::OK, "{joined}");
    }
    let waiting = Shopper::new(&client, &proxy.url());
    let (_, joined) = waiting.join().await;
    assert_eq!(joined["state"], "waiting", "{joined}");
    let (code, pinged) = waiting
        .send(reqwest::Method::POST, "/api/queue/ping", None)
        .await;
    assert_eq!(code, StatusCode::OK, "a ping passes through: {pinged}");

    // A crowd of 16 pages reads the head every 50 ms for 3 s, sending no cookie.
    let before = origin_head_reads(&[&first, &second]).await;
    let started = Instant::now();
    let url = format!("{}{HEAD_PATH}", proxy.url());
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                let plain = reqwest::Client::new();
                let mut heads = Vec::new();
                while started.elapsed() < Duration::from_secs(3) {
                    let answer = plain.get(&url).send().await.unwrap();
                    assert_eq!(answer.status(), StatusCode::OK);
                    let head: serde_json::Value = answer.json().await.unwrap();
                    heads.push(head["head"].as_u64().expect("a head"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                heads.len()
            })
        })
        .collect();
    let mut reads = 0;
    for reader in readers {
        reads += reader.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let origin = origin_head_reads(&[&first, &second]).await - before;
    assert!(reads >= 400, "the crowd read {reads} times");
    assert!(
        (origin as f64) <= seconds + 3.0,
        "{reads} reads in {seconds:.1} s reached the storefronts {origin} times: about once a \
         second is the most; nginx said {:?}",
        proxy.cache_statuses()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let statuses = proxy.cache_statuses();
    let hits = statuses.get("HIT").copied().unwrap_or(0);
    assert!(
        hits as f64 >= 0.9 * reads as f64,
        "{hits} of {reads} reads were hits: {statuses:?}"
    );

    // A made-up query is the same key: it neither misses the cache nor fills its keys.
    let before = origin_head_reads(&[&first, &second]).await;
    for n in 0..20 {
        let answer = reqwest::Client::new()
            .get(format!("{url}?x={n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK);
    }
    let origin = origin_head_reads(&[&first, &second]).await - before;
    assert!(
        origin <= 2,
        "20 reads with made-up queries reached the storefronts {origin} times"
    );

    // A read carrying a session or a cookie goes to a storefront and is never stored.
    let before = origin_head_reads(&[&first, &second]).await;
    for header in ["x-timedeal-session", "cookie"] {
        for _ in 0..3 {
            let answer = reqwest::Client::new()
                .get(&url)
                .header(header, "td_session=someone")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(answer.headers()["x-cache-status"], "BYPASS", "{header}");
        }
    }
    let origin = origin_head_reads(&[&first, &second]).await - before;
    assert_eq!(origin, 6, "each read with a session reached a storefront");
    let answer = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_ne!(answer.headers()["x-cache-status"], "BYPASS");
}
