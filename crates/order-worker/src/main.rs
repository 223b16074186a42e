//! `seckill-order-worker`: consumes orders and persists them.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    let shutdown =
        telemetry::shutdown_on_signal(std::time::Duration::from_secs(settings.shutdown.grace_secs));
    let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
    let worker = order_worker::Worker::connect(&settings, broker.bootstrap()).await?;
    tracing::info!(ops_port = worker.ops_port(), "order worker starting");
    worker.run_until_stopped(shutdown).await
}
