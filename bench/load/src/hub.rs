//! Starting, setting up and stopping the servers under test: one or more Kommutator hub
//! processes (fresh SQLite file, or a given PostgreSQL database plus Redis for several
//! nodes), and the Centrifuge peer.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::proto::Cred;

/// Password of every user the harness creates.
const PASSWORD: &str = "load-harness-pw-1";

/// One server process.
#[derive(Debug)]
pub struct Proc {
    /// The child.
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// Its log file.
    pub log: PathBuf,
}

impl Proc {
    /// Stops it: SIGTERM, then SIGKILL after `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self, what: &str) -> anyhow::Result<()> {
        if let Ok(Some(st)) = self.child.try_wait() {
            bail!(
                "{what} exited ({st}); its log {}:\n{}",
                self.log.display(),
                tail(&self.log, 30)
            );
        }
        Ok(())
    }
}

/// The last `n` lines of a file.
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free loopback port (bind to port 0, read it, release it).
pub fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// How to start the hub.
#[derive(Debug, Clone)]
pub struct HubOptions {
    /// The `kommutator` binary.
    pub bin: PathBuf,
    /// Folder for the config, the SQLite file and the logs.
    pub dir: PathBuf,
    /// Database URL; `None`: a fresh SQLite file in `dir`.
    pub database_url: Option<String>,
    /// Redis URL for several nodes.
    pub redis_url: Option<String>,
    /// Hub processes.
    pub nodes: usize,
    /// Extra `KEY=VALUE` environment for each hub process.
    pub env: Vec<(String, String)>,
    /// Run tag: makes logins, department names and message ids unique per run (a reused
    /// PostgreSQL database keeps earlier runs' rows).
    pub run: String,
    /// Pin the hub to these CPUs (`taskset -c`), if given.
    pub cpus: Option<String>,
    /// Restart the nodes after the setup (a clean process to measure).
    pub restart: bool,
}

/// A running hub cluster, set up for the benchmark.
#[derive(Debug)]
pub struct Hub {
    /// The processes, node 0 first.
    pub nodes: Vec<Proc>,
    opts: HubOptions,
    config: PathBuf,
    restarts: usize,
    /// REST client.
    pub http: reqwest::Client,
    /// API key secret with `dialogs:write` (for ingest).
    pub api_key: String,
    /// The department the `site` connector routes to.
    pub dept_id: i64,
    /// A second department that nothing is routed to (its members stay idle).
    pub idle_dept_id: i64,
    /// Operators of `dept_id`.
    pub operators: Vec<Cred>,
    /// Operators of `idle_dept_id`.
    pub idle_operators: Vec<Cred>,
    /// The database URL in use.
    pub database_url: String,
}

