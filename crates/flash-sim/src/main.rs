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
    /// Play a crowd of polite buyers and greedy clients at one scarce sale behind a waiting
    /// room, and report fairness, admission order, 503s to admitted buyers, how fast the
    /// sold-out news spread, the wait estimates and the cost of a poll against /healthz.
    ///
    /// A polite buyer joins once, waits in held polls and buys once admitted; a greedy client
    /// is one buyer on several connections that never pauses. Without --url the whole
    /// pipeline starts on this machine (as `demo`), and the run ends with the sale's
    /// invariants checked once every order is written. With --compare the same crowd first
    /// meets the sale without a room (load shedding alone), and the verdict compares the two;
    /// the exit code is 1 when a verdict line fails.
    ///
    /// Examples:
    ///   seckill-sim room --compare
    ///   seckill-sim room --mode fifo --stagger-ms 2 --polite 500 --greedy 0 --pre-queue-secs 0
    ///   seckill-sim room --url http://127.0.0.1:8080 --admin-url http://127.0.0.1:8081 --rate auto
    #[command(verbatim_doc_comment)]
    Room(Box<RoomArgs>),
    /// Attack the gateway while honest buyers buy, one attack at a time, and compare the
    /// honest buyers' success rate and p99 with a clean run of the same load.
    ///
    /// The attacks: slow request bodies on the buy route, a /readyz flood, an order-status
    /// flood from one token, many tokens from one address, and order messages forged straight
    /// into the orders topic. Each comes from a client address of its own (127.0.0.66 and up);
    /// the honest buyers from many (127.0.1.x). The whole pipeline starts on this machine with
    /// a per-address limit; the exit code is 1 when a verdict line fails.
    ///
    /// Example:
    ///   seckill-sim hostile --round-secs 5 --honest-rate 500
    #[command(verbatim_doc_comment)]
    Hostile(HostileArgs),
    /// Measure the proof of work at the door: the time a client takes to solve challenges of a
    /// difficulty (`proof_of_work.max_number`), against the time the gateway takes to check a
    /// solution, on one core of this machine.
    Pow {
        /// The difficulty: the largest number a client may have to try.
        #[arg(long, default_value_t = 50_000)]
        max_number: u64,
        /// Challenges to solve.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// Print the figures as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The options of `seckill-sim hostile`.
#[derive(clap::Args)]
struct HostileArgs {
    /// Seconds of honest load per round.
    #[arg(long, default_value_t = 5)]
    round_secs: u64,
    /// Honest buys per second (open loop).
    #[arg(long, default_value_t = 500.0)]
    honest_rate: f64,
    /// Honest buyers (tokens).
    #[arg(long, default_value_t = 500)]
    honest_buyers: usize,
    /// Client addresses the honest buyers come from.
    #[arg(long, default_value_t = 100)]
    honest_addresses: usize,
    /// Requests per second of each flood.
    #[arg(long, default_value_t = 5_000.0)]
    flood_rate: f64,
    /// Connections of the slow-body attack.
    #[arg(long, default_value_t = 64)]
    slow_connections: usize,
    /// Forged order messages written to the topic.
    #[arg(long, default_value_t = 200)]
    forged: usize,
    /// The gateway's per-address limit (requests per second; the burst is twice it).
    #[arg(long, default_value_t = 200)]
    per_address_rate: u32,
    /// Write the report as JSON to this file.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
}

/// The options of `seckill-sim room`.
#[derive(clap::Args)]
struct RoomArgs {
    /// A running gateway's base URL (default: start the whole pipeline here).
    #[arg(long)]
    url: Option<String>,
    /// Its admin API (default: 8081 on the --url host).
    #[arg(long)]
    admin_url: Option<String>,
    /// Polite buyers.
    #[arg(long, default_value_t = 500)]
    polite: usize,
    /// Greedy clients (one buyer each). Half the crowd by default: a room that draws places
    /// leaves the greedy share of the units a matter of the draw, whose spread shrinks with the
    /// greedy share (a tenth of 1,000 buyers for 500 units: ±0.095 on the fairness ratio; half:
    /// ±0.032), so that the verdict's 1.1 tells the room from the draw.
    #[arg(long, default_value_t = 500)]
    greedy: usize,
    /// Connections of each greedy client.
    #[arg(long, default_value_t = 2)]
    greedy_connections: usize,
    /// Units on sale (one per buyer).
    #[arg(long, default_value_t = 500)]
    stock: i64,
    /// How the room numbers places.
    #[arg(long, default_value = "random_at_open", value_parser = ["fifo", "random_at_open"])]
    mode: String,
    /// Buyers admitted per second, or `auto`.
    #[arg(long, default_value = "400")]
    rate: String,
    /// Seconds an admission ticket lasts.
    #[arg(long, default_value_t = 60)]
    ticket_secs: u64,
    /// The crowd joins this many seconds before the opening (the pre-queue); 0: at the opening.
    #[arg(long, default_value_t = 3)]
    pre_queue_secs: u64,
    /// Milliseconds between two polite buyers' arrivals (0: all at once).
    #[arg(long, default_value_t = 0)]
    stagger_ms: u64,
    /// First run the same crowd without a room (load shedding alone) and compare.
    #[arg(long)]
    compare: bool,
    /// Seconds of each round of the polling-cost measurement (0: not measured).
    #[arg(long, default_value_t = 2.0)]
    poll_cost_secs: f64,
    /// Waiting buyers the polling-cost measurement polls for, round-robin: enough that each
    /// stays within its pace (one poll per waiting_room.poll_min_ms, a burst of three).
    #[arg(long, default_value_t = 30_000)]
    poll_cost_buyers: usize,
    /// The local pipeline's gateway.max_in_flight: small, so that this machine's crowd is
    /// larger than the gateway serves at once and load shedding happens.
    #[arg(long, default_value_t = 32)]
    max_in_flight: usize,
    /// Longest the crowd is given, in seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
    /// Print the reports as JSON too.
    #[arg(long)]
    json: bool,
    /// Write the reports as JSON to this file.
    #[arg(long)]
    output: Option<std::path::PathBuf>,
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
    if let Command::Pow {
        max_number,
        runs,
        json,
    } = &cli.command
    {
        let cost = flash_sim::pow::measure(*max_number, *runs);
        match json {
            true => println!("{}", serde_json::to_string(&cost)?),
            false => println!("{cost}"),
        }
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
        settings.log.filter = match cli.command {
            // Every forged message of its attack is a warning: the report is the output.
            Command::Hostile(_) => "error".into(),
            _ => "warn,rdkafka=error".into(),
        };
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
        Command::Room(args) => room(settings, *args).await,
        Command::Hostile(args) => hostile(settings, args).await,
        Command::Script { .. } | Command::Pow { .. } => Ok(()),
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

/// `seckill-sim hostile`: the attacks, one round each, on a pipeline started here.
async fn hostile(mut settings: settings::Settings, args: HostileArgs) -> anyhow::Result<()> {
    settings.gateway.per_address_rate_per_sec = args.per_address_rate;
    settings.gateway.per_address_burst = args.per_address_rate.saturating_mul(2);
    let stack = LocalStack::start_with(settings.clone(), true).await?;
    let plan = flash_sim::hostile::HostilePlan {
        url: stack.gateway_url(),
        admin_url: stack.admin_url(),
        secret: settings.auth.jwt_secret.expose_secret().as_bytes().to_vec(),
        bootstrap_servers: stack.settings.kafka.bootstrap_servers.clone(),
        orders_topic: stack.settings.kafka.orders_topic.clone(),
        worker_metrics: Some(format!(
            "http://127.0.0.1:{}/metrics",
            stack.worker_ops_port
        )),
        honest_rate: args.honest_rate,
        honest_buyers: args.honest_buyers,
        honest_addresses: args.honest_addresses,
        round: Duration::from_secs(args.round_secs.max(1)),
        flood_rate: args.flood_rate,
        slow_connections: args.slow_connections,
        forged: args.forged,
        per_address_rate: args.per_address_rate,
    };
    let report = flash_sim::hostile::run(plan).await;
    stack.stop().await?;
    let report = report?;
    print!("{}", report.render());
    let verdict = report.verdict();
    println!("== verdict");
    for (line, holds) in &verdict {
        println!("{} {line}", if *holds { "PASS" } else { "FAIL" });
    }
    if let Some(path) = args.output {
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if verdict.iter().any(|(_, holds)| !holds) {
        std::process::exit(1);
    }
    Ok(())
}
/// `seckill-sim room`: the crowd at a sale behind a waiting room (and, with --compare, without
/// one first), on a running gateway or on a pipeline started here.
async fn room(mut settings: settings::Settings, args: RoomArgs) -> anyhow::Result<()> {
    let rate: serde_json::Value = match args.rate.as_str() {
        "auto" => "auto".into(),
        n => n
            .parse::<u32>()
            .context("--rate must be a number of buyers per second or auto")?
            .into(),
    };
    // Many buyers of one process: the per-user rate limit guards a real shop, and scalpers
    // have many accounts.
    settings.gateway.per_user_rate_per_sec = 0;
    settings.gateway.max_in_flight = args.max_in_flight;
    let stack = match &args.url {
        Some(_) => None,
        None => Some(LocalStack::start_with(settings.clone(), true).await?),
    };
    let (url, admin_url) = match (&stack, &args.url) {
        (Some(stack), _) => (stack.gateway_url(), stack.admin_url()),
        (None, Some(url)) => {
            let url = url.trim_end_matches('/').to_owned();
            let admin = args.admin_url.clone().unwrap_or_else(|| {
                let host = url.rsplit_once(':').map_or(url.as_str(), |(host, _)| host);
                format!("{host}:8081")
            });
            (url, admin)
        }
        (None, None) => unreachable!("a stack is started when no --url is given"),
    };
    let secret = settings.auth.jwt_secret.expose_secret().as_bytes().to_vec();
    let plan = flash_sim::room::RoomPlan {
        url,
        admin_url,
        secret,
        stock: args.stock,
        polite: args.polite,
        greedy: args.greedy,
        greedy_connections: args.greedy_connections,
        admission: Some(serde_json::json!({
            "mode": args.mode,
            "rate_per_sec": rate,
            "ticket_secs": args.ticket_secs,
        })),
        pre_queue: Duration::from_secs(args.pre_queue_secs),
        stagger: Duration::from_millis(args.stagger_ms),
        timeout: Duration::from_secs(args.timeout_secs),
        poll_cost_secs: args.poll_cost_secs,
        poll_cost_buyers: args.poll_cost_buyers,
        check_sale: stack.is_some(),
    };
    let mut reports = Vec::new();
    let shedding = match args.compare {
        true => {
            let baseline = flash_sim::room::RoomPlan {
                admission: None,
                pre_queue: Duration::ZERO,
                ..plan.clone()
            };
            println!("== the crowd without a waiting room (load shedding alone)");
            let report = flash_sim::room::run(baseline).await?;
            print!("{}", report.render());
            reports.push(report.clone());
            Some(report)
        }
        false => None,
    };
    println!("== the crowd with a waiting room");
    let report = flash_sim::room::run(plan).await?;
    print!("{}", report.render());
    reports.push(report.clone());
    let verdict = report.verdict(shedding.as_ref());
    println!("== verdict");
    for (line, holds) in &verdict {
        println!("{} {line}", if *holds { "PASS" } else { "FAIL" });
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    }
    if let Some(path) = args.output {
        std::fs::write(&path, serde_json::to_vec_pretty(&reports)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(stack) = stack {
        stack.stop().await?;
    }
    if verdict.iter().any(|(_, holds)| !holds) {
        std::process::exit(1);
    }
    Ok(())
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
        Some(path) => load::Target::Get {
            path,
            headers: Vec::new(),
        },
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
        sources: Vec::new(),
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
