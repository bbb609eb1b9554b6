//! Forwarding names outside the cluster zone to upstream resolvers, with a
//! small TTL-bounded cache. Every upstream exchange has a deadline, so an
//! unreachable upstream turns into SERVFAIL quickly instead of a hang.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::DnsError;

/// Upstream settings.
#[derive(Debug, Clone)]
pub struct ForwardConfig {
    pub upstreams: Vec<SocketAddr>,
    /// Deadline for one exchange with one upstream.
    pub timeout: Duration,
    /// Answers are cached for at most this long (kubeadm's `cache 30`).
    pub max_ttl: Duration,
    /// Most cached answers.
    pub capacity: usize,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            upstreams: Vec::new(),
            timeout: Duration::from_millis(1500),
            max_ttl: Duration::from_secs(30),
            capacity: 10_000,
        }
    }
}

/// The nameservers of a resolv.conf, on port 53.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let line = line.split(['#', ';']).next()?.trim();
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            let ip: std::net::IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: String,
    query_type: u16,
    query_class: u16,
}

#[derive(Debug, Clone)]
struct CacheEntry {
    response: Message,
    stored: Instant,
    expires: Instant,
}

/// Forwards queries and caches the answers.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwardConfig,
    cache: Mutex<HashMap<CacheKey, CacheEntry>>,
}

fn key_of(query: &Query) -> CacheKey {
    CacheKey {
        name: query.name.to_lowercase().to_ascii(),
        query_type: u16::from(query.query_type),
        query_class: u16::from(query.query_class),
    }
}

/// How long a response may be cached: its smallest TTL, or for negative
/// answers the SOA's minimum; capped by `max`.
fn cache_ttl(response: &Message, max: Duration) -> Option<Duration> {
    match response.metadata.response_code {
        ResponseCode::NoError | ResponseCode::NXDomain => {}
        _ => return None,
    }
    if response.metadata.truncation {
        return None;
    }
    let ttl = if response.answers.is_empty() {
        response
            .authorities
            .iter()
            .find_map(|record| match &record.data {
                RData::SOA(soa) => Some(record.ttl.min(soa.minimum)),
                _ => None,
            })
            .unwrap_or(5)
    } else {
        response.answers.iter().map(|r| r.ttl).min().unwrap_or(0)
    };
    Some(Duration::from_secs(ttl as u64).min(max))
}

impl Forwarder {
    pub fn new(config: ForwardConfig) -> Forwarder {
        Forwarder {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &ForwardConfig {
        &self.config
    }

    /// The cached answer for `query` (TTLs aged), if any.
    pub fn cached(&self, query: &Query) -> Option<Message> {
        let cache = self.cache.lock().ok()?;
        let entry = cache.get(&key_of(query))?;
        let now = Instant::now();
        if now >= entry.expires {
            return None;
        }
        let elapsed = now.duration_since(entry.stored).as_secs() as u32;
        let mut response = entry.response.clone();
        for record in response
            .answers
            .iter_mut()
            .chain(response.authorities.iter_mut())
            .chain(response.additionals.iter_mut())
        {
            record.ttl = record.ttl.saturating_sub(elapsed);
        }
        Some(response)
    }

    fn store(&self, query: &Query, response: &Message) {
        let Some(ttl) = cache_ttl(response, self.config.max_ttl) else {
            return;
        };
        if ttl.is_zero() {
            return;
        }
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        let now = Instant::now();
        if cache.len() >= self.config.capacity {
            cache.retain(|_, entry| entry.expires > now);
            if cache.len() >= self.config.capacity {
                cache.clear();
            }
        }
        cache.insert(
            key_of(query),
            CacheEntry {
                response: response.clone(),
                stored: now,
                expires: now + ttl,
            },
        );
    }

    /// Resolve `name`/`query_type` upstream (cache first). The returned
    /// message is the upstream's answer (id and question are not adjusted).
    pub async fn resolve(&self, query: &Query) -> Result<Message, DnsError> {
        if let Some(hit) = self.cached(query) {
            return Ok(hit);
        }
        if self.config.upstreams.is_empty() {
            return Err(DnsError::Upstream(
                "no upstream resolvers are configured: pass --upstream IP[:PORT]".into(),
            ));
        }
        let mut last_error = None;
        for upstream in &self.config.upstreams {
            match self.exchange(*upstream, query).await {
                Ok(response) => {
                    if response.metadata.response_code == ResponseCode::ServFail {
                        last_error = Some(DnsError::Upstream(format!(
                            "upstream {upstream} answered SERVFAIL for {}",
                            query.name
                        )));
                        continue;
                    }
                    self.store(query, &response);
                    return Ok(response);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| DnsError::Upstream("no upstream answered".into())))
    }

    async fn exchange(&self, upstream: SocketAddr, query: &Query) -> Result<Message, DnsError> {
        let id: u16 = rand::random();
        let mut request = Message::new(id, MessageType::Query, OpCode::Query);
        request.metadata.recursion_desired = true;
        request.add_query(query.clone());
        let mut edns = Edns::new();
        edns.set_max_payload(crate::answer::SERVER_UDP_PAYLOAD);
        request.set_edns(edns);
        let bytes = request
            .to_vec()
            .map_err(|e| DnsError::Upstream(format!("encoding a query for {}: {e}", query.name)))?;
        let deadline = self.config.timeout;
        let udp = tokio::time::timeout(deadline, udp_exchange(upstream, &bytes, id))
            .await
            .map_err(|_| {
                DnsError::Upstream(format!(
                    "upstream {upstream} did not answer within {deadline:?} (check --upstream)"
                ))
            })??;
        if !udp.metadata.truncation {
            return Ok(udp);
        }
        tokio::time::timeout(deadline, tcp_exchange(upstream, &bytes, id))
            .await
            .map_err(|_| {
                DnsError::Upstream(format!(
                    "upstream {upstream} did not answer over TCP within {deadline:?}"
                ))
            })?
    }
}

fn bind_for(upstream: SocketAddr) -> SocketAddr {
    if upstream.is_ipv4() {
        SocketAddr::from(([0, 0, 0, 0], 0))
    } else {
        SocketAddr::from(([0u16; 8], 0))
    }
}

async fn udp_exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, DnsError> {
    let io = |e: std::io::Error| DnsError::Upstream(format!("upstream {upstream}: {e}"));
    let socket = UdpSocket::bind(bind_for(upstream)).await.map_err(io)?;
    socket.connect(upstream).await.map_err(io)?;
    socket.send(bytes).await.map_err(io)?;
    let mut buffer = vec![0u8; 65535];
    loop {
        let length = socket.recv(&mut buffer).await.map_err(io)?;
        if let Ok(message) = Message::from_vec(&buffer[..length]) {
            if message.metadata.id == id && message.metadata.message_type == MessageType::Response {
                return Ok(message);
            }
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, bytes: &[u8], id: u16) -> Result<Message, DnsError> {
    let io = |e: std::io::Error| DnsError::Upstream(format!("upstream {upstream} over TCP: {e}"));
    let mut stream = TcpStream::connect(upstream).await.map_err(io)?;
    let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await.map_err(io)?;
    loop {
        let length = stream.read_u16().await.map_err(io)? as usize;
        let mut buffer = vec![0u8; length];
        stream.read_exact(&mut buffer).await.map_err(io)?;
        if let Ok(message) = Message::from_vec(&buffer) {
            if message.metadata.id == id {
                return Ok(message);
            }
        }
    }
}

/// Query `name` of `query_type` (helper for tests and chasing).
pub fn query(name: hickory_proto::rr::Name, query_type: RecordType) -> Query {
    Query::query(name, query_type)
}
