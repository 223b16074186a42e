//! What a deployment must set that a developer's machine need not: its own secrets, https for
//! the identity provider's keys, and the issuer and audience its tokens are checked against.
//! Only the gateway checks these at start-up (it is the one service that verifies tokens and
//! payment notices), so they are apart from [`Settings::validate`], which every service runs.

use crate::error::{invalid, SettingsError};
use crate::load::DEFAULT_TOML;
use crate::Settings;
use secrecy::ExposeSecret;

/// The environments (`SECKILL_ENV`) where the development secrets of `config/default.toml` are
/// accepted: a developer's machine (`local`, the default) and the test suites (`test`). Any
/// other name (`production`, `staging`, `dev`...) is a deployment, where they are refused.
pub const DEVELOPMENT_ENVIRONMENTS: [&str; 2] = ["local", "test"];

/// The shortest secret a deployment may use, in bytes.
pub const MIN_DEPLOYED_SECRET_BYTES: usize = 32;

impl Settings {
    /// Whether this is a developer's machine or a test run, where the development secrets are
    /// accepted.
    pub fn is_development(&self) -> bool {
        DEVELOPMENT_ENVIRONMENTS.contains(&self.environment.as_str())
    }

    /// What the gateway, the one service that verifies tokens and payment notices, checks at
    /// start-up. Outside the development environments a secret it uses must be the
    /// deployment's own: not the default printed in `config/default.toml` (anyone who reads the
    /// repository could sign an admin token or a payment with it), and at least
    /// [`MIN_DEPLOYED_SECRET_BYTES`] long. With an identity provider's keys (`auth.jwks_file`)
    /// the HS256 secret is not used, and `auth.issuer` and `auth.audience` are required
    /// instead: without them a token the provider issued for any other application would do.
    pub fn require_deployed_secrets(&self) -> Result<(), SettingsError> {
        if self.is_development() {
            return Ok(());
        }
        let identity_provider = self.auth.uses_identity_provider();
        if self.auth.jwks_url.starts_with("http://") {
            return invalid(
                "auth.jwks_url",
                format!(
                    "must be https:// when SECKILL_ENV is {:?} (a deployment): keys fetched in the clear can be swapped on the way",
                    self.environment
                ),
            );
        }
        if identity_provider {
            for (key, value) in [
                ("auth.issuer", &self.auth.issuer),
                ("auth.audience", &self.auth.audience),
            ] {
                if value.is_empty() {
                    return invalid(
                        key,
                        format!(
                            "is required with an identity provider's keys (auth.jwks_url, auth.jwks_file or auth.public_key_file) when SECKILL_ENV is {:?} (a deployment): without it a token the identity provider issued for another application is accepted",
                            self.environment
                        ),
                    );
                }
            }
        }
        let defaults = config::Config::builder()
            .add_source(config::File::from_str(
                DEFAULT_TOML,
                config::FileFormat::Toml,
            ))
            .build()?;
        let secrets = [
            (
                "auth.jwt_secret",
                "SECKILL__AUTH__JWT_SECRET",
                &self.auth.jwt_secret,
            ),
            (
                "payments.webhook_secret",
                "SECKILL__PAYMENTS__WEBHOOK_SECRET",
                &self.payments.webhook_secret,
            ),
            (
                "waiting_room.ticket_secret",
                "SECKILL__WAITING_ROOM__TICKET_SECRET",
                &self.waiting_room.ticket_secret,
            ),
        ];
        for (key, variable, secret) in secrets {
            if identity_provider && key == "auth.jwt_secret" {
                continue;
            }
            let secret = secret.expose_secret();
            let problem = if defaults.get_string(key).ok().as_deref() == Some(secret) {
                "is the development default printed in config/default.toml"
            } else if secret.len() < MIN_DEPLOYED_SECRET_BYTES {
                "is shorter than 32 bytes"
            } else {
                continue;
            };
            return invalid(
                key,
                format!(
                    "{problem}, and SECKILL_ENV is {:?} (a deployment): set a secret of your own, at least 32 random bytes, in {variable} (the development secrets are accepted only when SECKILL_ENV is local or test)",
                    self.environment
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::tests::{load_as, load_with};

    /// An environment, its variables, and what the error names (`None`: no error).
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<&'a str>);

    #[test]
    fn a_deployment_refuses_the_development_secrets_and_short_ones_naming_the_key() {
        let own = "a-secret-of-this-deployment-32-bytes-long";
        let provider = ("T__AUTH__JWKS_FILE", "/etc/seckill/jwks.json");
        let issuer = ("T__AUTH__ISSUER", "https://id.example.com/");
        let audience = ("T__AUTH__AUDIENCE", "seckill");
        let webhook = ("T__PAYMENTS__WEBHOOK_SECRET", own);
        let ticket = ("T__WAITING_ROOM__TICKET_SECRET", own);
        let cases: [Case; 7] = [
            (
                "production",
                &[],
                Some("`auth.jwt_secret`: is the development default"),
            ),
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own)],
                Some("`payments.webhook_secret`"),
            ),
            (
                "staging",
                &[
                    ("T__AUTH__JWT_SECRET", "only-twenty-bytes-ok"),
                    webhook,
                    ticket,
                ],
                Some("`auth.jwt_secret`: is shorter than 32 bytes"),
            ),
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own), webhook],
                Some("`waiting_room.ticket_secret`: is the development default"),
            ),
            (
                "production",
                &[("T__AUTH__JWT_SECRET", own), webhook, ticket],
                None,
            ),
            // With an identity provider the HS256 secret is unused, and iss and aud are required.
            (
                "production",
                &[provider, webhook, ticket],
                Some("`auth.issuer`"),
            ),
            (
                "production",
                &[provider, issuer, audience, webhook, ticket],
                None,
            ),
        ];
        let development = DEVELOPMENT_ENVIRONMENTS.map(|name| (name, &[][..], None));
        for (name, vars, expected) in cases.into_iter().chain(development) {
            let checked = load_as(name, vars)
                .expect("the settings load: only the gateway checks its secrets")
                .require_deployed_secrets();
            match (checked, expected) {
                (Ok(()), None) => {}
                (Err(error), Some(expected)) => {
                    assert!(
                        error.to_string().contains(expected),
                        "{name} {vars:?}: {error}"
                    );
                }
                (checked, _) => panic!("{name} {vars:?}: {checked:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn a_jwks_url_is_https_in_a_deployment_and_needs_issuer_and_audience() {
        let secret = "a-deployment-secret-of-at-least-32-bytes!";
        let base = [
            ("T__AUTH__JWKS_URL", "https://id.example.com/jwks.json"),
            ("T__PAYMENTS__WEBHOOK_SECRET", secret),
            ("T__WAITING_ROOM__TICKET_SECRET", secret),
        ];
        let missing = load_with(&base).unwrap().require_deployed_secrets();
        assert!(missing.unwrap_err().to_string().contains("`auth.issuer`"));
        let complete = [
            base[0],
            base[1],
            base[2],
            ("T__AUTH__ISSUER", "https://id.example.com/"),
            ("T__AUTH__AUDIENCE", "seckill"),
        ];
        load_with(&complete)
            .unwrap()
            .require_deployed_secrets()
            .unwrap();
        let mut clear = complete;
        clear[0] = ("T__AUTH__JWKS_URL", "http://id.example.com/jwks.json");
        let refused = load_with(&clear).unwrap().require_deployed_secrets();
        assert!(refused
            .unwrap_err()
            .to_string()
            .contains("must be https://"));
    }
}
