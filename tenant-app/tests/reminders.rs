//! Email reminders against a real SMTP server on loopback, real Redis and PostgreSQL, with two
//! replicas of the storefront sending: a left address gets one confirmation mail and reminders
//! only once confirmed, each mail goes once, the link in it removes the address, an address
//! nobody confirms is deleted after a day, a deal keeps at most its limit, and the deal's
//! retention deletes every address.
//!
//! The deal's start is moved by rewriting the deal file (as the operator delivers a new
//! schedule), so the 12 h and 1 h moments come within seconds.

mod common;

use std::{collections::BTreeMap, time::Duration};

use common::{client, eventually, get_json, get_text, postgres, DealFile, Storefront};
use reqwest::StatusCode;
use serde_json::{json, Value};
use timedeal_testkit::{Mail, RedisServer, SmtpServer};

const FROM: &str = "Timedeal <deals@timedeal.test>";

fn starting_in(seconds: i64) -> DealFile {
    DealFile {
        starts_in: seconds,
        ..DealFile::live("reminders-by-mail")
    }
}

async fn sign_up(base: &str, email: &str) -> (StatusCode, Value) {
    let response = client()
        .post(format!("{base}/api/reminders"))
        .json(&json!({ "email": email }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// Checks that each address got exactly one mail with this subject.
fn each_once(smtp: &SmtpServer, emails: &[String], subject: &str) {
    let seen = received(smtp);
    for email in emails {
        let key = (email.clone(), subject.to_owned());
        assert_eq!(seen.get(&key), Some(&1), "{email}: {seen:?}");
    }
}

/// The mails received so far, by recipient and subject.
fn received(smtp: &SmtpServer) -> BTreeMap<(String, String), usize> {
    let mut seen = BTreeMap::new();
    for mail in smtp.mails().unwrap() {
        *seen
            .entry((mail.to(), mail.header("subject").unwrap_or_default()))
            .or_default() += 1;
    }
    seen
}

fn mails_with(smtp: &SmtpServer, subject_start: &str) -> Vec<Mail> {
    smtp.mails()
        .unwrap()
        .into_iter()
        .filter(|m| {
            m.header("subject")
                .is_some_and(|s| s.starts_with(subject_start))
        })
        .collect()
}

/// The path of the link in `mail` that starts with `prefix` (on the storefront's public host).
fn link_in(mail: &Mail, prefix: &str) -> String {
    let text = mail.text();
    let start = text
        .find(&format!("https://deals.example.com{prefix}"))
        .unwrap_or_else(|| panic!("no {prefix} link in {}", mail.raw));
    text[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .trim_start_matches("https://deals.example.com")
        .to_owned()
}

/// Follows a confirmation mail's link as its owner does: the page, then its button.
async fn confirm(base: &str, mail: &Mail) {
    let path = link_in(mail, "/reminders/confirm?token=");
    let page = client().get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Yes, remind me"));
    let done = client().post(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(done.status(), StatusCode::OK);
    assert!(done.text().await.unwrap().contains("Confirmed"));
}

/// Waits for `count` confirmation mails, then checks no more come.
async fn confirmations(smtp: &SmtpServer, count: usize) -> Vec<Mail> {
    eventually(
        "the confirmation mails",
        Duration::from_secs(30),
        || async { mails_with(smtp, "Confirm your reminders").len() >= count },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mails = mails_with(smtp, "Confirm your reminders");
    assert_eq!(mails.len(), count, "each address gets one confirmation");
    mails
}

async fn confirmed(shop: &Storefront) -> i64 {
    let db = shop.db().await;
    sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.reminders WHERE confirmed_at IS NOT NULL",
        shop.schema
    ))
    .fetch_one(&db)
    .await
    .unwrap()
}

async fn addresses(shop: &Storefront) -> i64 {
    let db = shop.db().await;
    sqlx::query_scalar(&format!("SELECT count(*) FROM {}.reminders", shop.schema))
        .fetch_one(&db)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_reminder_goes_once_from_two_replicas_and_the_link_stops_them() {
    let smtp = SmtpServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let smtp_url = smtp.url();
    let mail_flags = ["--smtp-url", &smtp_url, "--mail-from", FROM];
    // 13 hours ahead: no mail is due yet.
    let mut deal = starting_in(13 * 3600);
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &mail_flags);
    let replica = shop.replica(&redis, &mail_flags);

    // Bad input is refused field by field and keeps nothing.
    for bad in ["", "ana", "ana@", "ana @example.com"] {
        let (code, refused) = sign_up(&shop.url(), bad).await;
        assert_eq!(code, StatusCode::BAD_REQUEST, "{bad:?}: {refused}");
        assert_eq!(refused["error"]["code"], "invalid_email");
        assert!(refused["error"]["fields"]["email"].is_string(), "{refused}");
    }
    assert_eq!(addresses(&shop).await, 0);

    // Thirty shoppers, half through each replica; one of them twice, in another case.
    let emails: Vec<String> = (0..30).map(|i| format!("shopper{i}@example.com")).collect();
    for (i, email) in emails.iter().enumerate() {
        let base = if i % 2 == 0 {
            shop.url()
        } else {
            replica.url()
        };
        let (code, answer) = sign_up(&base, email).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{answer}");
        assert_eq!(
            answer["remindersAt"].as_array().unwrap().len(),
            2,
            "{answer}"
        );
        assert_eq!(answer["confirmationNeeded"], true, "{answer}");
    }
    let (code, _) = sign_up(&replica.url(), "Shopper0@EXAMPLE.com").await;
    assert_eq!(code, StatusCode::ACCEPTED);
    assert_eq!(addresses(&shop).await, 30);

    // Each address gets one confirmation mail, the one left twice too. Opening its link
    // confirms nothing; the page's button does. The last shopper never confirms.
    let asked = confirmations(&smtp, 30).await;
    each_once(
        &smtp,
        &emails,
        "Confirm your reminders: ACME NC-700 headphones",
    );
    let unconfirmed = asked.iter().find(|m| m.to() == "shopper29@example.com");
    let page = client()
        .get(format!(
            "{}{}",
            shop.url(),
            link_in(unconfirmed.unwrap(), "/reminders/confirm?token=")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(
        confirmed(&shop).await,
        0,
        "opening the link confirms nothing"
    );
    for (i, mail) in asked.iter().enumerate() {
        if mail.to() != "shopper29@example.com" {
            let base = if i % 2 == 0 {
                shop.url()
            } else {
                replica.url()
            };
            confirm(&base, mail).await;
        }
    }
    assert_eq!(confirmed(&shop).await, 29);
    let confirmed_emails = &emails[..29];

    // The start moves to 12 h 4 s away: the 12 h mails fall due 4 s from now.
    deal.starts_in = 12 * 3600 + 4;
    shop.rewrite(&deal);
    replica.rewrite(&deal);
    eventually(
        "a 12 h reminder to every confirmed address",
        Duration::from_secs(40),
        || async { mails_with(&smtp, "Starts in 12 hours").len() >= 29 },
    )
    .await;
    // Both replicas keep looking for a while; nothing goes twice, nothing to the unconfirmed.
    tokio::time::sleep(Duration::from_secs(5)).await;
    each_once(
        &smtp,
        confirmed_emails,
        "Starts in 12 hours: ACME NC-700 headphones",
    );
    assert_eq!(mails_with(&smtp, "Starts in 12 hours").len(), 29);
    assert_eq!(smtp.mails().unwrap().len(), 30 + 29);
    let sent_by = |metrics: String| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with("timedeal_reminders_sent_total{lead=\"12h\"}"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    let metrics = |base: String| async move { get_text(&format!("{base}/metrics")).await };
    let (first, second) = (metrics(shop.url()).await, metrics(replica.url()).await);
    assert_eq!(sent_by(first.clone()) + sent_by(second.clone()), 29);

    // The mail: what, when, where to go, and how to stop, one click for mail programs.
    let mail = mails_with(&smtp, "Starts in 12 hours")
        .into_iter()
        .find(|m| m.to() == "shopper0@example.com")
        .unwrap();
    assert!(mail.header("from").unwrap().contains("deals@timedeal.test"));
    assert_eq!(
        mail.header("list-unsubscribe-post").as_deref(),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(
        mail.text().contains("https://deals.example.com/\n"),
        "{}",
        mail.raw
    );
    let link = mail.header("list-unsubscribe").unwrap();
    let link = link.trim_start_matches('<').trim_end_matches('>');
    assert!(mail.text().contains(link), "{}", mail.raw);
    let path = link.trim_start_matches("https://deals.example.com");
    assert!(path.starts_with("/reminders/unsubscribe?token="), "{link}");

    // Opening the link asks first (a link scanner removes nothing); the button removes it.
    let page = client()
        .get(format!("{}{path}", replica.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("Unsubscribe"));
    assert_eq!(addresses(&shop).await, 30);
    let removed = client()
        .post(format!("{}{path}", shop.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("List-Unsubscribe=One-Click")
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    assert!(removed.text().await.unwrap().contains("No more reminders"));
    assert_eq!(addresses(&shop).await, 29);
    // The removed address's confirmation link now says so.
    let shopper0 = asked.iter().find(|m| m.to() == "shopper0@example.com");
    let stale = client()
        .post(format!(
            "{}{}",
            shop.url(),
            link_in(shopper0.unwrap(), "/reminders/confirm?token=")
        ))
        .send()
        .await
        .unwrap();
    assert!(stale.text().await.unwrap().contains("no longer works"));
    // A forged or cut link is refused plainly.
    let forged = client()
        .post(format!("{}/reminders/unsubscribe?token=abc", shop.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // The start moves to 1 h 4 s away: the 1 h mails go, to all but the one who left.
    deal.starts_in = 3600 + 4;
    shop.rewrite(&deal);
    replica.rewrite(&deal);
    eventually(
        "a 1 h reminder to every remaining confirmed address",
        Duration::from_secs(40),
        || async { mails_with(&smtp, "Starts in 1 hour").len() >= 28 },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    each_once(
        &smtp,
        &confirmed_emails[1..],
        "Starts in 1 hour: ACME NC-700 headphones",
    );
    let seen = received(&smtp);
    assert!(
        !seen.contains_key(&(
            "shopper0@example.com".to_owned(),
            "Starts in 1 hour: ACME NC-700 headphones".to_owned()
        )),
        "{seen:?}"
    );
    assert_eq!(smtp.mails().unwrap().len(), 30 + 29 + 28);

    // The unconfirmed address is deleted once it has waited a day (here, its time of leaving
    // and of its confirmation mail are moved back a day), and no mail ever went to it but the
    // confirmation.
    let db = shop.db().await;
    sqlx::query(&format!(
        "UPDATE {}.reminders SET created_at = created_at - interval '25 hours', \
         confirmation_sent_at = confirmation_sent_at - interval '25 hours' \
         WHERE confirmed_at IS NULL",
        shop.schema
    ))
    .execute(&db)
    .await
    .unwrap();
    eventually(
        "the unconfirmed address deleted",
        Duration::from_secs(20),
        || async { addresses(&shop).await == 28 },
    )
    .await;
    assert_eq!(confirmed(&shop).await, 28);
    assert_eq!(
        received(&smtp)
            .keys()
            .filter(|(to, _)| to == "shopper29@example.com")
            .count(),
        1
    );

    // Within the last hour no reminder would come in time: said plainly.
    let (code, refused) = sign_up(&shop.url(), "late@example.com").await;
    assert_eq!(code, StatusCode::CONFLICT, "{refused}");
    assert_eq!(refused["error"]["code"], "too_late");

    // No address ever reaches a log or a metric.
    for text in [
        shop.service.log(),
        replica.service.log(),
        metrics(shop.url()).await,
        metrics(replica.url()).await,
    ] {
        assert!(!text.contains("@example.com"), "an address leaked: {text}");
    }

    // The deal ran and its retention (1 s) is over: every address is deleted.
    deal.starts_in = -20;
    deal.lasts = 10;
    deal.retention = Some("1s");
    shop.rewrite(&deal);
    replica.rewrite(&deal);
    eventually("the addresses deleted", Duration::from_secs(30), || async {
        addresses(&shop).await == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storefront_without_mail_offers_the_calendar_only() {
    let redis = RedisServer::start().unwrap();
    let deal = DealFile {
        starts_in: 13 * 3600,
        ..DealFile::live("reminders-without-mail")
    };
    let shop = Storefront::start(&redis, &postgres().url(), &deal, &[]);
    let (code, refused) = sign_up(&shop.url(), "ana@example.com").await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{refused}");
    assert_eq!(refused["error"]["code"], "email_reminders_off");
    let view = get_json(&format!("{}/api/deal", shop.url())).await;
    assert_eq!(view["emailReminders"], false);
    let page = get_text(&shop.url()).await;
    assert!(!page.contains("reminder-form") && page.contains("/reminder.ics"));
    let doc = get_json(&format!("{}/openapi.json", shop.url())).await;
    assert!(doc["paths"]["/api/reminders"].is_null());
}

/// The SMTP server down when a mail falls due: nothing is lost or marked sent; the mail goes,
/// once, when the server is back, and the outage is logged once, not every try.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reminder_due_while_the_smtp_server_is_down_goes_once_it_is_back() {
    let mut smtp = SmtpServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let smtp_url = smtp.url();
    let mut deal = DealFile {
        starts_in: 13 * 3600,
        ..DealFile::live("reminders-smtp-down")
    };
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &deal,
        &["--smtp-url", &smtp_url, "--mail-from", FROM],
    );
    let (code, _) = sign_up(&shop.url(), "ana@example.com").await;
    assert_eq!(code, StatusCode::ACCEPTED);
    let asked = confirmations(&smtp, 1).await;
    confirm(&shop.url(), &asked[0]).await;

    smtp.stop();
    deal.starts_in = 12 * 3600 + 2;
    shop.rewrite(&deal);
    // Several tries fail meanwhile (one every 2 s).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let db = shop.db().await;
    let unsent: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {}.reminders WHERE sent_12h_at IS NULL",
        shop.schema
    ))
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(unsent, 1, "a mail the server never took is not marked sent");
    let log = shop.service.log();
    assert_eq!(
        log.matches("cannot send reminders").count(),
        1,
        "the outage is said once: {log}"
    );
    assert!(!log.contains("@example.com"), "an address leaked: {log}");

    smtp.start_again().unwrap();
    eventually(
        "the reminder after the outage",
        Duration::from_secs(30),
        || async { !mails_with(&smtp, "Starts in 12 hours").is_empty() },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    each_once(
        &smtp,
        &["ana@example.com".to_owned()],
        "Starts in 12 hours: ACME NC-700 headphones",
    );
    assert_eq!(smtp.mails().unwrap().len(), 2);
    assert!(shop.service.log().contains("reminders can be sent again"));
}

/// A deal keeps at most `--reminder-limit` addresses: one beyond it is refused plainly and gets
/// no mail, while an address already kept may be left again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deal_keeps_at_most_its_limit_of_addresses() {
    let smtp = SmtpServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let smtp_url = smtp.url();
    let deal = DealFile {
        starts_in: 13 * 3600,
        ..DealFile::live("reminders-limit")
    };
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &deal,
        &[
            "--smtp-url",
            &smtp_url,
            "--mail-from",
            FROM,
            "--reminder-limit",
            "3",
        ],
    );
    for i in 0..3 {
        let (code, answer) = sign_up(&shop.url(), &format!("kept{i}@example.com")).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{answer}");
    }
    for i in 0..2 {
        let (code, refused) = sign_up(&shop.url(), &format!("extra{i}@example.com")).await;
        assert_eq!(code, StatusCode::CONFLICT, "{refused}");
        assert_eq!(refused["error"]["code"], "reminders_full");
        assert!(refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/reminder.ics"));
    }
    // Full is full for everyone: the answer tells nobody which addresses are kept.
    let (code, _) = sign_up(&shop.url(), "kept1@example.com").await;
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(addresses(&shop).await, 3);
    let asked = confirmations(&smtp, 3).await;
    assert!(asked.iter().all(|m| m.to().starts_with("kept")));
}

/// A mailbox the SMTP server refuses for good (550) is deleted rather than tried every 2 s,
/// and the addresses after it still get their mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_refused_for_good_is_deleted_and_blocks_no_one() {
    let smtp = SmtpServer::start().unwrap();
    let redis = RedisServer::start().unwrap();
    let smtp_url = smtp.url();
    let deal = DealFile {
        starts_in: 13 * 3600,
        ..DealFile::live("reminders-refused")
    };
    let shop = Storefront::start(
        &redis,
        &postgres().url(),
        &deal,
        &["--smtp-url", &smtp_url, "--mail-from", FROM],
    );
    for email in ["refused@example.com", "ana@example.com"] {
        let (code, answer) = sign_up(&shop.url(), email).await;
        assert_eq!(code, StatusCode::ACCEPTED, "{answer}");
    }
    let asked = confirmations(&smtp, 1).await;
    assert_eq!(asked[0].to(), "ana@example.com");
    eventually(
        "the refused address deleted",
        Duration::from_secs(20),
        || async { addresses(&shop).await == 1 },
    )
    .await;
    let log = shop.service.log();
    assert_eq!(log.matches("refused for good").count(), 1, "{log}");
    assert!(
        !log.contains("refused@example.com"),
        "an address leaked: {log}"
    );
}
