//! `seckill-sim`: the flash-sale simulator (`demo`) and the all-in-one local stack (`stack`).

use anyhow::Context;
use clap::{Parser, Subcommand};
use flash_sim::{load, stack::LocalStack, Scenario};
use settings::secrecy::ExposeSecret;
use std::time::Duration;

/// Runs seckill on one machine. Settings come from config/default.toml (compiled in),
/// config/$SECKILL_ENV.toml and SECKILL__* variables; with none set, Kafka is an embedded
/// broker, the database an SQLite file and Redis the local one (started if none answers).
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a flash sale end to end and print a verdict; exits 1 if an invariant breaks.
    ///
    /// A first crowd buys; a share of them pay as soon as their orders are written; the other
    /// orders expire after the payment window and their units go back on sale (some of those
    /// buyers pay late and are refused); a second crowd buys the returned units and pays.
    Demo(DemoArgs),
    /// Start the whole pipeline and keep it running until Ctrl-C.
    Stack {
        /// Leave the order worker out: orders stay in the topic until a worker started on its
        /// own (`seckill-order-worker` with the printed `kafka` address) drains them.
        #[arg(long)]
        without_worker: bool,
    },
    /// Print the Lua one of the stock ledger's scripts runs in Redis (its header, shared
    /// preludes and body), to call it outside the ledger: `make bench` loads `reserve` into
    /// Redis and runs it under redis-benchmark as the accept path's ceiling.
    Script {
        /// The script.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(stock::SCRIPT_NAMES))]
        name: String,
    },
    /// Send load at a gateway (this machine's `seckill-sim stack`, or your own deployment) and
    /// report answers per second and latency percentiles per outcome.
    ///
    /// Closed loop by default: every connection sends its next request as soon as the last
    /// is answered. With --rate, open loop: requests are due at a constant rate whatever the
    /// answers do, and latency counts from the due time, so queueing is not hidden.
    ///
    /// Buyer tokens are made before the run: signed with the settings' `auth.jwt_secret`
    /// (SECKILL__AUTH__JWT_SECRET), or read from --token-file for a deployment whose secret
    /// you do not hold. Every request has a new Idempotency-Key.
    ///
    /// Examples:
    ///   seckill-sim load --url http://127.0.0.1:8080 --admin-url http://127.0.0.1:8081 --create-sales 1 --stock 0 --duration 10
    ///   seckill-sim load --url http://gateway:8080 --sku phone-1 --token-file tokens.txt --rate 5000 --duration 30
    ///   seckill-sim load --url http://127.0.0.1:8080 --get /healthz --duration 10
    #[command(verbatim_doc_comment)]
    Load(Box<LoadArgs>),
}

/// The options of `seckill-sim load`.
/// The flash sale `demo` simulates.
#[derive(clap::Args)]
struct DemoArgs {
    /// Units on sale.
    #[arg(long, default_value_t = 1_000)]
    stock: i64,
    /// Most units one buyer may hold.
    #[arg(long, default_value_t = 2)]
    per_user_limit: i64,
    /// Distinct buyers.
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Requests in all (first orders, retries, second orders, over-limit and malformed).
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// Seed of the request mix.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds to wait for the pipeline to drain.
    #[arg(long, default_value_t = 120)]
    drain_timeout: u64,
    /// Seconds buyers have to pay; unpaid orders then expire and their units go back on sale.
    #[arg(long, default_value_t = 10)]
    payment_window_secs: i64,
    /// Share of the first crowd's orders that are paid in time (0 to 1).
    #[arg(long, default_value_t = 0.7)]
    pay_share: f64,
    /// Buyers who did not pay who send their payment after the window closed (refused).
    #[arg(long, default_value_t = 100)]
    late_payers: usize,
    /// Buyers of the second crowd, who buy the units that came back (and pay).
    #[arg(long, default_value_t = 2_000)]
    latecomers: usize,
    /// Stock buckets the sale's units are split into in Redis, 1 to 64 (a hot SKU on a
    /// Redis Cluster spreads over its primaries with more than one).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    buckets: u8,
    /// Print the verdict as JSON too.
    #[arg(long)]
    json: bool,
}

