//! podnet-apiserver: the Kubernetes API server that the stock kubectl and
//! client libraries talk to. HTTPS (HTTP/1.1 and h2) with bearer-token
//! authentication, discovery (legacy and aggregated), OpenAPI v2/v3, the REST
//! verbs with defaults, validation, strict field checking, patches and
//! server-side apply, watches, Tables, and the pod streaming subresources
//! proxied to node agents. Objects are stored in a `podnet_store::Store`.

mod certs;
mod discovery;
mod error;
mod kubernetes_service;
mod list_body;
mod memory;
mod objects;
mod protobuf;
mod proxy;
mod raw;
mod request;
mod rest;
mod server;
pub mod service_alloc;
mod watch;

pub use error::ApiError;
pub use proxy::AGENT_ENDPOINT_ANNOTATION;

use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use server::ServerState;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// How to run a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Holds state.db, the CA, the server certificate, the token and the kubeconfig.
    pub data_dir: PathBuf,
    /// Where to listen; port 0 picks a free port (the kubeconfig names the real one).
    pub listen: SocketAddr,
    /// Additional IP SANs for the server certificate.
    pub extra_sans: Vec<IpAddr>,
}

impl ServerConfig {
    /// The default listen address, `127.0.0.1:6443`.
    pub fn default_listen() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 6443)
    }
}

/// An opened server: store open, credentials in place, socket bound.
pub struct Server {
    state: Arc<ServerState>,
    listener: std::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    kubeconfig_path: PathBuf,
    local_addr: SocketAddr,
    advertise_address: Option<SocketAddr>,
}

impl Server {
    /// Open the store, create the CA, certificates, token and kubeconfig on
    /// first start (reusing the CA and token afterwards), bind the socket and
    /// create the bootstrap namespaces.
    pub fn open(config: ServerConfig) -> Result<Server, ApiError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| ApiError::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let store = podnet_store::SqliteStore::open(config.data_dir.join("state.db"))?;
        let listener = std::net::TcpListener::bind(config.listen)
            .map_err(|e| ApiError::Listen(format!("bind {}: {e}", config.listen)))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| ApiError::Listen(e.to_string()))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| ApiError::Listen(e.to_string()))?;
        let credentials =
            certs::ensure_credentials(&config.data_dir, local_addr.ip(), &config.extra_sans)?;
        let client_host = if local_addr.ip().is_unspecified() {
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        } else {
            local_addr.ip()
        };
        let server_address = SocketAddr::new(client_host, local_addr.port()).to_string();
        let kubeconfig_path = certs::write_kubeconfig(
            &config.data_dir,
            &certs::kubeconfig(
                &format!("https://{server_address}"),
                &credentials.ca_cert_pem,
                &credentials.token,
            ),
        )?;
        let tls = tls_config(&credentials)?;
        let store: Arc<dyn podnet_store::Store> = Arc::new(store);
        let rest = rest::Rest {
            services: Arc::new(rest::load_service_allocator(store.as_ref())?),
            store,
            watch_lines: Arc::default(),
        };
        rest.bootstrap()?;
        Ok(Server {
            state: Arc::new(ServerState {
                rest,
                token: credentials.token,
                server_address,
                ca_cert_pem: credentials.ca_cert_pem,
            }),
            listener,
            tls,
            kubeconfig_path,
            local_addr,
            advertise_address: None,
        })
    }

    /// The address pods reach this server at (the `kubernetes` Service's
    /// endpoint); the bound address when not set. Give its IP as an extra
    /// SAN in [`ServerConfig`] too, so clients dialing it verify the server.
    pub fn with_advertise_address(mut self, address: SocketAddr) -> Server {
        self.advertise_address = Some(address);
        self
    }

    /// `DATA_DIR/kubeconfig`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.kubeconfig_path.clone()
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accept connections until `shutdown` completes; then stop accepting and
    /// close the open connections (watches included).
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Result<(), ApiError> {
        memory::limit_allocator_memory();
        let listener = tokio::net::TcpListener::from_std(self.listener)
            .map_err(|e| ApiError::Listen(e.to_string()))?;
        let advertised = self.advertise_address.unwrap_or(self.local_addr);
        {
            let rest = self.state.rest.clone();
            tokio::task::spawn_blocking(move || rest.ensure_kubernetes_service(advertised))
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))??;
        }
        // History older than the retention is forgotten in the background;
        // watchers that fall further behind get 410 Expired and relist.
        let _compaction = podnet_store::spawn_auto_compaction(
            self.state.rest.store.clone(),
            podnet_store::Retention::default(),
            std::time::Duration::from_secs(60),
        )?;
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls);
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (tcp, peer) = match accepted {
                        Ok(pair) => pair,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let state = self.state.clone();
                    connections.spawn(async move {
                        let tls = match acceptor.accept(tcp).await {
                            Ok(tls) => tls,
                            Err(e) => {
                                tracing::debug!(%peer, error = %e, "tls handshake failed");
                                return;
                            }
                        };
                        let service = hyper::service::service_fn(move |request| {
                            server::handle(state.clone(), request)
                        });
                        let builder = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        );
                        if let Err(e) = builder
                            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), service)
                            .await
                        {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    });
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

fn tls_config(credentials: &certs::Credentials) -> Result<Arc<rustls::ServerConfig>, ApiError> {
    let certificate_error = |e: &dyn std::fmt::Display| ApiError::Certificate(e.to_string());
    let mut chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(credentials.server_cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| certificate_error(&e))?;
    chain.extend(
        CertificateDer::pem_slice_iter(credentials.ca_cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| certificate_error(&e))?,
    );
    let key = PrivateKeyDer::from_pem_slice(credentials.server_key_pem.as_bytes())
        .map_err(|e| certificate_error(&e))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| certificate_error(&e))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| certificate_error(&e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
