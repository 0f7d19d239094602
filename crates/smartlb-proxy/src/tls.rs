//! TLS with rustls (the `ring` provider): the listeners' server side, with certificates
//! that a configuration reload can replace without dropping a connection, and the client
//! side for `https://` backends (public or private roots, SNI, client certificates).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificates or keys.
    #[error("{0}")]
    Rustls(#[from] rustls::Error),
    /// A name cannot be used for SNI and certificate verification.
    #[error("`{0}` is not a valid TLS server name")]
    ServerName(String),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |message: String| TlsError::File {
        path: path.to_owned(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// Reads the private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.to_owned(),
        message: format!("no usable PEM private key: {e}"),
    })
}

/// A server configuration for a certificate chain and key, offering `h2` and `http/1.1`
/// by ALPN (in that order of preference).
///
/// # Errors
///
/// A file is unreadable or holds no certificate or key, or the key does not match.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The listeners' TLS settings: read for each new connection, replaced whole by
/// [`ServerTls::replace`] (certificate rotation on configuration reload); connections
/// already open keep the settings they were accepted with. Cloning shares them.
#[derive(Clone, Debug)]
pub struct ServerTls {
    current: Arc<ArcSwap<ServerConfig>>,
}

impl ServerTls {
    /// Loads `cert` and `key`.
    ///
    /// # Errors
    ///
    /// See [`server_config`].
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self::new(server_config(cert, key)?))
    }

    /// Serves `config`.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        Self {
            current: Arc::new(ArcSwap::new(config)),
        }
    }

    /// Loads `cert` and `key` again and serves them to new connections; on error the
    /// current ones stay.
    ///
    /// # Errors
    ///
    /// See [`server_config`].
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<(), TlsError> {
        self.replace(server_config(cert, key)?);
        Ok(())
    }

    /// Serves `config` to new connections.
    pub fn replace(&self, config: Arc<ServerConfig>) {
        self.current.store(config);
    }

    /// An acceptor with the current settings.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.current.load_full())
    }
}

/// How smartlb speaks TLS to backends.
#[derive(Debug, Clone, Default)]
pub struct ClientTlsOptions {
    /// PEM file of the roots backends' certificates must chain to; `None`: the bundled
    /// public roots (webpki-roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate chain and key shown to backends that ask for one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// The name sent as SNI and verified, instead of each backend's host.
    pub server_name: Option<String>,
    /// Offer `h2` by ALPN (else `http/1.1` only).
    pub h2: bool,
}

/// A client configuration for `options`.
///
/// # Errors
///
/// A file is unreadable or holds nothing usable, or rustls refuses a certificate.
pub fn client_config(options: &ClientTlsOptions) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    match &options.ca {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert)?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let mut config = match &options.client_cert {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = if options.h2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(Arc::new(config))
}

/// TLS to one backend: the client settings and the name presented (SNI) and verified.
/// Two are equal when they share the same settings and name.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
}

impl ClientTls {
    /// TLS with `config`, presenting and verifying `server_name`.
    pub fn new(config: Arc<ClientConfig>, server_name: ServerName<'static>) -> Self {
        Self {
            config,
            server_name,
        }
    }

    /// A connector with these settings.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }

    /// The name presented and verified.
    pub fn server_name(&self) -> &ServerName<'static> {
        &self.server_name
    }
}

impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.config, &other.config) && self.server_name == other.server_name
    }
}

impl Eq for ClientTls {}

/// The server name to present for a backend host (an IP address or a DNS name).
///
/// # Errors
///
/// The host is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::ServerName(host.to_owned()))
}

#[cfg(test)]
#[path = "../tests/support/pki.rs"]
mod pki;

#[cfg(test)]
mod tests {
    use super::pki::Pki;
    use super::*;

    #[test]
    fn server_and_client_configs_load_and_refuse_bad_files() {
        let pki = Pki::new();
        let (cert, key) = pki.leaf("server", &["localhost"]);
        let config = server_config(&cert, &key).unwrap();
        assert_eq!(config.alpn_protocols[0], b"h2");
        let tls = ServerTls::load(&cert, &key).unwrap();
        let (cert2, key2) = pki.leaf("other", &["localhost"]);
        tls.reload(&cert2, &key2).unwrap();
        // A failed reload keeps the current settings.
        let missing = pki.dir.path().join("missing.pem");
        let err = tls.reload(&missing, &key2).unwrap_err();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        // A key that does not go with the certificate.
        let err = server_config(&cert, &key2).unwrap_err();
        assert!(matches!(err, TlsError::Rustls(_)), "{err}");
        // Not PEM at all.
        let junk = pki.dir.path().join("junk.pem");
        std::fs::write(&junk, "hello").unwrap();
        assert!(server_config(&junk, &key).is_err());

        let client = client_config(&ClientTlsOptions {
            ca: Some(pki.ca()),
            client_cert: Some((cert.clone(), key.clone())),
            server_name: None,
            h2: true,
        })
        .unwrap();
        assert_eq!(client.alpn_protocols.len(), 2);
        let public = client_config(&ClientTlsOptions::default()).unwrap();
        assert_eq!(public.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(server_name("127.0.0.1").is_ok());
        assert!(server_name("[::1]").is_ok());
        assert!(server_name("api.internal").is_ok());
        assert!(server_name("not a name").is_err());
    }

    #[tokio::test]
    async fn a_handshake_over_loopback_negotiates_h2() {
        let pki = Pki::new();
        let (cert, key) = pki.leaf("server", &["localhost"]);
        let tls = ServerTls::load(&cert, &key).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tls.acceptor();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let stream = acceptor.accept(stream).await.unwrap();
            stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
        });
        let client = client_config(&ClientTlsOptions {
            ca: Some(pki.ca()),
            h2: true,
            ..ClientTlsOptions::default()
        })
        .unwrap();
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let connector = tokio_rustls::TlsConnector::from(client);
        let stream = connector
            .connect(server_name("localhost").unwrap(), stream)
            .await
            .unwrap();
        assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(server.await.unwrap(), Some(b"h2".to_vec()));
    }
}
