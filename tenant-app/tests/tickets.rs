//! The signed-ticket queue against real Redis: a pre-queue of 2,000 drawn at the start and
//! checked from the revealed seed by the public command; polls answered without Redis; shoppers
//! who left passed over without stalling the line; tickets that are made up, re-signed, or
//! another deal's or another shopper's refused.

mod common;

use std::{collections::HashMap, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD as B64, Engine};
use common::{binary, client, eventually, postgres, DealFile, Shopper, Storefront, SECRET};
use futures_util::{stream, StreamExt};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};
use timedeal_tenant_app::{queue::Ticket, tokens::Signer};
use timedeal_testkit::RedisServer;

/// `INFO commandstats` as calls per command.
async fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

async fn redis_get(redis: &RedisServer, key: &str) -> Option<String> {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("GET")
        .arg(key)
        .query_async(&mut connection)
        .await
        .unwrap()
}

/// Joins `count` shoppers, 32 at a time.
async fn join_many(client: &reqwest::Client, url: &str, count: usize) -> Vec<Shopper> {
    stream::iter(0..count)
        .map(|_| async {
            let shopper = Shopper::new(client, url);
            let (code, status) = shopper.join().await;
            assert_eq!(code, StatusCode::OK, "{status}");
            shopper
        })
        .buffer_unordered(32)
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_queue_of_two_thousand_is_drawn_from_the_committed_seed_and_checks_out() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 25,
        rate: 1,
        max_active: 1,
        // The crowd polls in two bursts and then waits for the start; none of them has left.
        idle_grace: "10m",
        ..DealFile::live("draw")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let client = client();

    let before = shop.fairness().await;
    let commitment = before["commitment"].as_str().unwrap().to_owned();
    assert_eq!(commitment.len(), 64, "{before}");
    assert_eq!(before["seed"], serde_json::Value::Null, "revealed early");

    let shoppers = join_many(&client, &shop.url(), 2_000).await;
    let mut numbers = Vec::new();
    for shopper in &shoppers {
        let status = shopper.status().await;
        assert_eq!(status["state"], "pre_queue", "{status}");
        assert_eq!(status["drawCommitment"], commitment.as_str());
        numbers.push(status["joinNumber"].as_u64().unwrap());
    }
    let mut sorted = numbers.clone();
    sorted.sort();
    assert_eq!(sorted, (1..=2_000).collect::<Vec<u64>>());

    // Waiting shoppers' polls cost Redis nothing: no per-shopper command, and all the commands
    // Redis runs meanwhile (the replicas' own few a second) are far fewer than the polls.
    let calls_before = command_calls(&redis).await;
    let polls = stream::iter(shoppers.iter())
        .map(|shopper| async move {
            for _ in 0..2 {
                assert_eq!(shopper.status().await["state"], "pre_queue");
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let calls_after = command_calls(&redis).await;
    let delta =
        |name: &str| calls_after.get(name).unwrap_or(&0) - calls_before.get(name).unwrap_or(&0);
    for per_shopper in ["hget", "zscore", "incr", "setbit"] {
        assert_eq!(delta(per_shopper), 0, "{per_shopper} ran during the polls");
    }
    let total: u64 = calls_after.values().sum::<u64>() - calls_before.values().sum::<u64>();
    assert!(
        total < (polls.len() as u64 * 2) / 4,
        "{total} Redis commands during {} polls",
        polls.len() * 2
    );

    eventually("the start", Duration::from_secs(40), || async {
        shoppers[0].status().await["deal"] == "live"
    })
    .await;
    shop.queue_open().await;
    // The draw waits for the beacon's first round after the start, named before anyone joined.
    assert_eq!(before["beacon"]["source"], common::beacon().url());
    assert_eq!(before["beacon"]["round"], serde_json::Value::Null);
    eventually("the beacon's round", Duration::from_secs(10), || async {
        shop.fairness().await["beacon"]["randomness"].is_string()
    })
    .await;
    let after = shop.fairness().await;
    let round = after["beacon"]["round"].as_u64().unwrap();
    assert_eq!(
        after["beacon"]["randomness"],
        common::beacon().randomness(round),
        "{after}"
    );
    let seed = after["seed"].as_str().unwrap();
    let seed_bytes: Vec<u8> = (0..seed.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&seed[i..i + 2], 16).unwrap())
        .collect();
    let mut committed = Sha256::new();
    committed.update(&seed_bytes);
    committed.update(common::beacon().url().as_bytes());
    let hash: String = committed
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hash, commitment,
        "the seed and beacon are not the committed ones"
    );
    assert_eq!(after["preQueueSize"], 2_000);

    // Every shopper's place, as the storefront tells it.
    let mut told = HashMap::new();
    for (shopper, number) in shoppers.iter().zip(&numbers) {
        let status = shopper.status().await;
        match status["state"].as_str().unwrap() {
            "waiting" => {
                told.insert(*number, status["ticket"].as_u64().unwrap());
            }
            "admitted" => {}
            other => panic!("unexpected state {other}: {status}"),
        }
    }
    assert!(told.len() >= 1_990, "only {} still waiting", told.len());
    let in_join_order: Vec<u64> = (1..=2_000).filter_map(|n| told.get(&n).copied()).collect();
    let mut ascending = in_join_order.clone();
    ascending.sort();
    assert_ne!(
        in_join_order, ascending,
        "the pre-queue kept its join order"
    );

    // The public command recomputes every place from the revealed seed.
    let output = tokio::process::Command::new(binary())
        .args(["verify-draw", &shop.url(), "--places"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains(&commitment), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "round {round}, the first after the pre-queue closed, and its randomness matches"
        )),
        "{stdout}"
    );
    let computed: HashMap<u64, u64> = stdout
        .lines()
        .filter_map(|line| {
            let (number, place) = line.split_once(' ')?;
            Some((number.parse().ok()?, place.parse().ok()?))
        })
        .collect();
    assert_eq!(computed.len(), 2_000, "{stdout}");
    for (number, place) in &told {
        assert_eq!(computed[number], *place, "join number {number}");
    }

    // A latecomer queues behind the whole pre-queue.
    let late = Shopper::new(&client, &shop.url());
    let (_, status) = late.join().await;
    assert_eq!(status["ticket"], 2_001, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shoppers_who_left_are_passed_over_without_stalling_the_line() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 5,
        rate: 100,
        max_active: 10,
        // Windows of one second: silent for two, a shopper has left.
        idle_grace: "2s",
        ..DealFile::live("leavers")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let client = client();
    let early = join_many(&client, &shop.url(), 20).await;
    let (stayers, leavers) = early.split_at(10);
    let number = |s: &Shopper| {
        let ticket = s.ticket().unwrap();
        let body =
            String::from_utf8(B64.decode(ticket.split('.').next().unwrap()).unwrap()).unwrap();
        body.rsplit('|').nth(2).unwrap().parse::<u64>().unwrap()
    };
    let leaver_numbers: Vec<u64> = leavers.iter().map(number).collect();

    // The stayers keep polling; the leavers never come back.
    let polling = async {
        let mut admitted = vec![false; stayers.len()];
        while admitted.iter().any(|a| !a) {
            for (i, shopper) in stayers.iter().enumerate() {
                if !admitted[i] {
                    admitted[i] = shopper.status().await["state"] == "admitted";
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), polling)
        .await
        .expect("every stayer admitted soon after the start");

    // After the start: ten more join behind, five of whom leave at once; the line is full
    // (ten admitted) until the first ten finish.
    let later = join_many(&client, &shop.url(), 10).await;
    let (later_stayers, later_leavers) = later.split_at(5);
    let later_leaver_numbers: Vec<u64> = later_leavers.iter().map(number).collect();
    let watch = async {
        loop {
            for shopper in later_stayers {
                shopper.status().await;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let finish = async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        for shopper in stayers {
            let (code, _) = shopper
                .send(reqwest::Method::DELETE, "/api/queue", None)
                .await;
            assert_eq!(code, StatusCode::NO_CONTENT);
        }
        for shopper in later_stayers {
            let admitted = async {
                while shopper.status().await["state"] != "admitted" {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(10), admitted)
                .await
                .expect("the later stayers are admitted, never stalled by the leavers");
        }
    };
    tokio::select! {
        _ = watch => unreachable!(),
        _ = finish => {}
    }

    let admitted: Vec<u64> = shop
        .admissions()
        .await
        .into_iter()
        .map(|(_, number)| number)
        .collect();
    assert_eq!(admitted.len(), 15, "{admitted:?}");
    for left in leaver_numbers.iter().chain(&later_leaver_numbers) {
        assert!(
            !admitted.contains(left),
            "{left} left, yet was admitted: {admitted:?}"
        );
    }
    let head: u64 = redis_get(&redis, "td:{leavers}:head")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(head, 30, "the head passed over everyone who left");
}

/// A presence ping, as a page following the public head sends it.
async fn ping(shopper: &Shopper) -> (StatusCode, serde_json::Value) {
    shopper
        .send(reqwest::Method::POST, "/api/queue/ping", None)
        .await
}

/// The head-and-ping protocol: waiting shoppers who only ping (every `pingAfterMs`) and read the
/// public head keep their places, and ask for their status only once the head reaches them;
/// those who go silent lose theirs, as silent pollers do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_place_and_their_absence_loses_it() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 100,
        max_active: 1,
        // Windows of one second: silent for two, a shopper has left.
        idle_grace: "2s",
        ..DealFile::live("pings")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    let holder = Shopper::new(&client, &shop.url());
    holder.join().await;
    holder.wait_for_turn(Duration::from_secs(10)).await.unwrap();
    // One after another, so they stand in this order.
    let mut behind = Vec::new();
    let mut places = Vec::new();
    for _ in 0..4 {
        let shopper = Shopper::new(&client, &shop.url());
        let (_, joined) = shopper.join().await;
        places.push(joined["ticket"].as_u64().unwrap());
        behind.push(shopper);
    }
    assert!(places.windows(2).all(|w| w[0] < w[1]), "{places:?}");
    let (pingers, silent) = behind.split_at(2);
    let (code, pinged) = ping(&pingers[0]).await;
    assert_eq!(code, StatusCode::OK, "{pinged}");
    assert_eq!(pinged["reached"], false);
    assert_eq!(
        pinged["pingAfterMs"], 666,
        "two thirds of a one-second window"
    );
    let stranger = Shopper::new(&client, &shop.url());
    let (code, refused) = ping(&stranger).await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "no_place");

    // The holder stays three seconds (its polls renew its admission) while the pingers ping and
    // the silent ones say nothing; then it leaves.
    let head_url = format!("{}/api/queue/head", shop.url());
    let head = || async {
        let head: serde_json::Value = client
            .get(&head_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        head["head"].as_u64().unwrap()
    };
    let hold = async {
        for _ in 0..15 {
            holder.status().await;
            for shopper in pingers {
                assert_eq!(ping(shopper).await.0, StatusCode::OK);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (code, _) = holder
            .send(reqwest::Method::DELETE, "/api/queue", None)
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT);
    };
    hold.await;
    // Each pinger pings and follows the head; its status is asked only once the head reaches it.
    for (shopper, place) in pingers.iter().zip(&places) {
        let turn = async {
            loop {
                let (_, pinged) = ping(shopper).await;
                if pinged["reached"] == true || head().await >= *place {
                    break;
                }
                for other in pingers {
                    ping(other).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(15), turn)
            .await
            .expect("the head reaches a pinger");
        let status = shopper.status().await;
        assert_eq!(status["state"], "admitted", "{status}");
        let (code, _) = shopper
            .send(reqwest::Method::DELETE, "/api/queue", None)
            .await;
        assert_eq!(code, StatusCode::NO_CONTENT);
    }
    let admitted: Vec<u64> = shop
        .admissions()
        .await
        .into_iter()
        .map(|(_, number)| number)
        .collect();
    assert!(
        admitted.contains(&places[0]) && admitted.contains(&places[1]),
        "{admitted:?}"
    );
    for (shopper, number) in silent.iter().zip(&places[2..]) {
        assert!(
            !admitted.contains(number),
            "{number} went silent: {admitted:?}"
        );
        // The head has passed them: the ping sends them to their status, which says so.
        let (code, pinged) = ping(shopper).await;
        assert_eq!(
            (code, pinged["reached"].clone()),
            (StatusCode::OK, true.into())
        );
        let status = shopper.status().await;
        assert_ne!(status["state"], "admitted", "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_re_signed_and_borrowed_tickets_are_refused() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        rate: 1,
        max_active: 1,
        ..DealFile::live("tickets")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    shop.queue_open().await;
    let client = client();
    Shopper::new(&client, &shop.url()).join().await;
    let alice = Shopper::new(&client, &shop.url());
    let (_, joined) = alice.join().await;
    assert_eq!(joined["state"], "waiting", "{joined}");
    let real = alice.ticket().unwrap();
    let body = String::from_utf8(B64.decode(real.split('.').next().unwrap()).unwrap()).unwrap();
    let fields: Vec<&str> = body.split('|').collect();
    let ticket = Ticket {
        deal: "tickets".into(),
        shopper: fields[1].into(),
        epoch: fields[2].parse().unwrap(),
        number: 1,
        owned: 0,
        issued_ms: fields[5].parse().unwrap(),
    };
    let taken_before = redis_get(&redis, "td:{tickets}:seq").await;

    let (_, signature) = real.split_once('.').unwrap();
    // Number 1's body under Alice's real signature.
    let number_one = ticket.sign(&Signer::new(SECRET.as_bytes()));
    let edited = format!("{}.{signature}", number_one.split('.').next().unwrap());
    let resigned = ticket.sign(&Signer::new(b"not-the-deal-secret-not-the-deal!"));
    let elsewhere = Ticket {
        deal: "another-deal".into(),
        ..ticket.clone()
    }
    .sign(&Signer::new(SECRET.as_bytes()));
    let bob = Shopper::new(&client, &shop.url());
    bob.status().await;
    for (who, token, code) in [
        (&alice, "garbage".to_owned(), "ticket_malformed"),
        (&alice, edited, "ticket_forged"),
        (&alice, resigned, "ticket_forged"),
        (&alice, elsewhere, "ticket_other_deal"),
        (&bob, real.clone(), "ticket_foreign"),
    ] {
        let held = who.ticket();
        who.set_ticket(Some(token));
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let (status, answer) = who.send(method.clone(), "/api/queue", None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {answer}");
            assert_eq!(answer["error"]["code"], code, "{answer}");
        }
        who.set_ticket(held);
    }
    // Nothing refused took a number, and Alice's real ticket still holds her place.
    assert_eq!(redis_get(&redis, "td:{tickets}:seq").await, taken_before);
    let status = alice.status().await;
    assert_eq!(status["ticket"], joined["ticket"], "{status}");
    // A browser presenting a refused ticket has the cookie cleared.
    let response = client
        .get(format!("{}/api/queue", shop.url()))
        .header("cookie", "td_ticket=garbage")
        .send()
        .await
        .unwrap();
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|c| c.to_str().unwrap().starts_with("td_ticket=;"));
    assert!(cleared, "{:?}", response.headers());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_join_puzzle_is_accepted_solved_and_refused_otherwise() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        join_challenge: Some(12),
        ..DealFile::live("puzzle")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let client = client();
    let shopper = Shopper::new(&client, &shop.url());
    let (_, deal_view) = shopper.send(reqwest::Method::GET, "/api/deal", None).await;
    assert_eq!(deal_view["joinChallenge"], 12, "{deal_view}");

    let join_with = |challenge: Option<String>, solution: Option<String>| {
        let shopper = &shopper;
        let client = &client;
        let url = shop.url();
        async move {
            let mut request = client
                .post(format!("{url}/api/queue"))
                .header("x-timedeal-session", shopper.session().unwrap());
            if let Some(challenge) = challenge {
                request = request.header("x-timedeal-challenge", challenge);
            }
            if let Some(solution) = solution {
                request = request.header("x-timedeal-solution", solution);
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (code, answer) = join_with(None, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"]["code"], "challenge_required", "{answer}");
    assert!(answer["error"]["message"]
        .as_str()
        .unwrap()
        .contains("/api/queue/challenge"));

    let (_, puzzle) = shopper
        .send(reqwest::Method::GET, "/api/queue/challenge", None)
        .await;
    assert_eq!(puzzle["required"], true);
    assert_eq!(puzzle["difficulty"], 12);
    let challenge = puzzle["challenge"].as_str().unwrap().to_owned();
    let solution = timedeal_tenant_app::queue::challenge::solve(&challenge, 12);
    let wrong = (0u64..)
        .map(|n| n.to_string())
        .find(|s| timedeal_tenant_app::queue::challenge::work(&challenge, s) < 12)
        .unwrap();
    let (code, answer) = join_with(Some(challenge.clone()), Some(wrong)).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(answer["error"]["code"], "challenge_failed", "{answer}");
    // Someone else's solved challenge is no good.
    let other = Shopper::new(&client, &shop.url());
    other.status().await;
    let (code, answer) = other.send(reqwest::Method::POST, "/api/queue", None).await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{answer}");
    let borrowed = client
        .post(format!("{}/api/queue", shop.url()))
        .header("x-timedeal-session", other.session().unwrap())
        .header("x-timedeal-challenge", &challenge)
        .header("x-timedeal-solution", &solution)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(borrowed["error"]["code"], "challenge_foreign", "{borrowed}");
    assert_eq!(
        redis_get(&redis, "td:{puzzle}:seq").await,
        None,
        "a refused join took a number"
    );

    let (code, answer) = join_with(Some(challenge), Some(solution)).await;
    assert_eq!(code, StatusCode::OK, "{answer}");
    assert!(answer["queueTicket"].is_string(), "{answer}");
    assert_eq!(
        redis_get(&redis, "td:{puzzle}:seq").await.as_deref(),
        Some("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_beacon_out_of_reach_holds_the_draw_only_for_its_patience_and_fails_the_check() {
    let redis = RedisServer::start().unwrap();
    // A port nobody listens on: every call to the beacon is refused.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let deal = DealFile {
        starts_in: 3,
        ..DealFile::live("no-beacon")
    };
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &deal,
        &[
            &format!("--draw-beacon={unreachable}"),
            "--draw-beacon-patience=2s",
        ],
    );
    let client = client();
    let shoppers = join_many(&client, &shop.url(), 20).await;
    eventually(
        "the draw, keyed by the seed alone",
        Duration::from_secs(20),
        || async { shoppers[19].status().await["state"] != "pre_queue" },
    )
    .await;
    let record = shop.fairness().await;
    assert_eq!(record["beacon"]["source"], unreachable.as_str(), "{record}");
    assert_eq!(record["beacon"]["unavailable"], true, "{record}");
    assert_eq!(record["beacon"]["randomness"], serde_json::Value::Null);

    // The public check refuses a draw anyone who read the seed early could have predicted.
    let output = tokio::process::Command::new(binary())
        .args(["verify-draw", &shop.url()])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("keyed by the seed alone"),
        "{stdout}{stderr}"
    );
}