impl Hub {
    /// `http://addr` of node `i`.
    pub fn http_url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i % self.nodes.len()].addr)
    }

    /// `ws://addr/ws/operator` of node `i`.
    pub fn ws_url(&self, i: usize) -> String {
        format!("ws://{}/ws/operator", self.nodes[i % self.nodes.len()].addr)
    }

    /// Pids of every node.
    pub fn pids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.pid).collect()
    }

    /// Starts the nodes, creates the admin (through the CLI), departments, an API key and
    /// the operators (through REST), and signs the operators in.
    pub async fn start(
        opts: HubOptions,
        operators: usize,
        idle_operators: usize,
    ) -> anyhow::Result<Hub> {
        if !opts.bin.exists() {
            bail!(
                "hub binary {} not found: build it with `cargo build --release -p kommutator` or pass --hub-bin",
                opts.bin.display()
            );
        }
        std::fs::create_dir_all(&opts.dir)?;
        if opts.nodes > 1 && opts.redis_url.is_none() {
            eprintln!(
                "warning: {} nodes without --redis-url: events will not cross nodes",
                opts.nodes
            );
        }
        let database_url = match &opts.database_url {
            Some(u) => u.clone(),
            None => {
                let path = opts.dir.join("hub.db");
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
                format!("sqlite://{}", path.display())
            }
        };
        if opts.nodes > 1 && database_url.starts_with("sqlite") {
            bail!("several nodes need a shared database: pass --database-url postgres://...");
        }
        let dept = format!("load-{}", opts.run);
        let config = opts.dir.join("hub.toml");
        std::fs::write(
            &config,
            format!(
                "# written by kommutator-load\n[connectors.site]\ntype = \"api\"\ndepartment = \"{dept}\"\n\n[log]\nlevel = \"warn\"\n"
            ),
        )?;
        // The admin, through the CLI (this also creates the schema).
        let admin_login = format!("load-admin-{}", opts.run);
        let mut cmd = Command::new(&opts.bin);
        cmd.args([
            "user",
            "add",
            "--login",
            &admin_login,
            "--name",
            "Load admin",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        hub_env(&mut cmd, &opts, &config, &database_url);
        let mut child = cmd.spawn().context("cannot run `kommutator user add`")?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(PASSWORD.as_bytes()).await?;
        }
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            bail!(
                "`kommutator user add` failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }

        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(60))
            .build()?;
        let mut nodes = Vec::new();
        for i in 0..opts.nodes.max(1) {
            nodes.push(spawn_node(&opts, &config, &database_url, i, 0)?);
        }
        for n in &mut nodes {
            wait_ready(&http, n).await?;
        }
        let base = format!("http://{}", nodes[0].addr);

        let admin = login(&http, &base, &admin_login).await?;
        let dept_id = post(
            &http,
            &base,
            &admin,
            "/api/v1/departments",
            &json!({"name": dept}),
        )
        .await?["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("no department id"))?;
        let idle_dept_id = post(
            &http,
            &base,
            &admin,
            "/api/v1/departments",
            &json!({"name": format!("{dept}-idle")}),
        )
        .await?["id"]
            .as_i64()
            .ok_or_else(|| anyhow!("no department id"))?;
        let key = post(
            &http,
            &base,
            &admin,
            "/api/v1/api-keys",
            &json!({"name": format!("load {}", opts.run), "scopes": ["dialogs:write"]}),
        )
        .await?;
        let api_key = key["secret"]
            .as_str()
            .ok_or_else(|| anyhow!("no API key secret"))?
            .to_owned();

        let t = Instant::now();
        let ops = make_operators(&http, &base, &admin, &opts.run, "op", dept_id, operators).await?;
        let idle = make_operators(
            &http,
            &base,
            &admin,
            &opts.run,
            "idle",
            idle_dept_id,
            idle_operators,
        )
        .await?;
        eprintln!(
            "hub: {} node(s) at {}; {} + {} operators ready in {:.1} s (argon2 hashing)",
            nodes.len(),
            nodes
                .iter()
                .map(|n| n.addr.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            ops.len(),
            idle.len(),
            t.elapsed().as_secs_f64()
        );
        let restart = opts.restart;
        let mut hub = Hub {
            nodes,
            opts,
            config,
            restarts: 0,
            http,
            api_key,
            dept_id,
            idle_dept_id,
            operators: ops,
            idle_operators: idle,
            database_url,
        };
        if restart {
            hub.restart().await?;
        }
        Ok(hub)
    }

    /// Restarts every node (new ports; sessions live in the database and stay valid), so
    /// the measured process starts clean: the setup's sign-ins leave about 19 MiB of
    /// argon2 memory per allocator arena resident, which would blur the baseline.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.restarts += 1;
        let mut nodes = Vec::new();
        for i in 0..self.nodes.len() {
            nodes.push(spawn_node(
                &self.opts,
                &self.config,
                &self.database_url,
                i,
                self.restarts,
            )?);
        }
        for n in &mut nodes {
            wait_ready(&self.http, n).await?;
        }
        self.nodes = nodes;
        Ok(())
    }

    /// Fails when a node has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        for (i, n) in self.nodes.iter_mut().enumerate() {
            n.check_alive(&format!("hub node {i}"))?;
        }
        Ok(())
    }

    /// Scrapes a counter (summed over its label sets) from every node's `/metrics`.
    pub async fn metric(&self, name: &str) -> f64 {
        let mut total = 0.0;
        for i in 0..self.nodes.len() {
            let url = format!("{}/metrics", self.http_url(i));
            let Ok(r) = self.http.get(&url).send().await else {
                continue;
            };
            let Ok(text) = r.text().await else { continue };
            total += sum_metric(&text, name);
        }
        total
    }

    /// Stops every node.
    pub async fn stop(&mut self) {
        for n in &mut self.nodes {
            n.stop(Duration::from_secs(15)).await;
        }
    }
}

fn hub_env(cmd: &mut Command, opts: &HubOptions, config: &Path, database_url: &str) {
    cmd.env("KOMMUTATOR_CONFIG", config)
        .env("KOMMUTATOR_DATABASE__URL", database_url);
    if let Some(r) = &opts.redis_url {
        cmd.env("KOMMUTATOR_REALTIME__REDIS_URL", r);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
}

/// Starts hub node `i` on a free port (log `hub-<i>[.<restart>].log`).
fn spawn_node(
    opts: &HubOptions,
    config: &Path,
    database_url: &str,
    i: usize,
    restart: usize,
) -> anyhow::Result<Proc> {
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = if restart == 0 {
        opts.dir.join(format!("hub-{i}.log"))
    } else {
        opts.dir.join(format!("hub-{i}.{restart}.log"))
    };
    let logf = std::fs::File::create(&log)?;
    let mut cmd = match &opts.cpus {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.arg("-c").arg(c).arg(&opts.bin);
            t
        }
        None => Command::new(&opts.bin),
    };
    cmd.arg("serve")
        .env("KOMMUTATOR_SERVER__LISTEN", &addr)
        .env(
            "KOMMUTATOR_REALTIME__NODE_ID",
            format!("load-{}-{i}", opts.run),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::from(logf.try_clone()?))
        .stderr(Stdio::from(logf))
        .kill_on_drop(true);
    hub_env(&mut cmd, opts, config, database_url);
    let child = cmd.spawn().context("cannot start the hub")?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the hub exited at once"))?;
    Ok(Proc {
        child,
        pid,
        addr,
        log,
    })
}

