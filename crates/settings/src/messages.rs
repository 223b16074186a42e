//! `[messages]`: the keys order messages and dead letters are signed with (HMAC-SHA256, see
//! `domain::signing`), so that the worker writes only orders the gateway (or the sweeper, or
//! the replayer) produced, and the replayer acts only on letters the worker wrote. The gateway,
//! the worker and the replayer need the same keys; a key rotates by listing it everywhere
//! before anyone signs with it.

use crate::error::{invalid, SettingsError};
use crate::load::DEFAULT_TOML;
use crate::{Settings, MIN_DEPLOYED_SECRET_BYTES};
use domain::signing::KeyringError;
use domain::Keyring;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `[messages]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct MessageSettings {
    /// The id of the key of `signing_keys` this service signs with.
    pub signing_key_id: String,
    /// Every key a signature is accepted from, `<key id>:<secret>[,<key id>:<secret>...]`: one
    /// string, so that one variable (one Secret key) replaces the whole list.
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub signing_keys: SecretString,
}

impl MessageSettings {
    /// The keyring these settings describe, or why they describe none; the error names the key
    /// at fault and never prints a secret.
    pub fn keyring(&self) -> Result<Keyring, SettingsError> {
        Keyring::parse(self.signing_keys.expose_secret(), &self.signing_key_id).map_err(|error| {
            let key = match &error {
                KeyringError::UnknownSigningKey { .. } => "messages.signing_key_id",
                KeyringError::Empty
                | KeyringError::Malformed { .. }
                | KeyringError::BadId { .. }
                | KeyringError::Duplicate(_)
                | KeyringError::Short(_) => "messages.signing_keys",
            };
            SettingsError::Invalid {
                key,
                problem: error.to_string(),
            }
        })
    }

    /// A list of keys that parses, holding the signing key.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        self.keyring().map(|_| ())
    }
}

impl Settings {
    /// What the gateway, the worker and the replayer (the services that sign or verify
    /// messages) check at start-up. Outside the development environments every key listed must
    /// be the deployment's own: not a development key of `config/default.toml` (anyone who
    /// reads the repository could sign an order for any buyer with it; a development key left
    /// in the list is refused as well, since the worker accepts every key listed), and at least
    /// [`MIN_DEPLOYED_SECRET_BYTES`] long.
    pub fn require_deployed_message_keys(&self) -> Result<(), SettingsError> {
        if self.is_development() {
            return Ok(());
        }
        let keys = self.messages.keyring()?;
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        let development = defaults.get::<MessageSettings>("messages")?.keyring()?;
        let problem = match keys.shares_a_secret_with(&development) {
            Some(id) => format!(
                "the secret of key {id} is a development secret printed in config/default.toml"
            ),
            None => match keys.shortest_secret() {
                (_, length) if length >= MIN_DEPLOYED_SECRET_BYTES => return Ok(()),
                (id, _) => format!(
                    "the secret of key {id} is shorter than {MIN_DEPLOYED_SECRET_BYTES} bytes"
                ),
            },
        };
        invalid(
            "messages.signing_keys",
            format!(
                "{problem}, and SECKILL_ENV is {:?} (a deployment): list keys of your own, each \
                 at least {MIN_DEPLOYED_SECRET_BYTES} random bytes, in \
                 SECKILL__MESSAGES__SIGNING_KEYS (the development keys are accepted only when \
                 SECKILL_ENV is local or test)",
                self.environment
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::load::tests::{load_as, load_with, refused};
    use crate::Settings;
    use secrecy::SecretString;

    const OWN: &str = "k2026:a-key-of-this-deployment-32-bytes-long";

    #[test]
    fn the_defaults_sign_with_the_development_key() {
        let keys = Settings::defaults().messages.keyring().unwrap();
        assert_eq!(keys.signing_key_id().as_str(), "dev");
    }

    #[test]
    fn a_list_of_keys_that_makes_no_keyring_is_refused_naming_its_key() {
        let keys = |list: &str| SecretString::from(list.to_owned());
        let error = refused(|s| s.messages.signing_keys = keys(""));
        assert!(
            error.starts_with("invalid setting `messages.signing_keys`: lists no key"),
            "{error}"
        );
        let error = refused(|s| s.messages.signing_keys = keys("dev:fifteen-bytes!!"));
        assert_eq!(
            error,
            "invalid setting `messages.signing_keys`: the secret of key dev is shorter than 16 bytes"
        );
        let error = refused(|s| s.messages.signing_key_id = "k2027".into());
        assert_eq!(
            error,
            "invalid setting `messages.signing_key_id`: \"k2027\" is not among the key ids listed (dev)"
        );
    }

    #[test]
    fn the_keys_come_from_one_variable_and_the_signing_key_id_from_another() {
        let rotating = format!("{OWN},k2025:the-key-before-it-also-32-bytes-long");
        let settings = load_as(
            "local",
            &[
                ("T__MESSAGES__SIGNING_KEYS", rotating.as_str()),
                ("T__MESSAGES__SIGNING_KEY_ID", "k2025"),
            ],
        )
        .unwrap();
        let keys = settings.messages.keyring().unwrap();
        assert_eq!(keys.signing_key_id().as_str(), "k2025");
        let ids: Vec<&str> = keys.key_ids().map(|id| id.as_str()).collect();
        assert_eq!(
            ids,
            ["k2026", "k2025"],
            "the variable replaces the default list"
        );
        assert!(!format!("{settings:?}").contains("32-bytes-long"));
    }

    #[test]
    fn a_deployment_refuses_a_development_key_even_beside_its_own_and_short_keys() {
        let checked = |vars: &[(&str, &str)]| {
            load_with(vars)
                .expect("the settings load: the services check their keys")
                .require_deployed_message_keys()
        };
        let error = checked(&[]).unwrap_err().to_string();
        assert!(
            error.starts_with(
                "invalid setting `messages.signing_keys`: the secret of key dev is a development secret"
            ),
            "{error}"
        );
        assert!(error.contains("SECKILL__MESSAGES__SIGNING_KEYS"), "{error}");
        let own = [
            ("T__MESSAGES__SIGNING_KEYS", OWN),
            ("T__MESSAGES__SIGNING_KEY_ID", "k2026"),
        ];
        checked(&own).unwrap();
        let beside = format!("{OWN},old:local-message-signing-key-change-me");
        let error = checked(&[own[1], ("T__MESSAGES__SIGNING_KEYS", beside.as_str())]).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("key old is a development secret"),
            "{error}"
        );
        let short = [
            own[1],
            ("T__MESSAGES__SIGNING_KEYS", "k2026:only-twenty-bytes-ok"),
        ];
        assert!(checked(&short)
            .unwrap_err()
            .to_string()
            .contains("key k2026 is shorter than 32 bytes"));
        for name in crate::DEVELOPMENT_ENVIRONMENTS {
            load_as(name, &[])
                .unwrap()
                .require_deployed_message_keys()
                .unwrap();
        }
    }
}
