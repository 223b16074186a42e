//! The ledger over TLS: a `redis-server` of the test's own that listens only on a TLS port, with
//! certificates the test makes.

use super::{reserve, sku};
use settings::secrecy::SecretString;
use settings::{RedisSettings, Settings};
use stock::{ReserveOutcome, StockLedger};
use testkit::open_spec;
use testkit::tls::{TestCa, TlsRedis};

fn settings(url: String, ca: &TestCa) -> RedisSettings {
    let mut settings = Settings::defaults().redis;
    settings.url = SecretString::from(url);
    settings.key_prefix = testkit::unique("tls");
    settings.timeout_secs = 2;
    settings.tls.ca_file = ca.ca_file();
    settings
}

/// Whether the ledger sells over its connection: a sale of 2 units, one reservation.
async fn sells(ledger: &StockLedger) {
    let sku = sku();
    ledger.warm(&sku, &open_spec(2, 1)).await.unwrap();
    assert!(matches!(
        reserve(ledger, &sku, "u1", "k", 1).await,
        ReserveOutcome::Accepted(_)
    ));
    assert_eq!(ledger.snapshot(&sku).await.unwrap().unwrap().remaining, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rediss_url_sells_over_tls_and_refuses_a_server_its_ca_did_not_sign() {
    let ca = TestCa::new("redis");
    let server = TlsRedis::start(&ca, false);
    // The server has no plaintext port: a ledger that sells spoke TLS.
    let ledger = StockLedger::new(&settings(server.url(""), &ca)).unwrap();
    sells(&ledger).await;

    let stranger = TestCa::new("stranger");
    let ledger = StockLedger::new(&settings(server.url(""), &stranger)).unwrap();
    let refused = ledger.ping().await.unwrap_err().to_string();
    assert!(
        refused.contains("certificate") || refused.contains("UnknownIssuer"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_client_certificate_sells_and_without_either_is_refused() {
    let ca = TestCa::new("redis-mtls");
    let server = TlsRedis::start(&ca, true);
    assert_eq!(
        server.cli(&["ACL", "SETUSER", "seckill", "on", ">s3cret", "~*", "+@all"]),
        "OK"
    );
    let client = ca.client("seckill");
    let with_certificate = |credentials: &str| {
        let mut settings = settings(server.url(credentials), &ca);
        settings.tls.certificate_file = client.certificate.clone();
        settings.tls.key_file = client.key.clone();
        settings
    };

    let ledger = StockLedger::new(&with_certificate("seckill:s3cret@")).unwrap();
    sells(&ledger).await;
    let connected = server.cli(&["CLIENT", "LIST"]);
    assert!(connected.contains("user=seckill"), "{connected}");

    let wrong_password = StockLedger::new(&with_certificate("seckill:wrong@")).unwrap();
    let refused = wrong_password.ping().await.unwrap_err().to_string();
    assert!(refused.contains("authentication failed"), "{refused}");

    let no_certificate = StockLedger::new(&settings(server.url("seckill:s3cret@"), &ca)).unwrap();
    assert!(no_certificate.ping().await.is_err());
}
