//! TLS for the tests: a certificate authority the test makes, the server and client
//! certificates it signs (PEM files in a directory of their own), and a `redis-server` that
//! serves TLS with them.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A certificate authority of the test's own, with its certificate written to `ca.pem`.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    dir: PathBuf,
}

/// The PEM files of a certificate the CA signed.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    /// The certificate.
    pub certificate: PathBuf,
    /// Its private key (PKCS#8).
    pub key: PathBuf,
}

impl TestCa {
    /// A new CA (ECDSA P-256) named `name`, its files in a new directory under the temp dir.
    pub fn new(name: &str) -> TestCa {
        let dir = std::env::temp_dir().join(crate::unique(&format!("seckill-tls-{name}-")));
        std::fs::create_dir_all(&dir).expect("the certificate directory can be made");
        let mut params = CertificateParams::new(Vec::new()).expect("no names is valid");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("seckill test CA {name}"));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("a key pair");
        let certificate = params.self_signed(&key).expect("the CA signs itself");
        std::fs::write(dir.join("ca.pem"), certificate.pem()).expect("ca.pem is written");
        TestCa {
            issuer: Issuer::new(params, key),
            dir,
        }
    }

    /// The CA's certificate (PEM): what a client trusts.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A server certificate for `localhost` and `127.0.0.1`, written as `<name>.pem` and
    /// `<name>-key.pem`.
    pub fn server(&self, name: &str) -> IssuedFiles {
        self.issue(
            name,
            vec!["localhost".into(), "127.0.0.1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate for mutual TLS, written as `<name>.pem` and `<name>-key.pem`.
    pub fn client(&self, name: &str) -> IssuedFiles {
        self.issue(name, Vec::new(), ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, names: Vec<String>, usage: ExtendedKeyUsagePurpose) -> IssuedFiles {
        let mut params = CertificateParams::new(names).expect("valid subject names");
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("a key pair");
        let certificate = params
            .signed_by(&key, &self.issuer)
            .expect("the CA signs the certificate");
        let files = IssuedFiles {
            certificate: self.dir.join(format!("{name}.pem")),
            key: self.dir.join(format!("{name}-key.pem")),
        };
        std::fs::write(&files.certificate, certificate.pem()).expect("the certificate is written");
        std::fs::write(&files.key, key.serialize_pem()).expect("the key is written");
        files
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` listening only on a TLS port of loopback, with a certificate `ca` signed,
/// stopped when dropped. With `clients_need_certificates` it asks every client for a
/// certificate the same CA signed (mutual TLS).
pub struct TlsRedis {
    child: Child,
    /// The TLS port.
    pub port: u16,
    ca_file: PathBuf,
    cli_certificate: IssuedFiles,
}

impl TlsRedis {
    /// Starts the server and waits until it takes TLS connections.
    pub fn start(ca: &TestCa, clients_need_certificates: bool) -> TlsRedis {
        let server = ca.server("redis");
        let port = crate::process::free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--tls-port", &port.to_string()])
            .arg("--tls-cert-file")
            .arg(&server.certificate)
            .arg("--tls-key-file")
            .arg(&server.key)
            .arg("--tls-ca-cert-file")
            .arg(ca.ca_file())
            .args([
                "--tls-auth-clients",
                if clients_need_certificates {
                    "yes"
                } else {
                    "no"
                },
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/deps.sh installs it)");
        let redis = TlsRedis {
            child,
            port,
            ca_file: ca.ca_file(),
            cli_certificate: ca.client("redis-cli"),
        };
        redis.wait_until_it_answers();
        redis
    }

    /// The `rediss://` URL of the server, with `credentials` (`user:password@`, or empty).
    pub fn url(&self, credentials: &str) -> String {
        format!("rediss://{credentials}localhost:{}", self.port)
    }

    /// Runs `args` on the server with `redis-cli` over TLS, as the default user, and returns
    /// its answer.
    pub fn cli(&self, args: &[&str]) -> String {
        let output = self.cli_command().args(args).output();
        let output = output.expect("redis-cli runs");
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    fn cli_command(&self) -> Command {
        let mut command = Command::new("redis-cli");
        command
            .args(["-h", "localhost", "-p", &self.port.to_string(), "--tls"])
            .arg("--cacert")
            .arg(&self.ca_file)
            .arg("--cert")
            .arg(&self.cli_certificate.certificate)
            .arg("--key")
            .arg(&self.cli_certificate.key);
        command
    }

    fn wait_until_it_answers(&self) {
        let what = format!("redis-server to answer on TLS port {}", self.port);
        crate::wait_until(Duration::from_secs(10), &what, || {
            let answer = self.cli_command().arg("PING").output();
            answer.is_ok_and(|output| output.stdout.starts_with(b"PONG"))
        });
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
