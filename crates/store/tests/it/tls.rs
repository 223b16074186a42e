//! The store over TLS to the machine's PostgreSQL (its `ssl` is on, as Debian sets it up), set
//! in the URL as libpq does.

use sea_orm::{ConnectionTrait, Statement};
use settings::secrecy::SecretString;
use store::Store;
use testkit::fresh_database;
use testkit::tls::TestCa;

/// The store on a fresh database, reached at `host` with the URL parameters `query`.
async fn connect(host: &str, query: &str) -> Result<Store, store::StoreError> {
    let (url, _) = fresh_database().await.unwrap();
    let url = url.replacen("127.0.0.1", host, 1);
    let mut settings = settings::Settings::defaults().database;
    settings.url = SecretString::from(format!("{url}?{query}"));
    settings.connect_timeout_secs = 3;
    Store::connect(&settings).await
}

/// What the server says of the store's own connection: whether it is TLS.
async fn encrypted(store: &Store) -> bool {
    let db = store.connection();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "ssl").unwrap()
}

/// The server's setting `name`, read over a connection without TLS.
async fn server_setting(name: &str) -> String {
    let store = connect("127.0.0.1", "sslmode=disable").await.unwrap();
    let db = store.connection();
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            format!("SHOW {name}"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", name).unwrap()
}

#[tokio::test]
async fn sslmode_require_encrypts_and_verify_full_checks_the_server_against_the_ca() {
    assert_eq!(
        server_setting("ssl").await,
        "on",
        "the local PostgreSQL must have ssl on (Debian's default, with its snake-oil certificate)"
    );
    let plain = connect("127.0.0.1", "sslmode=disable").await.unwrap();
    assert!(!encrypted(&plain).await);
    let required = connect("127.0.0.1", "sslmode=require").await.unwrap();
    assert!(encrypted(&required).await);

    // A CA that did not sign the server's certificate: verify-full refuses the server.
    let stranger = TestCa::new("postgres-stranger");
    let refused = match connect(
        "localhost",
        &format!(
            "sslmode=verify-full&sslrootcert={}",
            stranger.ca_file().display()
        ),
    )
    .await
    {
        Ok(_) => panic!("a server the CA did not sign was accepted"),
        Err(error) => error.to_string(),
    };
    assert!(refused.contains("certificate"), "{refused}");

    // The server's own (self-signed) certificate as the CA: verified, host name included.
    let server_certificate = server_setting("ssl_cert_file").await;
    let verified = connect(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={server_certificate}"),
    )
    .await
    .unwrap();
    assert!(encrypted(&verified).await);
}
