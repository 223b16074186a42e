//! The operator's view of the dead-letter topic (`seckill-ctl dlq`): `inspect` lists the letters
//! the replayer has not settled yet, `replay` republishes some of them to the orders topic now.
//!
//! Both read with a throwaway consumer group from the replayer group's committed offsets to the
//! end of each partition, and neither commits anything for the replayer: the running replayer
//! still settles every letter afterwards. `replay` never republishes the letter of a forged
//! message, nor a letter no worker signed: republished, its bytes would be signed with the
//! operator's keys and written as an order. That second handling has no second effect: the worker
//! writes an order once, a compensation never overrides a written order, and a released
//! reservation stays released. To have a replay win over a compensation, stop `run` first.

use anyhow::Context;
use chrono::{DateTime, Utc};
use domain::{DeadLetter, Keyring, OrderRequested, ReasonCode};
use indicatif::{ProgressBar, ProgressStyle};
use kafka::consume::header as message_header;
use kafka::rdkafka::consumer::{Consumer, StreamConsumer};
use kafka::rdkafka::message::OwnedMessage;
use kafka::rdkafka::producer::FutureProducer;
use kafka::rdkafka::{Message, Offset, TopicPartitionList};
use settings::KafkaSettings;
use std::time::Duration;
use telemetry::TraceContext;

/// One dead letter not yet settled by the replayer group.
#[derive(Debug, Clone)]
pub struct PendingLetter {
    /// Partition of the dead-letter topic.
    pub partition: i32,
    /// Offset in it.
    pub offset: i64,
    /// Its headers, or why they cannot be read.
    pub letter: Result<DeadLetter, String>,
    /// The order, when the bytes are one.
    pub order: Option<OrderRequested>,
    /// The trace the letter carries (the order's, from the buy request on), to find every
    /// service's log lines of the order.
    pub trace: Option<TraceContext>,
    message: OwnedMessage,
}

impl PendingLetter {
    fn new(message: OwnedMessage) -> Self {
        let letter = DeadLetter::from_headers(|name| message_header(&message, name))
            .map_err(|e| e.to_string());
        let order = OrderRequested::decode(message.payload().unwrap_or_default()).ok();
        let trace = kafka::trace::carried(&message);
        Self {
            partition: message.partition(),
            offset: message.offset(),
            letter,
            order,
            trace,
            message,
        }
    }

    /// Its reason, `None` when the headers cannot be read.
    pub fn reason(&self) -> Option<ReasonCode> {
        self.letter.as_ref().ok().map(|l| l.reason)
    }

    /// How long ago it was dead-lettered.
    pub fn age(&self, now: DateTime<Utc>) -> Option<Duration> {
        let letter = self.letter.as_ref().ok()?;
        (now - letter.failed_at).to_std().ok()
    }
}

