//! `seckill-gateway`: the buyer and admin HTTP API.

use anyhow::Context;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = settings::Settings::load().context("loading settings")?;
    telemetry::init_tracing(&settings.log);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = telemetry::terminate_signal();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        signalled.await;
        stop.cancel();
    });
    let broker = kafka::LocalBroker::for_settings(&settings.kafka).await?;
    let deps = gateway::Dependencies::connect(&settings, broker.bootstrap()).await?;
    let app = gateway::Application::build(&settings, deps)?;
    tracing::info!(port = app.port(), "gateway listening");
    app.run_until_stopped(shutdown).await
}
