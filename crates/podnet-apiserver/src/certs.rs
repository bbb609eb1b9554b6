//! The data directory's credentials: a cluster CA, the server certificate it
//! signs, the bearer token and the kubeconfig that ties them together.

use crate::ApiError;
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

/// DNS names every API server certificate carries (what in-cluster clients dial).
pub const SERVER_DNS_NAMES: &[&str] = &[
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
    "localhost",
];

/// PEM material the TLS listener needs.
pub struct Credentials {
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub token: String,
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ApiError + '_ {
    move |source| ApiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_error(what: &str) -> impl FnOnce(rcgen::Error) -> ApiError + '_ {
    move |e| ApiError::Certificate(format!("{what}: {e}"))
}

/// The CA's parameters. They are rebuilt identically on every start so that the
/// stored CA key can sign a fresh server certificate without parsing the CA
/// certificate back (the issuer name and key identifier derive from these and the key).
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "podnet-ca");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params
}

fn write_private(path: &Path, contents: &str) -> Result<(), ApiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    // Written aside and renamed into place: readers waiting for the file
    // (`podnet up`, agents) never see it half written.
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .map_err(io_error(&temporary))?;
    file.write_all(contents.as_bytes())
        .map_err(io_error(&temporary))?;
    file.sync_all().map_err(io_error(&temporary))?;
    std::fs::rename(&temporary, path).map_err(io_error(path))
}

/// Load the CA and token from `dir` (creating them on first start) and issue
/// a server certificate for the given addresses. The server certificate is
/// re-issued on every start so that a changed listen address or extra SAN is
/// always covered.
pub fn ensure_credentials(
    dir: &Path,
    listen_ip: IpAddr,
    extra_sans: &[IpAddr],
) -> Result<Credentials, ApiError> {
    let ca_cert_path = dir.join("ca.crt");
    let ca_key_path = dir.join("ca.key");
    let token_path = dir.join("token");

    let (ca_key, ca_cert_pem) = if ca_cert_path.exists() && ca_key_path.exists() {
        let key_pem = std::fs::read_to_string(&ca_key_path).map_err(io_error(&ca_key_path))?;
        let key = KeyPair::from_pem(&key_pem).map_err(cert_error("ca.key"))?;
        let cert_pem = std::fs::read_to_string(&ca_cert_path).map_err(io_error(&ca_cert_path))?;
        (key, cert_pem)
    } else {
        let key = KeyPair::generate().map_err(cert_error("ca key"))?;
        let cert = ca_params()
            .self_signed(&key)
            .map_err(cert_error("ca certificate"))?;
        write_private(&ca_key_path, &key.serialize_pem())?;
        std::fs::write(&ca_cert_path, cert.pem()).map_err(io_error(&ca_cert_path))?;
        (key, cert.pem())
    };
    let issuer = Issuer::new(ca_params(), ca_key);

    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "kube-apiserver");
    params.distinguished_name = name;
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    // In-cluster clients dial the `kubernetes` Service's address.
    let mut ips: Vec<IpAddr> = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V4(crate::service_alloc::KUBERNETES_SERVICE_IP),
    ];
    for ip in std::iter::once(listen_ip).chain(extra_sans.iter().copied()) {
        if !ip.is_unspecified() && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    params.subject_alt_names = ips.into_iter().map(SanType::IpAddress).collect();
    for dns in SERVER_DNS_NAMES {
        params.subject_alt_names.push(SanType::DnsName(
            (*dns).try_into().map_err(cert_error("dns name"))?,
        ));
    }
    let server_key = KeyPair::generate().map_err(cert_error("server key"))?;
    let server_cert = params
        .signed_by(&server_key, &issuer)
        .map_err(cert_error("server certificate"))?;
    let server_cert_path = dir.join("server.crt");
    let server_key_path = dir.join("server.key");
    write_private(&server_key_path, &server_key.serialize_pem())?;
    std::fs::write(&server_cert_path, server_cert.pem()).map_err(io_error(&server_cert_path))?;

    let token = if token_path.exists() {
        std::fs::read_to_string(&token_path)
            .map_err(io_error(&token_path))?
            .trim()
            .to_string()
    } else {
        let token = random_hex(32);
        write_private(&token_path, &token)?;
        token
    };
    Ok(Credentials {
        ca_cert_pem,
        server_cert_pem: server_cert.pem(),
        server_key_pem: server_key.serialize_pem(),
        token,
    })
}

/// `bytes` random bytes as lowercase hex, from a CSPRNG seeded by the operating system.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    buffer.iter().map(|b| format!("{b:02x}")).collect()
}

/// The kubeconfig text for `server_url` with the CA inline and the token.
pub fn kubeconfig(server_url: &str, ca_cert_pem: &str, token: &str) -> String {
    let ca_data = base64::engine::general_purpose::STANDARD.encode(ca_cert_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: podnet\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca_data}\nusers:\n- name: podnet-admin\n  user:\n    token: {token}\ncontexts:\n- name: podnet\n  context:\n    cluster: podnet\n    user: podnet-admin\n    namespace: default\ncurrent-context: podnet\npreferences: {{}}\n"
    )
}

/// Write the kubeconfig into `dir` and return its path.
pub fn write_kubeconfig(dir: &Path, contents: &str) -> Result<PathBuf, ApiError> {
    let path = dir.join("kubeconfig");
    write_private(&path, contents)?;
    Ok(path)
}
