//! Settings written back as the environment variables the loader reads (feature `test-util`):
//! how a test starts a service as a separate process on settings it adjusted in code. The
//! variables are derived from the settings' `Serialize`, so a key added to a section is carried
//! with no list to keep up to date. Secrets are written in the clear, which is why only test
//! support turns this on.

use crate::load::{ENVIRONMENT_VARIABLE, VARIABLE_PREFIX, VARIABLE_SEPARATOR};
use crate::Settings;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

/// Why settings cannot be written as environment variables.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A value does not serialize (a path that is not UTF-8).
    #[error("settings do not serialize: {0}")]
    Serialize(#[from] serde_json::Error),
    /// A value no variable can carry to the loader.
    #[error("`{key}` cannot be carried in an environment variable: {problem}")]
    Unrepresentable {
        /// The dotted key, e.g. `kafka.client.queue.buffering.max.ms`.
        key: String,
        /// Why not.
        problem: &'static str,
    },
}

/// Serializes a secret in the clear: the variables must carry it to the process they start.
pub(crate) fn secret<S: serde::Serializer>(
    secret: &SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl Settings {
    /// The variables (`SECKILL_ENV` and one `SECKILL__SECTION__KEY` per key) that make
    /// [`Settings::load`] return these settings when no file overrides them. A `None` is left
    /// out (it loads as the default file's value). A list, or a map key the loader would read
    /// as another key (`kafka.client` properties have dots in their names), is an error: no
    /// variable carries it.
    pub fn environment_variables(&self) -> Result<Vec<(String, String)>, ExportError> {
        let mut variables = vec![(ENVIRONMENT_VARIABLE.to_owned(), self.environment.clone())];
        flatten(&mut vec![], &serde_json::to_value(self)?, &mut variables)?;
        Ok(variables)
    }
}

/// Appends the variable of every key below `path` in `value` to `variables`.
fn flatten(
    path: &mut Vec<String>,
    value: &Value,
    variables: &mut Vec<(String, String)>,
) -> Result<(), ExportError> {
    let text = match value {
        Value::Object(map) => {
            for (key, value) in map {
                path.push(key.clone());
                if !is_variable_segment(key) {
                    return Err(ExportError::Unrepresentable {
                        key: path.join("."),
                        problem: "the loader reads variable names in lower case, split at `__`, \
                                  so a key must be lower-case letters, digits, `-` and single `_`",
                    });
                }
                flatten(path, value, variables)?;
                path.pop();
            }
            return Ok(());
        }
        Value::Array(_) => {
            return Err(ExportError::Unrepresentable {
                key: path.join("."),
                problem: "a list, which the loader reads from no variable",
            })
        }
        Value::Null => return Ok(()),
        Value::String(text) => text.clone(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
    };
    let mut name = VARIABLE_PREFIX.to_owned();
    for segment in path.iter() {
        name.push_str(VARIABLE_SEPARATOR);
        name.push_str(&segment.to_uppercase());
    }
    variables.push((name, text));
    Ok(())
}

/// Whether `key` comes back whole from a variable name: the loader lower-cases the name and
/// splits it at every `__` (a trailing `_` would merge into the separator after it), and reads
/// a `.` as one more level.
fn is_variable_segment(key: &str) -> bool {
    !key.is_empty()
        && !key.contains(VARIABLE_SEPARATOR)
        && !key.ends_with('_')
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}