impl DemoArgs {
    /// The scenario these options describe.
    fn scenario(&self) -> anyhow::Result<Scenario> {
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.pay_share),
            "--pay-share must be between 0 and 1"
        );
        Ok(Scenario {
            stock: self.stock,
            per_user_limit: self.per_user_limit,
            users: self.users,
            requests: self.requests,
            concurrency: self.concurrency,
            seed: self.seed,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            progress: true,
            payment_window_secs: self.payment_window_secs,
            pay_share: self.pay_share,
            late_payers: self.late_payers,
            latecomers: self.latecomers,
            buckets: self.buckets,
            ..Scenario::default()
        })
    }
}

#[derive(clap::Args)]
struct LoadArgs {
    /// Gateway base URL (plain HTTP; put the generator beside the gateway, not behind TLS).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A SKU on sale to buy; repeat for several (requests go round-robin).
    #[arg(long = "sku")]
    skus: Vec<String>,
    /// The gateway's admin API, for --create-sales (`http.admin_port`; default: 8081 on the
    /// --url host).
    #[arg(long)]
    admin_url: Option<String>,
    /// Put this many fresh SKUs on sale first (admin API) and buy those.
    #[arg(long)]
    create_sales: Option<usize>,
    /// Name the created sales <PREFIX>-0, <PREFIX>-1, ... (default: a fresh name per run).
    #[arg(long)]
    sale_prefix: Option<String>,
    /// Stock of each created sale (0 = the sold-out path).
    #[arg(long, default_value_t = 1_000_000_000)]
    stock: i64,
    /// Per-buyer limit of each created sale (at most 1000; with the default 10,000 buyers,
    /// the accept path lasts 10 million orders).
    #[arg(long, default_value_t = 1_000)]
    per_user_limit: i64,
    /// Stock buckets of each created sale, 1 to 64 (a hot SKU on a Redis Cluster).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=64))]
    buckets: u8,
    /// Admin token for --create-sales (default: signed with the settings' secret).
    #[arg(long, env = "SECKILL_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Distinct buyers, signed with the settings' secret (requests go round-robin).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Buyer tokens, one per line, instead of signing them.
    #[arg(long)]
    token_file: Option<std::path::PathBuf>,
    /// GET this path instead of buying (e.g. /healthz: the trivial handler, a ceiling).
    #[arg(long)]
    get: Option<String>,
    /// Units per order.
    #[arg(long, default_value_t = 1)]
    quantity: u32,
    /// Open HTTP/1.1 keep-alive connections.
    #[arg(long, default_value_t = 128)]
    connections: usize,
    /// Open loop at this many requests per second (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many requests.
    #[arg(long)]
    requests: Option<u64>,
    /// Stop after this many seconds (default 10 when --requests is not given).
    #[arg(long)]
    duration: Option<f64>,
    /// Print the report as JSON too.
    #[arg(long)]
    json: bool,
    /// Write the report as JSON to this file.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Command::Script { name } = &cli.command {
        let source = stock::script_source(name).context("no such script")?;
        print!("{source}");
        return Ok(());
    }
    let mut settings = settings::Settings::load().context("loading settings")?;
    if std::env::var_os("SECKILL__HTTP__PORT").is_none() {
        settings.http.port = 0;
    }
    if std::env::var_os("SECKILL__HTTP__ADMIN_PORT").is_none() {
        settings.http.admin_port = 0;
    }
    if std::env::var_os("SECKILL__LOG__FILTER").is_none() && std::env::var_os("RUST_LOG").is_none()
    {
        settings.log.filter = "warn,rdkafka=error".into();
    }
    telemetry::init_tracing(&settings.log);
    match cli.command {
        Command::Demo(args) => {
            let scenario = args.scenario()?;
            // The demo's crowd is many buyers; the per-user rate limit guards a real shop.
            settings.gateway.per_user_rate_per_sec = 0;
            let verdict = flash_sim::demo(settings, &scenario).await?;
            println!("{}", verdict.render());
            if args.json {
                println!("{}", serde_json::to_string_pretty(&verdict)?);
            }
            if !verdict.holds() {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Load(args) => load(&settings, *args).await,
        Command::Script { .. } => Ok(()),
        Command::Stack { without_worker } => {
            let stack = LocalStack::start_with(settings, !without_worker).await?;
            let secret = stack
                .settings
                .auth
                .jwt_secret
                .expose_secret()
                .as_bytes()
                .to_vec();
            println!("gateway        {}", stack.gateway_url());
            println!(
                "admin api      {}  (/v1/admin/...; not on the public port)",
                stack.admin_url()
            );
            println!(
                "api docs       {}/docs/  (OpenAPI: {}/openapi.json)",
                stack.gateway_url(),
                stack.gateway_url()
            );
            if stack.worker_ops_port != 0 {
                println!(
                    "worker ops     http://127.0.0.1:{}/metrics",
                    stack.worker_ops_port
                );
            }
            println!(
                "replayer ops   http://127.0.0.1:{}/metrics",
                stack.replayer_ops_port
            );
            println!("kafka          {}", stack.settings.kafka.bootstrap_servers);
            println!(
                "admin token    {}",
                gateway::auth::sign(&secret, "operator", Some("admin"), 86_400)
            );
            println!(
                "buyer token    {}  (sub = alice)",
                gateway::auth::sign(&secret, "alice", None, 86_400)
            );
            println!(
                "payments       POST {}/v1/payments, signed with payments.webhook_secret (docs/http-api.md: \"Paying orders\")",
                stack.gateway_url()
            );
            println!("Ctrl-C stops everything.");
            telemetry::terminate_signal().await;
            stack.stop().await
        }
    }
}

/// `seckill-sim load`: builds the plan (signing the tokens, creating the sales), runs it, reports.
async fn load(settings: &settings::Settings, args: LoadArgs) -> anyhow::Result<()> {
    let LoadArgs {
        url,
        admin_url,
        mut skus,
        create_sales,
        sale_prefix,
        stock,
        per_user_limit,
        buckets,
        admin_token,
        users,
        token_file,
        get,
        quantity,
        connections,
        rate,
        requests,
        duration,
        json,
        output,
        quiet,
    } = args;
    let url = url.trim_end_matches('/').to_owned();
    let address = url
        .strip_prefix("http://")
        .context("--url must start with http://")?
        .to_owned();
    let admin_url = match admin_url {
        Some(admin_url) => admin_url.trim_end_matches('/').to_owned(),
        None => {
            let host = address
                .rsplit_once(':')
                .map_or(address.as_str(), |(host, _)| host);
            format!("http://{host}:8081")
        }
    };
    let secret = settings.auth.jwt_secret.expose_secret().as_bytes().to_vec();
    let run_id = format!("load-{}", uuid::Uuid::now_v7().simple());
    let target = match get {
        Some(path) => load::Target::Get { path },
        None => {
            if let Some(count) = create_sales {
                let token = admin_token.unwrap_or_else(|| {
                    gateway::auth::sign(&secret, "load-admin", Some("admin"), 3_600)
                });
                for n in 0..count {
                    let prefix = sale_prefix.as_deref().unwrap_or(&run_id);
                    let sku = domain::SkuId::parse(format!("{prefix}-{n}"))?;
                    flash_sim::put_sale(&admin_url, &token, &sku, stock, per_user_limit, buckets)
                        .await?;
                    skus.push(sku.to_string());
                }
            }
            let tokens = match token_file {
                Some(path) => std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .lines()
                    .map(str::trim)
                    .filter(|line| !line.is_empty())
                    .map(load::bearer)
                    .collect::<anyhow::Result<Vec<_>>>()?,
                None => (0..users.max(1))
                    .map(|u| {
                        load::bearer(&gateway::auth::sign(
                            &secret,
                            &format!("{run_id}-buyer-{u}"),
                            None,
                            3_600,
                        ))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?,
            };
            load::Target::Buy {
                skus,
                tokens,
                quantity,
            }
        }
    };
    let plan = load::Plan {
        address,
        target,
        connections,
        rate,
        until: match (requests, duration) {
            (Some(requests), None) => load::Until::Requests(requests),
            (None, None) => load::Until::Elapsed(Duration::from_secs(10)),
            (requests, Some(secs)) => {
                let duration = Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .context("--duration must be a positive number of seconds")?;
                match requests {
                    Some(requests) => load::Until::First(requests, duration),
                    None => load::Until::Elapsed(duration),
                }
            }
        },
        run_id,
        progress: !quiet,
    };
    let report = load::run(plan).await?;
    print!("{}", report.render());
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    }
    if let Some(path) = output {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
