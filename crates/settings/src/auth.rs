//! `[auth]`: how the gateway verifies tokens, with the HS256 secret or with an identity
//! provider's published keys (one source of them), and which claim names the admin role. The
//! checks that only a deployment needs (https, issuer and audience) are in `deployment`.

use crate::error::{between, invalid, not_above, SettingsError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::PathBuf;

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct AuthSettings {
    /// HS256 secret.
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub jwt_secret: SecretString,
    /// Clock skew tolerance in seconds.
    pub leeway_secs: u64,
    /// Oldest token accepted, counted from its `iat`, in seconds, whatever its `exp` says.
    pub max_token_age_secs: u64,
    /// A JWKS document of the identity provider's public keys (empty: HS256 with the secret).
    pub jwks_file: PathBuf,
    /// The identity provider's JWKS URL, fetched instead of a file (empty: none).
    #[serde(default)]
    pub jwks_url: String,
    /// One public key (PEM) of the identity provider, instead of a JWKS document (empty: none).
    #[serde(default)]
    pub public_key_file: PathBuf,
    /// The algorithm tokens signed with `public_key_file`'s key use.
    pub public_key_algorithm: String,
    /// Seconds between two reads of the JWKS document (file or URL).
    pub jwks_refresh_secs: u64,
    /// Fewest seconds between two reads when tokens name a key the document does not have.
    pub jwks_min_refetch_secs: u64,
    /// Required `iss` (empty: not checked).
    pub issuer: String,
    /// Required `aud` (empty: not checked).
    pub audience: String,
    /// The claim naming the caller's role (a string, or a list of strings).
    pub role_claim: String,
    /// The role that opens the admin API.
    pub admin_role: String,
}

impl AuthSettings {
    /// Whether tokens are an identity provider's, verified with its published keys
    /// (`jwks_url`, `jwks_file` or `public_key_file`), rather than HS256 with `jwt_secret`.
    pub fn uses_identity_provider(&self) -> bool {
        self.identity_provider_key_sources() > 0
    }

    /// How many of the identity provider's key sources are set (`jwks_url`, `jwks_file`,
    /// `public_key_file`): at most one may be.
    fn identity_provider_key_sources(&self) -> usize {
        [
            !self.jwks_url.is_empty(),
            !self.jwks_file.as_os_str().is_empty(),
            !self.public_key_file.as_os_str().is_empty(),
        ]
        .into_iter()
        .filter(|set| *set)
        .count()
    }

    /// A secret of some length, one source of keys, a URL that is one, and refresh intervals
    /// that bound how often the provider is asked.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.jwt_secret.expose_secret().len() < 16 {
            return invalid("auth.jwt_secret", "must be at least 16 bytes");
        }
        if self.identity_provider_key_sources() > 1 {
            return invalid(
                "auth.jwks_url",
                "auth.jwks_url, auth.jwks_file and auth.public_key_file: set one source of keys",
            );
        }
        let jwks_url = self.jwks_url.as_str();
        if !jwks_url.is_empty()
            && !jwks_url.starts_with("https://")
            && !jwks_url.starts_with("http://")
        {
            return invalid("auth.jwks_url", "must be an https:// URL");
        }
        between("auth.jwks_refresh_secs", self.jwks_refresh_secs, 10, 86_400)?;
        between(
            "auth.max_token_age_secs",
            self.max_token_age_secs,
            60,
            30 * 86_400,
        )?;
        if self.jwks_min_refetch_secs == 0 {
            return invalid(
                "auth.jwks_min_refetch_secs",
                "must be at least 1: tokens naming unknown keys cost nothing to send",
            );
        }
        not_above(
            "auth.jwks_min_refetch_secs",
            self.jwks_min_refetch_secs,
            "auth.jwks_refresh_secs",
            self.jwks_refresh_secs,
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::load::tests::{load_with, refused};

    #[test]
    fn a_refetch_interval_of_zero_and_two_sources_of_keys_are_refused_naming_the_key() {
        let error = refused(|s| s.auth.jwks_min_refetch_secs = 0);
        assert!(error.contains("`auth.jwks_min_refetch_secs`"), "{error}");
        let both = load_with(&[
            ("T__AUTH__JWKS_URL", "https://id.example.com/jwks.json"),
            ("T__AUTH__JWKS_FILE", "/etc/jwks.json"),
        ]);
        assert!(both.unwrap_err().to_string().contains("`auth.jwks_url`"));
    }
}
