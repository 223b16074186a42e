//! `[payments]`: the payment provider's webhook (the secret its notices are signed with and how
//! old a signature may be) and the payment window of a sale that names none.

use crate::error::{between, invalid, SettingsError};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// `[payments]`
#[derive(Debug, Clone, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct PaymentSettings {
    /// The secret the payment provider signs its notices with (HMAC-SHA256).
    #[cfg_attr(feature = "test-util", serde(serialize_with = "crate::export::secret"))]
    pub webhook_secret: SecretString,
    /// Seconds a signature's timestamp may be away from now.
    pub signature_tolerance_secs: u64,
    /// Payment window of a sale whose definition names none, in seconds.
    pub default_window_secs: u32,
}

impl PaymentSettings {
    /// A secret of some length, a tolerance of at most an hour, a window the domain accepts.
    pub(crate) fn validate(&self) -> Result<(), SettingsError> {
        if self.webhook_secret.expose_secret().len() < 16 {
            return invalid("payments.webhook_secret", "must be at least 16 bytes");
        }
        between(
            "payments.signature_tolerance_secs",
            self.signature_tolerance_secs,
            1,
            3_600,
        )?;
        between(
            "payments.default_window_secs",
            self.default_window_secs,
            1,
            domain::PaymentTerms::MAX_WINDOW_SECS,
        )
    }
}
