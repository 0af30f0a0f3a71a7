//! The simulator's servers on loopback: per site a Mold API and one Glue API per storage VM
//! (HTTPS with a certificate made at start, or plain HTTP), plus the control API; the shared
//! state they serve; and the clock that moves it.
//!
//! A site in disaster really goes dark: its listeners close (connection refused) and its open
//! connections are cut. On recovery it listens again on the same addresses.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::{AbortHandle, JoinHandle};
use tokio_rustls::TlsAcceptor;

use super::faults::{Api, FaultAction, Faults};
use super::world::World;
use crate::sync::Locked as _;

/// The state every server of a simulation shares.
pub struct Shared {
    world: Mutex<World>,
    faults: Mutex<Faults>,
    /// The simulation clock runs ahead of the real one by this much: the initial full copies
    /// are "already done" when the servers start.
    skew: Duration,
}

impl Shared {
    pub fn new(world: World, skew: Duration) -> Self {
        Self {
            world: Mutex::new(world),
            faults: Mutex::new(Faults::default()),
            skew,
        }
    }

    /// Simulation time.
    pub fn now(&self) -> Instant {
        Instant::now() + self.skew
    }

    /// The world, locked. A panic in one handler must not take the simulator down with it,
    /// so a poisoned lock is taken over as it is.
    pub fn world(&self) -> MutexGuard<'_, World> {
        self.world.locked()
    }

    pub fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.locked()
    }

    pub fn site_up(&self, site: &str) -> bool {
        self.world().site(site).up
    }

    /// The fault (if any) that hits this request; `key` is Mold's envelope key.
    pub fn take_fault(&self, site: &str, api: Api, command: &str, key: &str) -> FaultAction {
        match self.faults().take(site, api, command) {
            Some(spec) => {
                tracing::info!(site, ?api, command, kind = ?spec.kind, "injecting fault");
                spec.action(key)
            }
            None => FaultAction::None,
        }
    }
}

/// What a site's routers carry: the shared state and which site (and storage VM) they are.
#[derive(Clone)]
pub struct SiteRoute {
    pub shared: Arc<Shared>,
    pub site: String,
    pub endpoint: usize,
}

/// One listening server that can go dark and come back on the same address.
pub struct Server {
    pub site: Option<String>,
    pub addr: SocketAddr,
    router: Router,
    tls: Option<TlsAcceptor>,
    task: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Server {
    /// Binds `addr` (port 0: an ephemeral one) and starts serving (inside a tokio runtime).
    pub fn start(
        site: Option<String>,
        addr: SocketAddr,
        router: Router,
        tls: Option<TlsAcceptor>,
    ) -> std::io::Result<Self> {
        let mut server = Self {
            site,
            addr,
            router,
            tls,
            task: None,
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        server.listen()?;
        Ok(server)
    }

    /// Listens on `self.addr` (fixing the port on first bind).
    pub fn listen(&mut self) -> std::io::Result<()> {
        let listener = bind(self.addr)?;
        self.addr = listener.local_addr()?;
        let router = self.router.clone();
        let tls = self.tls.clone();
        let conns = self.conns.clone();
        self.task = Some(tokio::spawn(accept_loop(listener, router, tls, conns)));
        Ok(())
    }

    /// Closes the listener and cuts every open connection.
    pub fn go_dark(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        for c in self.conns.locked().drain(..) {
            c.abort();
        }
    }

    pub fn is_listening(&self) -> bool {
        self.task.is_some()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.go_dark();
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Coming back after a disaster binds the same port again at once.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(
    listener: TcpListener,
    router: Router,
    tls: Option<TlsAcceptor>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let tls = tls.clone();
        let handle = tokio::spawn(async move {
            let http = hyper::server::conn::http1::Builder::new();
            let result = match tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(s) => http.serve_connection(TokioIo::new(s), service).await,
                    Err(_) => return,
                },
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = result {
                tracing::trace!("connection ended: {e}");
            }
        });
        let mut conns = conns.locked();
        conns.retain(|c| !c.is_finished());
        conns.push(handle.abort_handle());
    }
}

/// A self-signed certificate for a site's Glue endpoints, like Glue's own (CN `Glue API`,
/// O `Certificate File`, C `KR`), valid for every storage-VM address and 127.0.0.1.
pub struct GlueCertificate {
    pub pem: String,
    pub acceptor: TlsAcceptor,
}

impl GlueCertificate {
    pub fn generate(ips: &[IpAddr]) -> Result<Self, String> {
        use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "Glue API");
        dn.push(DnType::OrganizationName, "Certificate File");
        dn.push(DnType::CountryName, "KR");
        params.distinguished_name = dn;
        let mut sans: Vec<SanType> = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        sans.push(SanType::IpAddress(IpAddr::from([127, 0, 0, 1])));
        sans.push(SanType::DnsName(
            "localhost".try_into().map_err(|e| format!("{e}"))?,
        ));
        params.subject_alt_names = sans;
        let key = KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
            )
            .map_err(|e| e.to_string())?;
        Ok(Self {
            pem: cert.pem(),
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }
}

/// Moves simulation time along even when nobody calls: completes jobs, runs the snapshot
/// schedule, lets transfers finish.
pub async fn tick(shared: Arc<Shared>) {
    loop {
        let wait = {
            let now = shared.now();
            let mut world = shared.world();
            world.advance(now);
            world.next_event().map_or(Duration::from_millis(250), |t| {
                t.saturating_duration_since(now)
            })
        };
        tokio::time::sleep(wait.clamp(Duration::from_millis(5), Duration::from_millis(250))).await;
    }
}
