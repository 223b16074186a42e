//! Loading: the layers of the settings, later ones winning: the commented default file compiled
//! into every binary (so they start with no files at all), `config/<SECKILL_ENV>.toml` when
//! present, then the `SECKILL__SECTION__KEY` environment variables (after a `.env` file). The
//! result is validated before anyone sees it, so a service never runs on settings it refused.

use crate::error::SettingsError;
use crate::Settings;
use std::path::PathBuf;

/// The default file, compiled in so that binaries need no files to start.
pub const DEFAULT_TOML: &str = include_str!("../../../config/default.toml");

/// What the variables of the settings start with: `SECKILL__KAFKA__PARTITIONS`.
pub(crate) const VARIABLE_PREFIX: &str = "SECKILL";

/// What separates the prefix, the sections and the key in a variable's name.
pub(crate) const VARIABLE_SEPARATOR: &str = "__";

/// The variable naming the environment, and with it the overlay file.
pub(crate) const ENVIRONMENT_VARIABLE: &str = "SECKILL_ENV";

/// The variable naming the directory of the overlay file (default `config`).
const CONFIG_DIR_VARIABLE: &str = "SECKILL_CONFIG_DIR";

/// The source of the variables that start with `prefix`, read the way the loader reads them.
fn variables(prefix: &str) -> config::Environment {
    config::Environment::with_prefix(prefix)
        .prefix_separator(VARIABLE_SEPARATOR)
        .separator(VARIABLE_SEPARATOR)
}

impl Settings {
    /// Loads settings the standard way: defaults, `config/<SECKILL_ENV>.toml`, `.env`, environment.
    pub fn load() -> Result<Self, SettingsError> {
        let _ = dotenvy::dotenv();
        Self::load_layers(|name| std::env::var(name).ok(), None)
    }

    /// Loads settings as [`load`](Self::load) does in a process whose environment is
    /// `variables` and nothing else (no `.env` file): the settings a service started with them
    /// runs with.
    #[cfg(feature = "test-util")]
    pub fn load_from_variables(variables: &[(String, String)]) -> Result<Self, SettingsError> {
        let variables: config::Map<String, String> = variables.iter().cloned().collect();
        Self::load_layers(|name| variables.get(name).cloned(), Some(variables.clone()))
    }

    /// Loads the compiled-in defaults only, for tests and the dev stack to adjust in code.
    pub fn defaults() -> Self {
        Self::load_from(
            "local",
            None,
            variables(VARIABLE_PREFIX).source(Some(config::Map::new())),
        )
        .expect("the compiled-in default settings are valid")
    }

    /// The layers named by the variables `variable` looks up; `source` holds the variables
    /// themselves, or `None` for the process's environment.
    fn load_layers(
        variable: impl Fn(&str) -> Option<String>,
        source: Option<config::Map<String, String>>,
    ) -> Result<Self, SettingsError> {
        let dir = variable(CONFIG_DIR_VARIABLE).unwrap_or_else(|| "config".into());
        let env = variable(ENVIRONMENT_VARIABLE).unwrap_or_else(|| "local".into());
        Self::load_from(
            &env,
            Some(PathBuf::from(dir).join(format!("{env}.toml"))),
            variables(VARIABLE_PREFIX).source(source),
        )
    }

    fn load_from(
        name: &str,
        overlay: Option<PathBuf>,
        environment: config::Environment,
    ) -> Result<Self, SettingsError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = overlay {
            builder = builder.add_source(config::File::from(path).required(false));
        }
        let mut settings: Settings = builder.add_source(environment).build()?.try_deserialize()?;
        settings.environment = name.to_owned();
        settings.validate()?;
        Ok(settings)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The settings of the environment `name` loaded with the variables `vars`
    /// (`T__SECTION__KEY`), or why not.
    pub(crate) fn load_as(name: &str, vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let vars = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Settings::load_from(name, None, variables("T").source(Some(vars)))
    }

    /// The settings of a deployment (`production`) loaded with the variables `vars`.
    pub(crate) fn load_with(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        load_as("production", vars)
    }

    /// Why the defaults after `change` fail validation.
    pub(crate) fn refused(change: impl FnOnce(&mut Settings)) -> String {
        let mut settings = Settings::defaults();
        change(&mut settings);
        settings.validate().unwrap_err().to_string()
    }

    /// A file of the temp dir named after `name` and this process, for keys that must name a
    /// readable file (its content is not read), and its path as a variable's value.
    pub(crate) fn readable_file(name: &str) -> (PathBuf, String) {
        let file = std::env::temp_dir().join(format!("seckill-{name}-{}.pem", std::process::id()));
        std::fs::write(&file, "not read here").unwrap();
        let path = file.to_str().unwrap().to_owned();
        (file, path)
    }

    #[test]
    fn the_compiled_in_defaults_load_and_mean_embedded_mode() {
        let settings = Settings::defaults();
        assert!(settings.kafka.is_embedded());
        assert!(settings.database.is_embedded());
        assert!(settings.database.effective_url().starts_with("sqlite://"));
        assert_eq!(settings.kafka.orders_topic, domain::ORDERS_TOPIC);
        assert_eq!(settings.kafka.dlq_topic, domain::DLQ_TOPIC);
    }

    #[test]
    fn environment_variables_win_and_bad_values_name_their_key() {
        let err = load_as(
            "local",
            &[
                ("T__KAFKA__BOOTSTRAP_SERVERS", "k1:9092"),
                ("T__KAFKA__PARTITIONS", "0"),
            ],
        )
        .unwrap_err();
        assert!(err.to_string().contains("kafka.partitions"), "{err}");
        let loaded = load_as("local", &[("T__KAFKA__BOOTSTRAP_SERVERS", "k1:9092")]).unwrap();
        assert_eq!(loaded.kafka.bootstrap_servers, "k1:9092");
    }

    #[test]
    fn secrets_are_not_printed_by_debug() {
        let settings = Settings::defaults();
        let printed = format!("{settings:?}");
        assert!(!printed.contains("local-development-secret"), "{printed}");
        assert!(!printed.contains("local-webhook-secret"), "{printed}");
    }
}
