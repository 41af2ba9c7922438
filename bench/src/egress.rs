//! The egress bench's pieces (`src/bin/egress-tunnel.rs`): a loopback
//! sink/echo server, the manifest that lets the sidecar's forward proxy reach
//! it, and a client that reaches the server either directly or through a
//! `CONNECT` tunnel, for the two measurements: bytes pushed through one
//! connection, and the time until a new connection carries its first byte.
//!
//! The server speaks a two-command protocol, chosen by the first byte the
//! client sends:
//!
//! - `S` and a big-endian `u64` length: the server reads (and discards)
//!   exactly that many bytes, then answers the count it read as a `u64` and
//!   closes. The client checks the count.
//! - `E`: the server answers `E`, then echoes whatever follows until the
//!   client closes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The name the agent asks the proxy for; `forward.dns_overrides` maps it to
/// 127.0.0.1. Named exactly in the manifest, so the SSRF guard lets the
/// loopback address through.
pub const DOMAIN: &str = "sink.bench";

/// The session header the forward proxy reads.
pub const SESSION_HEADER: &str = "x-aegis-session-id";

/// Size of each write when pushing bytes, and of the server's read buffer.
pub const CHUNK: usize = 64 * 1024;

/// The sidecar's manifest: `net.connect` declared, [`DOMAIN`] allowed,
/// budgets far beyond any run. Every `CONNECT` of a session is the same call
/// (same tool, same arguments), so loop detection's identical-call rule is
/// set so that it never fires: `identical_calls` = `identical_window` =
/// `calls_per_session` + 1. (The session's history then holds every call,
/// and each decision scans it: at 2,000 calls a few µs, which the decision
/// time in the report includes.)
pub fn manifest(calls_per_session: usize) -> String {
    let loops = calls_per_session.saturating_add(1).max(2);
    format!(
        r#"
schema: aegis.dev/manifest/v0.1
name: bench-egress-agent
version: "1.0.0"
publisher: aegis-bench
sandbox:
  required: true
  image: demo
permissions:
  tools: [net.connect]
  net:
    domains: ["{DOMAIN}"]
  budgets:
    max_steps: 1000000000
    max_tool_calls: 1000000000
    max_wall_time_ms: 86400000
policy:
  loops:
    identical_calls: {loops}
    identical_window: {loops}
"#
    )
}

/// The loopback sink/echo server.
#[derive(Debug, Clone)]
pub struct Server {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
}

impl Server {
    /// Binds 127.0.0.1:0 and serves on the current runtime.
    pub async fn start() -> anyhow::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the sink server")?;
        let addr = listener.local_addr().context("sink server address")?;
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    if let Err(e) = serve(stream).await {
                        eprintln!("sink server: {e:#}");
                    }
                });
            }
        });
        Ok(Server { addr, accepted })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

async fn serve(mut stream: TcpStream) -> anyhow::Result<()> {
    let mut command = [0u8; 1];
    if stream.read(&mut command).await? == 0 {
        return Ok(());
    }
    match command[0] {
        b'S' => {
            let expected = stream.read_u64().await?;
            let mut buf = vec![0u8; CHUNK];
            let mut read = 0u64;
            while read < expected {
                let want = usize::try_from(expected - read).unwrap_or(CHUNK).min(CHUNK);
                let n = stream.read(&mut buf[..want]).await?;
                if n == 0 {
                    break;
                }
                read += n as u64;
            }
            stream.write_u64(read).await?;
            stream.shutdown().await?;
        }
        b'E' => {
            stream.write_all(b"E").await?;
            let (mut r, mut w) = stream.split();
            tokio::io::copy(&mut r, &mut w).await?;
        }
        other => bail!("unknown command byte {other:#04x}"),
    }
    Ok(())
}

/// How the client reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Direct,
    Tunnel,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Direct => "direct",
            Route::Tunnel => "tunnel",
        }
    }
}

/// Where the server and the sidecar's forward proxy listen.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub server: SocketAddr,
    pub proxy: SocketAddr,
}

