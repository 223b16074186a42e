//! The PEM files of a TLS client, one shape for both `[redis.tls]` and `[kafka.security.tls]`:
//! checked at start-up, so that a missing file stops the service naming its key instead of
//! failing every connection later.

use crate::error::{invalid, SettingsError};
use serde::Deserialize;
use std::path::PathBuf;

/// PEM files of a TLS client: the CA that signed the server's certificate (empty = the system's
/// CAs) and, for mutual TLS, the client's certificate and key (both or neither).
#[derive(Debug, Clone, Default, Deserialize)]
#[cfg_attr(feature = "test-util", derive(serde::Serialize))]
pub struct TlsFiles {
    /// CA certificates (PEM); empty = the system's.
    #[serde(default)]
    pub ca_file: PathBuf,
    /// Client certificate (PEM) for mutual TLS; empty = none.
    #[serde(default)]
    pub certificate_file: PathBuf,
    /// The client certificate's private key (PEM).
    #[serde(default)]
    pub key_file: PathBuf,
}

impl TlsFiles {
    /// Whether any file is set.
    pub fn is_set(&self) -> bool {
        [&self.ca_file, &self.certificate_file, &self.key_file]
            .iter()
            .any(|path| !path.as_os_str().is_empty())
    }

    /// Checks that no file is set where the connection is not TLS (`used` false, `unused`
    /// saying why), that the client certificate and key come together, and that every file
    /// set can be read; `section` is the dotted prefix of the keys (`redis.tls`), named in the
    /// error.
    pub(crate) fn validate(
        &self,
        section: &'static str,
        used: bool,
        unused: &str,
    ) -> Result<(), SettingsError> {
        if self.is_set() && !used {
            return invalid(
                section,
                format!("is set, but {unused}: the files would not be used"),
            );
        }
        let files = [
            ("ca_file", &self.ca_file),
            ("certificate_file", &self.certificate_file),
            ("key_file", &self.key_file),
        ];
        if self.certificate_file.as_os_str().is_empty() != self.key_file.as_os_str().is_empty() {
            return invalid(
                section,
                "certificate_file and key_file go together (mutual TLS): set both or neither",
            );
        }
        for (name, path) in files {
            if path.as_os_str().is_empty() {
                continue;
            }
            let readable =
                std::fs::File::open(path).and_then(|file| match file.metadata()?.is_file() {
                    true => Ok(()),
                    false => Err(std::io::Error::other("not a file")),
                });
            if let Err(error) = readable {
                return invalid(section, format!("{name} {}: {error}", path.display()));
            }
        }
        Ok(())
    }
}
