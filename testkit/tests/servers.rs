//! The harness against the real servers: what is written can be read back, and stopping a server
//! really stops it.

use std::net::{Ipv4Addr, TcpStream};

use timedeal_testkit::{PostgresServer, RedisServer};

#[tokio::test]
async fn redis_stores_and_returns_a_value() {
    let server = RedisServer::start().expect("start redis-server");
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SET")
        .arg("deal:stock")
        .arg(42)
        .query_async(&mut conn)
        .await
        .unwrap();
    let stock: i64 = redis::cmd("DECR")
        .arg("deal:stock")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(stock, 41);
    let back: i64 = redis::cmd("GET")
        .arg("deal:stock")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(back, 41);
}

#[tokio::test]
async fn postgres_commits_and_returns_rows() {
    let server = PostgresServer::start().expect("start PostgreSQL");
    let pool = sqlx::PgPool::connect(&server.url()).await.unwrap();
    sqlx::query("CREATE SCHEMA deal_tea")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("CREATE TABLE deal_tea.orders (id bigserial PRIMARY KEY, shopper text NOT NULL, qty int NOT NULL)")
        .execute(&pool)
        .await
        .unwrap();
    for (shopper, qty) in [("ana", 1), ("bo", 2)] {
        sqlx::query("INSERT INTO deal_tea.orders (shopper, qty) VALUES ($1, $2)")
            .bind(shopper)
            .bind(qty)
            .execute(&pool)
            .await
            .unwrap();
    }
    let rows: Vec<(String, i32)> =
        sqlx::query_as("SELECT shopper, qty FROM deal_tea.orders ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, [("ana".to_string(), 1), ("bo".to_string(), 2)]);
    pool.close().await;
}

#[test]
fn two_servers_of_each_kind_run_side_by_side() {
    let (a, b) = (RedisServer::start().unwrap(), RedisServer::start().unwrap());
    assert_ne!(a.port(), b.port());
    let (p, q) = (
        PostgresServer::start().unwrap(),
        PostgresServer::start().unwrap(),
    );
    assert_ne!(p.port(), q.port());
}

#[test]
fn dropping_a_server_stops_it_and_removes_its_directory() {
    let redis = RedisServer::start().unwrap();
    let postgres = PostgresServer::start().unwrap();
    let ports = [redis.port(), postgres.port()];
    let dirs = [redis.dir().to_owned(), postgres.dir().to_owned()];
    assert!(ports
        .iter()
        .all(|&p| TcpStream::connect((Ipv4Addr::LOCALHOST, p)).is_ok()));
    drop(redis);
    drop(postgres);
    for port in ports {
        assert!(
            TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err(),
            "port {port} still answers after drop"
        );
    }
    for dir in dirs {
        assert!(!dir.exists(), "{} was left behind", dir.display());
    }
}