/// The sum of a metric's samples in Prometheus text.
pub fn sum_metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with('{') || r.starts_with(' '))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn wait_ready(http: &reqwest::Client, n: &mut Proc) -> anyhow::Result<()> {
    let url = format!("http://{}/readyz", n.addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        n.check_alive("the hub")?;
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "the hub at {} was not ready within 60 s; log:\n{}",
                n.addr,
                tail(&n.log, 30)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn login(http: &reqwest::Client, base: &str, login: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"login": login, "password": PASSWORD}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("sign-in of {login} failed: {status} {v}");
    }
    Ok(v["token"]
        .as_str()
        .ok_or_else(|| anyhow!("no token in the sign-in answer"))?
        .to_owned())
}

async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!("POST {path} failed: {status} {v}");
    }
    Ok(v)
}

/// Creates `n` operators of `dept` and signs each in; two at a time (argon2 is CPU-bound).
async fn make_operators(
    http: &reqwest::Client,
    base: &str,
    admin: &str,
    run: &str,
    prefix: &str,
    dept: i64,
    n: usize,
) -> anyhow::Result<Vec<Cred>> {
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let chunk: Vec<usize> = (i..(i + 2).min(n)).collect();
        let mut tasks = Vec::new();
        for k in chunk {
            let http = http.clone();
            let base = base.to_owned();
            let admin = admin.to_owned();
            let login_name = format!("load-{run}-{prefix}{k}");
            tasks.push(tokio::spawn(async move {
                let u = post(
                    &http,
                    &base,
                    &admin,
                    "/api/v1/users",
                    &json!({
                        "login": login_name,
                        "name": format!("Load operator {k}"),
                        "role": "operator",
                        "department_id": dept,
                        "password": PASSWORD,
                        "must_change_password": false,
                    }),
                )
                .await?;
                let user_id = u["id"].as_i64().ok_or_else(|| anyhow!("no user id"))?;
                let token = login(&http, &base, &login_name).await?;
                anyhow::Ok(Cred { user_id, token })
            }));
        }
        for t in tasks {
            out.push(t.await??);
        }
        i += 2;
    }
    Ok(out)
}

/// Starts the Centrifuge peer on a free port and waits until it accepts connections.
pub async fn start_peer(bin: &Path, dir: &Path, cpus: Option<&str>) -> anyhow::Result<Proc> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let log = dir.join("peer.log");
    let logf = std::fs::File::create(&log)?;
    let mut cmd = match cpus {
        Some(c) => {
            let mut t = Command::new("taskset");
            t.arg("-c").arg(c).arg(bin);
            t
        }
        None => Command::new(bin),
    };
    cmd.arg("-addr")
        .arg(&addr)
        .stdin(Stdio::null())
        .stdout(Stdio::from(logf.try_clone()?))
        .stderr(Stdio::from(logf))
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start the peer {}", bin.display()))?;
    let pid = child
        .id()
        .ok_or_else(|| anyhow!("the peer exited at once"))?;
    let mut p = Proc {
        child,
        pid,
        addr,
        log,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        p.check_alive("the peer")?;
        if tokio::net::TcpStream::connect(&p.addr).await.is_ok() {
            return Ok(p);
        }
        if Instant::now() > deadline {
            bail!("the peer did not listen within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peer binary: the given path, else the one `bench/peer/build-centrifuge.sh` built
/// (the script is run when it is missing; it prints the path).
pub fn peer_bin(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_owned());
    }
    let dir =
        std::env::var("KOMMUTATOR_PEER_DIR").unwrap_or_else(|_| "/var/tmp/kommutator-peer".into());
    let built = Path::new(&dir).join("bin/centrifuge-peer");
    if built.exists() {
        return Ok(built);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../peer/build-centrifuge.sh");
    eprintln!("peer: building it with {}", script.display());
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run build-centrifuge.sh")?;
    if !out.status.success() {
        bail!("build-centrifuge.sh failed");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_metric_samples() {
        let t = "# TYPE x counter\nkommutator_ws_frames_sent_total 12\nkommutator_ws_frames_sent_total_other 5\nfoo{a=\"b\"} 1\nkommutator_ws_frames_sent_total{k=\"v\"} 3\n";
        assert_eq!(sum_metric(t, "kommutator_ws_frames_sent_total"), 15.0);
    }
}
