//! A missing PostgreSQL is an error that says how to install it, never a skipped test.
//! (Its own test binary: it changes the process environment.)

use timedeal_testkit::{Error, PostgresServer};

#[test]
fn missing_postgres_fails_with_the_install_hint() {
    std::env::set_var("TIMEDEAL_PG_BIN", "/nonexistent/postgresql/bin");
    let error = match PostgresServer::start() {
        Ok(_) => panic!("a server started from a directory that does not exist"),
        Err(error) => error,
    };
    assert!(matches!(error, Error::Missing { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("make setup"), "{message}");
    assert!(message.contains("apt-get install postgresql"), "{message}");
}
