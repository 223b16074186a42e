//! Why settings could not be loaded, and the one way a section's check reports a wrong key, so
//! that every message reads `invalid setting `section.key`: ...`.

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file or variable could not be read or has the wrong type.
    #[error("cannot load settings: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of its range.
    #[error("invalid setting `{key}`: {problem}")]
    Invalid {
        /// The dotted key, e.g. `kafka.partitions`.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// The error of a setting `key` whose value is wrong: `problem` says how.
pub(crate) fn invalid(key: &'static str, problem: impl Into<String>) -> Result<(), SettingsError> {
    Err(SettingsError::Invalid {
        key,
        problem: problem.into(),
    })
}

/// Refuses `value` of `key` below 1: the check most counts and sizes need.
pub(crate) fn at_least_one<T: PartialOrd + From<u8>>(
    key: &'static str,
    value: T,
) -> Result<(), SettingsError> {
    match value < T::from(1) {
        true => invalid(key, "must be at least 1"),
        false => Ok(()),
    }
}

/// Refuses `value` of `key` outside `low..=high`.
pub(crate) fn between<T: PartialOrd + std::fmt::Display + Copy>(
    key: &'static str,
    value: T,
    low: T,
    high: T,
) -> Result<(), SettingsError> {
    match (low..=high).contains(&value) {
        true => Ok(()),
        false => invalid(key, format!("must be between {low} and {high}")),
    }
}

/// Refuses `value` of `key` above `limit`, the value of the key `limit_key` it is bounded by.
pub(crate) fn not_above<T: PartialOrd>(
    key: &'static str,
    value: T,
    limit_key: &str,
    limit: T,
) -> Result<(), SettingsError> {
    match value > limit {
        true => invalid(key, format!("must not exceed {limit_key}")),
        false => Ok(()),
    }
}