/// Reads every letter of the dead-letter topic the replayer group has not committed yet.
pub async fn pending(
    endpoint: &kafka::Endpoint,
    topics: &KafkaSettings,
) -> anyhow::Result<Vec<PendingLetter>> {
    let replayer = std::sync::Arc::new(kafka::consumer(endpoint, &topics.replayer_group)?);
    let topic = topics.dlq_topic.clone();
    let lags = {
        let replayer = replayer.clone();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            kafka::lag::topic_lag(&*replayer, &topic, Duration::from_secs(10))
        })
        .await??
    };
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for lag in lags.iter().filter(|l| l.lag() > 0) {
        assignment.add_partition_offset(&topic, lag.partition, Offset::Offset(lag.committed))?;
        remaining += lag.lag();
    }
    if remaining == 0 {
        return Ok(Vec::new());
    }
    let reader: StreamConsumer = kafka::consumer(
        endpoint,
        &format!(
            "{}-inspect-{}",
            topics.replayer_group,
            uuid::Uuid::new_v4().simple()
        ),
    )?;
    reader.assign(&assignment)?;
    let mut letters = Vec::with_capacity(remaining as usize);
    while (letters.len() as i64) < remaining {
        let message = tokio::time::timeout(Duration::from_secs(10), reader.recv())
            .await
            .context("the dead-letter topic stopped answering")??
            .detach();
        let end = lags
            .iter()
            .find(|l| l.partition == message.partition())
            .map_or(0, |l| l.end);
        if message.offset() < end {
            letters.push(PendingLetter::new(message));
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// The letters as a table: partition/offset, age, reason, order, attempts, trace id, error.
pub fn table(letters: &[PendingLetter], now: DateTime<Utc>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<12} {:>8}  {:<26} {:<48} {:>8}  {:<32}  error",
        "where", "age", "reason", "order", "attempts", "trace"
    );
    for l in letters {
        let age = l.age(now).map_or("?".to_owned(), human);
        let reason = l.reason().map_or("(unreadable)", |r| r.as_str());
        let order = l
            .order
            .as_ref()
            .map_or("(not an order)".to_owned(), |o| o.order_id.to_string());
        let (attempts, error) = match &l.letter {
            Ok(letter) => (letter.attempts.to_string(), letter.error.clone()),
            Err(problem) => ("?".to_owned(), problem.clone()),
        };
        let trace = l.trace.as_ref().map_or("-".to_owned(), |t| t.trace_id());
        let _ = writeln!(
            out,
            "{:<12} {age:>8}  {reason:<26} {order:<48} {attempts:>8}  {trace:<32}  {}",
            format!("{}/{}", l.partition, l.offset),
            error.chars().take(80).collect::<String>()
        );
    }
    let mut by_reason = std::collections::BTreeMap::new();
    for l in letters {
        *by_reason
            .entry(l.reason().map_or("(unreadable)", |r| r.as_str()))
            .or_insert(0) += 1;
    }
    let summary: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let _ = writeln!(
        out,
        "{} dead letters not yet settled{}{}",
        letters.len(),
        if summary.is_empty() { "" } else { ": " },
        summary.join(", ")
    );
    out
}

fn human(age: Duration) -> String {
    let secs = age.as_secs();
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        _ => format!("{}h", secs / 3600),
    }
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Letters of the reason, republished (or that would be, in a dry run).
    pub replayed: usize,
    /// Letters of the reason that are not orders and cannot be replayed.
    pub skipped: usize,
    /// Letters of the reason refused: letters of forged messages, or letters without a valid
    /// signature of a worker (logged each).
    pub refused: usize,
}

/// Republishes the orders of the pending letters with `reason` to the orders topic, with the
/// replay count the replayer's own retries give (the letter's attempts so far), signed with
/// `keyring`, showing a progress bar when `progress`. `dry_run` only counts them. The letters
/// of forged messages and those whose signature does not check out are refused.
pub async fn replay(
    letters: &[PendingLetter],
    reason: ReasonCode,
    producer: &FutureProducer,
    orders_topic: &str,
    keyring: &Keyring,
    dry_run: bool,
    progress: bool,
) -> anyhow::Result<ReplayReport> {
    let chosen: Vec<&PendingLetter> = letters
        .iter()
        .filter(|l| l.reason() == Some(reason))
        .collect();
    let bar = if progress && !dry_run {
        ProgressBar::new(chosen.len() as u64).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} replayed, {eta} left")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut report = ReplayReport::default();
    for letter in chosen {
        let signed = kafka::signature::dead_letter_of(&letter.message);
        let verified = kafka::signature::verify(&letter.message, keyring, &signed);
        if let Err(forgery) = &verified {
            tracing::warn!(
                partition = letter.partition,
                offset = letter.offset,
                error = %forgery,
                "dead letter without a valid signature; not replayed"
            );
        }
        if verified.is_err() || reason == ReasonCode::Forged {
            report.refused += 1;
            bar.inc(1);
            continue;
        }
        let Some(order) = &letter.order else {
            report.skipped += 1;
            bar.inc(1);
            continue;
        };
        if !dry_run {
            let replays = letter.letter.as_ref().map_or(1, |l| l.attempts.max(1));
            let trace = kafka::trace::continued(&letter.message);
            crate::republish(
                producer,
                orders_topic,
                keyring,
                &letter.message,
                replays,
                &trace,
            )
            .await
            .with_context(|| format!("replaying {}", order.order_id))?;
            tracing::info!(
                order_id = %order.order_id,
                trace_id = %trace.trace_id(),
                %reason,
                "order replayed by an operator"
            );
        }
        report.replayed += 1;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(report)
}
