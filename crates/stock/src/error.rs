//! The ledger's errors, and which of them a later attempt may get past.

use crate::record::CorruptRecord;
use domain::SkuId;

/// Errors of the ledger. All of them mean "Redis cannot answer now" (503 at the edge) or a
/// reply this code does not understand (a bug).
#[derive(Debug, thiserror::Error)]
pub enum StockError {
    /// A command failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The connection could not be set up from the settings.
    #[error("redis settings: {0}")]
    Config(String),
    /// A script answered something unexpected, or a record only a script writes does not
    /// parse.
    #[error("unexpected reply from {script}: {reply}")]
    Reply {
        /// Which script.
        script: &'static str,
        /// What it said.
        reply: String,
    },
    /// A reservation record does not parse.
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A request of a bucketed sale moved units into its buyer's bucket round after round and
    /// other buyers there took them each time; it may try again.
    #[error("the stock buckets of {0} are contended; try again")]
    Contended(SkuId),
    /// The call that carried this order among others failed (see the `group` module): the
    /// error every member of the group is answered.
    #[error(transparent)]
    InGroup(std::sync::Arc<StockError>),
    /// Redis has some buckets of a bucketed sale and not the others (a shard lost its data):
    /// `seckill-ctl reconcile --rebuild` rebuilds the whole sale.
    #[error("redis has {present} of the {buckets} stock buckets of {sku}; rebuild the sale (seckill-ctl reconcile --rebuild)")]
    PartlyLost {
        /// The sale.
        sku: SkuId,
        /// Buckets Redis has.
        present: u8,
        /// Buckets the sale has.
        buckets: u8,
    },
}

impl StockError {
    /// Whether a later attempt may succeed. Only what will read the same the next time is
    /// permanent: a reservation record that does not parse (here, or in a script's `CORRUPT`
    /// reply), a reply this build does not understand, settings that cannot make a connection.
    /// Everything else, including every error Redis answers that is not ours (`OOM`,
    /// `MISCONF`, `BUSY`, `LOADING`, `READONLY`, `NOREPLICAS`, a script error), is treated as an
    /// outage worth waiting out: retrying a bug stalls visibly, skipping an outage loses work.
    pub fn is_transient(&self) -> bool {
        match self {
            StockError::Redis(error) => !matches!(
                error.kind(),
                redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType
            ),
            StockError::Contended(_) => true,
            StockError::InGroup(error) => error.is_transient(),
            StockError::Config(_)
            | StockError::Reply { .. }
            | StockError::Corrupt(_)
            | StockError::PartlyLost { .. } => false,
        }
    }

    /// The error of a call of `script`. The scripts' own error replies become what they mean:
    /// `CORRUPT` (a reservation record that does not parse, see `scripts/prelude/record.lua`)
    /// [`StockError::Corrupt`]; `BADRECORD` (another record only the scripts write, such as a
    /// transfer between buckets, that does not parse) [`StockError::Reply`].
    pub(crate) fn from_script(script: &'static str, error: redis::RedisError) -> Self {
        let detail = || error.detail().unwrap_or_default().to_owned();
        match error.code() {
            Some("CORRUPT") => StockError::Corrupt(CorruptRecord(detail())),
            Some("BADRECORD") => StockError::Reply {
                script,
                reply: detail(),
            },
            _ => StockError::Redis(error),
        }
    }
}