impl Client {
    /// A connection to the server: directly, or a `CONNECT` tunnel through
    /// the proxy in `session` (returned once the proxy has answered `200`).
    pub async fn open(&self, route: Route, session: &str) -> anyhow::Result<TcpStream> {
        match route {
            Route::Direct => {
                let stream = TcpStream::connect(self.server)
                    .await
                    .context("connecting to the server")?;
                stream.set_nodelay(true)?;
                Ok(stream)
            }
            Route::Tunnel => {
                let mut stream = TcpStream::connect(self.proxy)
                    .await
                    .context("connecting to the proxy")?;
                stream.set_nodelay(true)?;
                let target = format!("{DOMAIN}:{}", self.server.port());
                let request = format!(
                    "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{SESSION_HEADER}: {session}\r\n\r\n"
                );
                stream.write_all(request.as_bytes()).await?;
                let head = read_head(&mut stream).await?;
                let status = head.split_whitespace().nth(1).unwrap_or_default();
                ensure!(status == "200", "CONNECT answered: {head:?}");
                Ok(stream)
            }
        }
    }

    /// One connection pushing `bytes` in [`CHUNK`] writes; returns the time
    /// from the first byte sent until the server's count arrived (the
    /// connection's set-up, and for a tunnel the `CONNECT`, excluded).
    /// Fails unless the server counted exactly `bytes`.
    pub async fn push(&self, route: Route, session: &str, bytes: u64) -> anyhow::Result<Duration> {
        let mut stream = self.open(route, session).await?;
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i % 251) as u8).collect();
        let started = Instant::now();
        let mut header = [0u8; 9];
        header[0] = b'S';
        header[1..].copy_from_slice(&bytes.to_be_bytes());
        stream.write_all(&header).await?;
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left).unwrap_or(CHUNK).min(CHUNK);
            stream.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        let counted = stream
            .read_u64()
            .await
            .context("reading the sink's count")?;
        let elapsed = started.elapsed();
        ensure!(
            counted == bytes,
            "{}: the sink counted {counted} bytes of {bytes}",
            route.as_str()
        );
        Ok(elapsed)
    }

    /// A new connection until its first byte came back: TCP connect (and
    /// for a tunnel `CONNECT` and its `200`), then a 1-byte echo round trip.
    /// The connection is closed afterwards, outside the timing.
    pub async fn first_byte(&self, route: Route, session: &str) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let mut stream = self.open(route, session).await?;
        stream.write_all(b"E").await?;
        let mut answer = [0u8; 1];
        stream
            .read_exact(&mut answer)
            .await
            .context("reading the echo")?;
        let elapsed = started.elapsed();
        ensure!(&answer == b"E", "echo answered {answer:?}");
        drop(stream);
        Ok(elapsed)
    }
}

/// Reads a response head (up to the blank line). Reads in chunks; any byte
/// after the head is an error: the server sends nothing before the client
/// does, so nothing may follow the proxy's `200`.
async fn read_head(stream: &mut TcpStream) -> anyhow::Result<String> {
    let mut head = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            bail!(
                "the proxy closed during the response head: {:?}",
                String::from_utf8_lossy(&head)
            );
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            ensure!(
                end + 4 == head.len(),
                "{} bytes after the response head",
                head.len() - end - 4
            );
            return Ok(String::from_utf8_lossy(&head).into_owned());
        }
        ensure!(head.len() <= 16 * 1024, "response head over 16 KiB");
    }
}

/// The `q` quantile (0..=1) of `samples`, nearest rank; zero when empty.
pub fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;

    #[test]
    fn quantiles_by_nearest_rank() {
        let mut v: Vec<Duration> = (1..=100).rev().map(Duration::from_micros).collect();
        assert_eq!(quantile(&mut v, 0.5), Duration::from_micros(50));
        assert_eq!(quantile(&mut v, 0.99), Duration::from_micros(99));
        assert_eq!(quantile(&mut v, 1.0), Duration::from_micros(100));
        assert_eq!(quantile(&mut [], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_manifest_validates() {
        let manifest = aegis_policy::manifest::Manifest::from_yaml(&manifest(2_050)).unwrap();
        assert_eq!(manifest.policy.loops.identical_window, 2_051);
    }

    #[test]
    fn direct_push_and_echo_work() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let body = async {
            let server = Server::start().await.unwrap();
            let client = Client {
                server: server.addr(),
                proxy: server.addr(),
            };
            client
                .push(Route::Direct, "s", 3 * CHUNK as u64 + 17)
                .await
                .unwrap();
            client.first_byte(Route::Direct, "s").await.unwrap();
            assert_eq!(server.accepted(), 2);
        };
        // A hang guard only.
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), body).await })
            .expect("the exchanges end");
    }
}
