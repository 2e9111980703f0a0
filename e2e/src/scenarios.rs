//! The scenarios run against the real storefront. Each sets its shoppers up through the
//! product's own API, runs the load, then checks the app's metrics against what the load
//! generator counted before its figures are believed.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{header, Method, Request};
use tokio::task::JoinSet;

use crate::{
    load::{self, Load, Outcome, Requests},
    storefront::{self, Shopper, Storefront},
    verify, waiting, Error,
};

/// A measured run, with the Redis commands the storefront issued per answer (beyond its own
/// background work).
pub struct Measured {
    pub outcome: Outcome,
    pub redis_calls_per_answer: f64,
}

/// Admits one shopper per connection, all at once: their session and admission token.
async fn admitted_shoppers(
    front: &Storefront,
    count: usize,
) -> Result<Vec<(String, String)>, Error> {
    let mut tasks = JoinSet::new();
    for _ in 0..count {
        let mut shopper = front.shopper();
        tasks.spawn(async move {
            let token = shopper.admitted().await?;
            Ok::<_, Error>((shopper.session.unwrap_or_default(), token))
        });
    }
    let mut shoppers = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        shoppers.push(joined.map_err(|e| Error::Load(e.to_string()))??);
    }
    Ok(shoppers)
}

fn order_request(
    target: SocketAddr,
    session: &str,
    token: &str,
    key: &str,
) -> Request<Full<Bytes>> {
    let body = format!(r#"{{"quantity":1,"idempotencyKey":"{key}","admissionToken":"{token}"}}"#);
    Request::builder()
        .method(Method::POST)
        .uri("/api/orders")
        .header(header::HOST, target.to_string())
        .header(header::CONTENT_TYPE, "application/json")
        .header(storefront::SESSION_HEADER, session)
        .body(Full::new(Bytes::from(body)))
        .expect("a valid request")
}

fn session_request(
    target: SocketAddr,
    method: Method,
    path: &str,
    session: Option<&str>,
    ticket: Option<&str>,
) -> Request<Full<Bytes>> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, target.to_string());
    if let Some(session) = session {
        request = request.header(storefront::SESSION_HEADER, session);
    }
    if let Some(ticket) = ticket {
        request = request.header(storefront::TICKET_HEADER, ticket);
    }
    request
        .body(Full::new(Bytes::new()))
        .expect("a valid request")
}

/// What a scenario expects of every answer: its status, and the app's samples that must each
/// move by exactly the number of answers.
struct Expect {
    status: u16,
    counted_as: Vec<String>,
}

/// Runs the load, then fails unless every answer had the expected status and the app counted
/// each one in every sample of `expect`.
async fn measure(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
    label: &str,
    requests: Requests,
    expect: Expect,
) -> Result<Measured, Error> {
    let before = front.counters().await?;
    // The storefront's own background work (a few commands a second per replica) is measured
    // while idle and left out, so the figure is what the answers themselves cost.
    let quiet = Duration::from_secs(1);
    let calls = redis.commands().await?;
    tokio::time::sleep(quiet).await;
    let background = redis.commands().await?.saturating_sub(calls) as f64 / quiet.as_secs_f64();
    let calls = redis.commands().await?;
    let outcome = load::run(front.address(), load, label, requests).await?;
    let calls = (redis.commands().await?.saturating_sub(calls) as f64
        - background * outcome.elapsed.as_secs_f64())
    .max(0.0);
    outcome.expect_only(label, &[expect.status])?;
    let answers = outcome.count(expect.status);
    let counted: Vec<(String, u64)> = expect
        .counted_as
        .into_iter()
        .map(|sample| (sample, answers))
        .collect();
    verify::counted(front, &before, &counted).await?;
    Ok(Measured {
        redis_calls_per_answer: calls / answers.max(1) as f64,
        outcome,
    })
}

/// `orders`: admitted shoppers order one unit after another as fast as they are answered, on a
/// stock too large to run out. Every answer must be 201 (confirmed, hence committed to
/// PostgreSQL), and the app must have counted exactly as many confirmed orders.
pub async fn orders(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
) -> Result<Measured, Error> {
    let shoppers = Arc::new(admitted_shoppers(front, load.connections).await?);
    let target = front.address();
    let requests: Requests = Arc::new(move |connection, n| {
        let (session, token) = &shoppers[connection];
        order_request(target, session, token, &format!("k{n}"))
    });
    measure(
        front,
        redis,
        load,
        "orders",
        requests,
        Expect {
            status: 201,
            counted_as: vec![
                storefront::requests("POST", "/api/orders", 201),
                storefront::orders("confirmed"),
            ],
        },
    )
    .await
}

