//! The clients' TLS and SASL: built in, and a mismatch with the broker is an error, not a hang.

use settings::secrecy::SecretString;
use settings::{KafkaSecurityProtocol, SaslMechanism};
use std::time::Duration;
use testkit::tls::TestCa;
use testkit::{CapturedLog, TestContext};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_set_for_sasl_ssl_with_scram_builds_and_a_plaintext_broker_fails_it_fast() {
    let logs = CapturedLog::default();
    let mut log = settings::Settings::defaults().log;
    log.filter = "warn".into();
    let writer = logs.clone();
    telemetry::try_init_tracing(&log, move || writer.clone())
        .expect("no other test of this binary installs a global subscriber");
    let ctx = TestContext::new().await.unwrap();
    let topic = ctx.settings.kafka.orders_topic.clone();
    let ca = TestCa::new("kafka");
    let client = ca.client("seckill");
    let mut settings = ctx.settings.kafka.clone();
    settings.security.protocol = KafkaSecurityProtocol::SaslSsl;
    settings.security.sasl_mechanism = SaslMechanism::ScramSha512;
    settings.security.sasl_username = "seckill".into();
    settings.security.sasl_password = SecretString::from("s3cret".to_owned());
    settings.security.tls.ca_file = ca.ca_file();
    settings.security.tls.certificate_file = client.certificate.clone();
    settings.security.tls.key_file = client.key.clone();
    let secure = kafka::Endpoint::from_settings(&settings, None);

    // librdkafka refuses these properties at creation when it was built without OpenSSL.
    let producer = kafka::producer(&secure).unwrap();
    let config = secure.producer_config();
    assert_eq!(config.get("security.protocol"), Some("sasl_ssl"));
    assert_eq!(config.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
    assert_eq!(
        config.get("ssl.ca.location"),
        Some(ca.ca_file().to_str().unwrap())
    );
    let printed = format!("{secure:?}");
    assert!(!printed.contains("s3cret"), "{printed}");

    // The embedded broker speaks plaintext: the TLS handshake fails and the readiness check
    // says the brokers do not answer, within its timeout.
    let started = std::time::Instant::now();
    let refused = kafka::health::brokers_answer(&producer, &topic, Duration::from_secs(3)).await;
    refused.expect_err("a TLS client cannot talk to a plaintext listener");
    assert!(started.elapsed() < Duration::from_secs(10));
    // What the operator reads in the service's log: the handshake, named.
    let written = logs.text();
    assert!(written.contains("SSL handshake failed"), "{written}");

    // The same broker with the plaintext settings answers: the security settings made the
    // difference.
    let plain = kafka::producer(&ctx.endpoint()).unwrap();
    kafka::health::brokers_answer(&plain, &topic, Duration::from_secs(5))
        .await
        .unwrap();
}
