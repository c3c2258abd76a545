//! Loopback benchmark: starts the simulator in-process and drives a mixed GET/PATCH load over keep-alive
//! connections with digest auth (nonce reuse, as real clients do), then prints requests/second and latency
//! percentiles. `make bench-sim` runs it; flags: `--seconds N` (default 5), `--workers N` (default 8).

use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const GID: &str = "6512a0f0c0ffee0000000001";
const SEED: &str = r#"
apiKeys:
  - {publicKey: bench, privateKey: benchpriv, projects: [bench]}
projects:
  - name: bench
    id: 6512a0f0c0ffee0000000001
    clusters:
      - {name: Cluster0, instanceSize: M10, backupEnabled: true}
      - {name: Cluster1, instanceSize: M30, backupEnabled: true}
"#;

struct Conn {
    r: BufReader<tokio::net::tcp::OwnedReadHalf>,
    w: tokio::net::tcp::OwnedWriteHalf,
    nonce: Option<String>,
    nc: u32,
}

fn md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Conn> {
        let s = TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        let (r, w) = s.into_split();
        Ok(Conn {
            r: BufReader::new(r),
            w,
            nonce: None,
            nc: 0,
        })
    }

    async fn send(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Option<&str>,
    ) -> anyhow::Result<(u16, String)> {
        let mut auth = String::new();
        if let Some(n) = &self.nonce {
            self.nc += 1;
            let nc = format!("{:08x}", self.nc);
            let ha1 = md5("bench:MMS Public API:benchpriv");
            let ha2 = md5(&format!("{method}:{path}"));
            let resp = md5(&format!("{ha1}:{n}:{nc}:c0ffee:auth:{ha2}"));
            auth = format!(
                "Authorization: Digest username=\"bench\", realm=\"MMS Public API\", nonce=\"{n}\", uri=\"{path}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"c0ffee\", response=\"{resp}\"\r\n"
            );
        }
        let body = body.unwrap_or("");
        let ct = if body.is_empty() {
            String::new()
        } else {
            format!("Content-Type: {accept}\r\n")
        };
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: bench\r\nAccept: {accept}\r\n{ct}{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.w.write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.r.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).unwrap_or("0").parse()?;
        let mut len = 0usize;
        let mut challenge = None;
        loop {
            line.clear();
            self.r.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').unwrap_or((l, ""));
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse()?;
            } else if k.eq_ignore_ascii_case("www-authenticate") {
                challenge = v
                    .split("nonce=\"")
                    .nth(1)
                    .and_then(|x| x.split('"').next())
                    .map(String::from);
            }
        }
        let mut buf = vec![0u8; len];
        self.r.read_exact(&mut buf).await?;
        if status == 401
            && let Some(n) = challenge
        {
            self.nonce = Some(n);
            self.nc = 0;
        }
        Ok((status, String::from_utf8_lossy(&buf).into_owned()))
    }

    async fn call(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Option<&str>,
    ) -> anyhow::Result<u16> {
        let (s, _) = self.send(method, path, accept, body).await?;
        if s == 401 {
            return Ok(self.send(method, path, accept, body).await?.0);
        }
        Ok(s)
    }
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds = arg("--seconds", 5);
    let workers = arg("--workers", 8);
    let sim = atlas_sim::spawn(atlas_sim::SimConfig {
        seed: Some(atlas_sim::Seed::from_yaml_str(SEED)?),
        cluster_update_delay: Duration::from_millis(50),
        ..Default::default()
    })
    .await?;
    let addr = sim.addr();
    let v2023 = "application/vnd.atlas.2023-01-01+json";
    let v0805 = "application/vnd.atlas.2024-08-05+json";
    let v1023 = "application/vnd.atlas.2024-10-23+json";
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = vec![];
    for w in 0..workers {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr).await?;
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let mut i = w as usize;
            while Instant::now() < deadline {
                i += 1;
                let group = format!("/api/atlas/v2/groups/{GID}");
                let t = Instant::now();
                // 80 % reads, 20 % writes.
                let status = match i % 10 {
                    0 => {
                        conn.call(
                            "PATCH",
                            &format!("{group}/clusters/Cluster{}", i % 2),
                            v1023,
                            Some(&format!("{{\"pitEnabled\":{}}}", i % 4 < 2)),
                        )
                        .await?
                    }
                    1 => {
                        conn.call(
                            "PATCH",
                            &format!("{group}/encryptionAtRest"),
                            v2023,
                            Some(&format!("{{\"enabledForSearchNodes\":{}}}", i % 4 < 2)),
                        )
                        .await?
                    }
                    2 | 3 => {
                        conn.call("GET", &format!("{group}/encryptionAtRest"), v2023, None)
                            .await?
                    }
                    4 | 5 => {
                        conn.call("GET", &format!("{group}/clusters/Cluster0"), v0805, None)
                            .await?
                    }
                    6 => {
                        conn.call("GET", &format!("{group}/clusters"), v0805, None)
                            .await?
                    }
                    7 => {
                        conn.call("GET", &format!("{group}/cloudProviderAccess"), v2023, None)
                            .await?
                    }
                    _ => conn.call("GET", &group, v2023, None).await?,
                };
                lat.push(t.elapsed().as_micros() as u32);
                if status >= 300 {
                    errors += 1;
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let start = Instant::now();
    let mut all = vec![];
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "atlas-sim bench: {} requests in {:.1}s over {workers} connections (80% GET / 20% PATCH, digest auth): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, non-2xx {errors}",
        all.len(),
        elapsed,
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    let logged = sim.calls().len();
    sim.shutdown().await;
    anyhow::ensure!(errors == 0, "{errors} requests failed");
    anyhow::ensure!(logged > 0, "the call log recorded nothing");
    Ok(())
}