/// Sells the whole stock to one shopper and waits until the storefront knows it is sold out; the
/// buyer's admission token, which the `soldout` scenario's late shoppers send along.
pub async fn sell_out(front: &Storefront) -> Result<String, Error> {
    let mut buyer = front.shopper();
    let token = buyer.admitted().await?;
    let (code, answer) = buyer.order(front.deal.stock, "last", &token).await?;
    if code != 201 {
        return Err(Error::Unexpected(format!(
            "buying the whole stock answered {code}: {answer}"
        )));
    }
    wait_for_state(&mut buyer, "sold_out").await?;
    Ok(token)
}

/// `soldout`: order attempts on a deal [`sell_out`] sold out. Each must be refused with 409 and
/// the app must have counted each refusal as `sold_out`.
pub async fn soldout(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
    token: &str,
) -> Result<Measured, Error> {
    // Shoppers who lost the race: sessions of their own, sending an order anyway.
    let mut sessions = Vec::with_capacity(load.connections);
    for _ in 0..load.connections {
        let mut late = front.shopper();
        late.send(reqwest::Method::GET, "/api/deal", None).await?;
        sessions.push(late.session.unwrap_or_default());
    }
    let sessions = Arc::new(sessions);
    let token = token.to_owned();
    let target = front.address();
    let requests: Requests = Arc::new(move |connection, n| {
        order_request(target, &sessions[connection], &token, &format!("late{n}"))
    });
    measure(
        front,
        redis,
        load,
        "soldout",
        requests,
        Expect {
            status: 409,
            counted_as: vec![
                storefront::requests("POST", "/api/orders", 409),
                storefront::rejections("sold_out"),
            ],
        },
    )
    .await
}

async fn wait_for_state(shopper: &mut Shopper, state: &str) -> Result<(), Error> {
    for _ in 0..100 {
        let (_, deal) = shopper
            .send(reqwest::Method::GET, "/api/deal", None)
            .await?;
        if deal["state"] == state {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::Unexpected(format!(
        "the deal did not reach {state} within 5 s"
    )))
}

/// `queue` joins: new shoppers (no session yet) join a line that admits one a second.
pub async fn joins(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
    label: &str,
) -> Result<Measured, Error> {
    let target = front.address();
    let requests: Requests =
        Arc::new(move |_, _| session_request(target, Method::POST, "/api/queue", None, None));
    measure(
        front,
        redis,
        load,
        label,
        requests,
        Expect {
            status: 200,
            counted_as: vec![storefront::requests("POST", "/api/queue", 200)],
        },
    )
    .await
}

/// Waiting shoppers whose polls the `queue` scenario replays, each with their session and
/// ticket.
pub async fn waiting_crowd(front: &Storefront, count: usize) -> Result<Vec<Shopper>, Error> {
    waiting::queue_open(front).await?;
    Ok(waiting::join_all(front, count, 64, "waiting")
        .await?
        .into_iter()
        .map(|(shopper, _)| shopper)
        .collect())
}

/// `queue` polls: waiting shoppers ask where they stand, each connection cycling through its
/// share of the crowd. Each poll is answered from the shopper's ticket, without Redis.
pub async fn polls(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
    crowd: Arc<Vec<Shopper>>,
) -> Result<Measured, Error> {
    let target = front.address();
    let connections = load.connections;
    let requests: Requests = Arc::new(move |connection, n| {
        let shopper = &crowd[(connection + n as usize * connections) % crowd.len()];
        session_request(
            target,
            Method::GET,
            "/api/queue",
            shopper.session.as_deref(),
            shopper.ticket.as_deref(),
        )
    });
    measure(
        front,
        redis,
        load,
        "queue polls",
        requests,
        Expect {
            status: 200,
            counted_as: vec![storefront::requests("GET", "/api/queue", 200)],
        },
    )
    .await
}

/// `queue head`: the public head, as a page or a cache in front of the storefront reads it (no
/// session, no ticket): bytes rendered once a second, from memory.
pub async fn heads(
    front: &Storefront,
    redis: &verify::RedisProbe,
    load: Load,
) -> Result<Measured, Error> {
    let target = front.address();
    let requests: Requests =
        Arc::new(move |_, _| session_request(target, Method::GET, "/api/queue/head", None, None));
    measure(
        front,
        redis,
        load,
        "queue head",
        requests,
        Expect {
            status: 200,
            counted_as: vec![storefront::requests("GET", "/api/queue/head", 200)],
        },
    )
    .await
}
