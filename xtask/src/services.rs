//! Throwaway peers for the test runs, each on free loopback ports and gone when dropped:
//! PostgreSQL, Garage (a real S3 service) and moto (Cognito).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, StatusOk, Tools};

const GARAGE_VERSION: &str = "2.5.0";
const MOTO: &str = "moto[server]==5.2.5";

/// The one region of the production-shaped run. Garage checks that requests are signed for its
/// own region, and the app names one region for S3 and Cognito alike, so Garage is told to be
/// the region that moto and the app's Cognito issuer already assume.
pub(crate) const AWS_REGION: &str = "us-east-1";

/// How long a peer may take to start before the run gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A throwaway PostgreSQL cluster on a free loopback port (fsync off: nothing in it matters
/// after the run), stopped and removed when dropped.
pub(crate) struct Postgres {
    dir: PathBuf,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    pub(crate) fn start() -> Result<Self> {
        let bin = match postgres_bin() {
            Some(bin) => bin,
            None => {
                println!("installing Debian's postgresql for the database tests");
                Command::new("apt-get")
                    .args(["update", "-qq"])
                    .status_ok()?;
                Command::new("apt-get")
                    .args(["install", "-y", "-qq", "postgresql"])
                    .status_ok()?;
                postgres_bin().ok_or("postgresql installed, but no initdb found")?
            }
        };
        let [port] = free_ports()?;
        let cluster = Self {
            dir: scratch_dir("pg")?,
            bin,
            port,
        };
        if is_root() {
            // PostgreSQL refuses to run as root: hand the directory to its own user.
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&cluster.dir)
                .status_ok()?;
        }
        let data = cluster.dir.join("data");
        cluster
            .as_owner("initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(&data)
            .stdout(Stdio::null())
            .status_ok()?;
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300",
            cluster.dir.display()
        );
        cluster
            .as_owner("pg_ctl")
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(cluster.dir.join("log"))
            .arg("start")
            .stdout(Stdio::null())
            .status_ok()?;
        Ok(cluster)
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn as_owner(&self, tool: &str) -> Command {
        let program = self.bin.join(tool);
        if is_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self
            .as_owner("pg_ctl")
            .args(["-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed PostgreSQL's binaries (Debian keeps them out of PATH).
fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A single-node Garage: a real S3 service from another code base than the embedded store's,
/// which checks signatures, expiry and signed headers. One bucket and one key, both ours.
pub(crate) struct Garage {
    _server: Daemon,
    s3_port: u16,
    bucket: String,
    key_id: String,
    secret: String,
}

impl Garage {
    pub(crate) fn start(tools: &Tools) -> Result<Self> {
        tools.ensure_cargo_tool("garage", GARAGE_VERSION, true)?;
        let dir = scratch_dir("garage")?;
        let [rpc_port, s3_port, admin_port] = free_ports()?;
        // The admin API only serves `/health` here, which needs no token.
        let config = format!(
            r#"metadata_dir = "{dir}/meta"
data_dir = "{dir}/data"
db_engine = "sqlite"
replication_factor = 1
rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{rpc_secret}"

[s3_api]
api_bind_addr = "127.0.0.1:{s3_port}"
s3_region = "{AWS_REGION}"

[admin]
api_bind_addr = "127.0.0.1:{admin_port}"
"#,
            dir = dir.display(),
            rpc_secret = random_hex(32)?,
        );
        let config_file = dir.join("garage.toml");
        std::fs::write(&config_file, config).map_err(|e| e.to_string())?;
        let bucket = "portrait-test".to_owned();
        // Garage's own formats: "GK" and 12 bytes in hex, and 32 bytes in hex.
        let key_id = format!("GK{}", random_hex(12)?);
        let secret = random_hex(32)?;
        // `--single-node` lays out a one-node cluster; `--default-bucket` then creates the key
        // and the bucket named in the environment and lets the key read and write it. Both are
        // done before the APIs listen.
        let mut server = Daemon::spawn(
            "garage",
            tools
                .cmd("garage", &["-c"])
                .arg(&config_file)
                .args(["server", "--single-node", "--default-bucket"])
                .env("GARAGE_DEFAULT_ACCESS_KEY", &key_id)
                .env("GARAGE_DEFAULT_SECRET_KEY", &secret)
                .env("GARAGE_DEFAULT_BUCKET", &bucket),
            dir,
        )?;
        // Ready when the cluster has quorum (Garage's own health check) and the S3 API answers
        // at all: an unsigned request is refused, which is an answer.
        server.wait_until(|| {
            http_status(admin_port, "/health") == Some(200) && http_status(s3_port, "/").is_some()
        })?;
        Ok(Self {
            _server: server,
            s3_port,
            bucket,
            key_id,
            secret,
        })
    }

    /// What the API suite needs to run against this Garage (see `server/tests/api/helpers.rs`),
    /// and what the AWS SDK in the app reads: credentials and region.
    pub(crate) fn test_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PORTRAIT_TEST_S3_ENDPOINT",
                format!("http://{}", loopback(self.s3_port)),
            ),
            ("PORTRAIT_TEST_S3_BUCKET", self.bucket.clone()),
            ("AWS_ACCESS_KEY_ID", self.key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.clone()),
            ("AWS_REGION", AWS_REGION.to_owned()),
        ]
    }
}

/// moto's server, for its Cognito user pools (the API suite creates one per test). It takes
/// any credentials, so the AWS_* variables of Garage serve both.
pub(crate) struct Moto {
    _server: Daemon,
    port: u16,
    /// The key moto signs tokens with, as PEM, for the tests that forge tokens.
    signing_key: PathBuf,
}

impl Moto {
    pub(crate) fn start(tools: &Tools) -> Result<Self> {
        let moto_server = tools.ensure_python_tool(MOTO, "moto_server")?;
        let [port] = free_ports()?;
        let mut server = Daemon::spawn(
            "moto",
            Command::new(&moto_server).args(["-H", "127.0.0.1", "-p", &port.to_string()]),
            scratch_dir("moto")?,
        )?;
        // Ready when Cognito answers a real call.
        server.wait_until(|| {
            let target = "AWSCognitoIdentityProviderService.ListUserPools";
            let headers = [
                ("X-Amz-Target", target),
                ("Content-Type", "application/x-amz-json-1.1"),
            ];
            http(
                &loopback(port),
                "POST",
                "/",
                &headers,
                r#"{"MaxResults":1}"#,
            )
            .is_ok_and(|(status, _)| status == 200)
        })?;
        let python = moto_server.with_file_name("python");
        let pem = Command::new(python)
            .args(["-c", include_str!("moto_signing_key.py")])
            .output()
            .map_err(|e| format!("export moto's signing key: {e}"))?;
        if !pem.status.success() {
            return Err(format!(
                "export moto's signing key: {}",
                String::from_utf8_lossy(&pem.stderr)
            ));
        }
        let signing_key = server.dir.join("signing-key.pem");
        std::fs::write(&signing_key, pem.stdout).map_err(|e| e.to_string())?;
        Ok(Self {
            _server: server,
            port,
            signing_key,
        })
    }

    pub(crate) fn test_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (
                "PORTRAIT_TEST_COGNITO_ENDPOINT",
                format!("http://{}", loopback(self.port)),
            ),
            (
                "PORTRAIT_TEST_COGNITO_SIGNING_KEY",
                self.signing_key.display().to_string(),
            ),
        ]
    }
}

/// A server process of ours, whose output goes to a log in its scratch directory: killed, and
/// the directory removed, when dropped.
struct Daemon {
    name: &'static str,
    child: Child,
    dir: PathBuf,
}

impl Daemon {
    fn spawn(name: &'static str, command: &mut Command, dir: PathBuf) -> Result<Self> {
        let log = std::fs::File::create(dir.join("log")).map_err(|e| e.to_string())?;
        let child = without_callers_peers(command)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("start {name}: {e}"))?;
        Ok(Self { name, child, dir })
    }

    /// Polls `ready` until it holds. Fails, with the end of the log, when the process exits or
    /// `START_TIMEOUT` passes first.
    fn wait_until(&mut self, mut ready: impl FnMut() -> bool) -> Result {
        let deadline = Instant::now() + START_TIMEOUT;
        while !ready() {
            let problem = match self.child.try_wait() {
                Ok(Some(status)) => format!("exited ({status})"),
                _ if Instant::now() > deadline => format!("not ready after {START_TIMEOUT:?}"),
                _ => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(30)..].join("\n");
            return Err(format!("{} {problem}; its log ends:\n{tail}", self.name));
        }
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Clears what the caller's shell may hold for other peers: one that sourced `cargo xtask peers`,
/// or real AWS settings (moto, for one, fails every call for an unknown `AWS_PROFILE`).
pub(crate) fn without_callers_peers(cmd: &mut Command) -> &mut Command {
    let leaks = |name: &str| name.starts_with("PORTRAIT_TEST_") || name.starts_with("AWS_");
    for (name, _) in std::env::vars_os().filter(|(name, _)| leaks(&name.to_string_lossy())) {
        cmd.env_remove(name);
    }
    cmd
}

fn loopback(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The status of a GET on a loopback port, if anything answers there.
fn http_status(port: u16, path: &str) -> Option<u16> {
    http(&loopback(port), "GET", path, &[], "")
        .ok()
        .map(|(status, _)| status)
}

/// `N` distinct free loopback ports (free when asked: the caller binds them soon after). All are
/// held until the last is found, so that the system cannot hand out one twice.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("no free port: {e}"))?;
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<_>>()
        .map_err(|e| e.to_string())?;
    Ok(ports.try_into().expect("N ports"))
}

/// An empty directory of this run under the system's temp dir.
fn scratch_dir(name: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("portrait-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

/// `bytes` random bytes in hex, for secrets and keys (xtask has no dependencies).
fn random_hex(bytes: usize) -> Result<String> {
    let mut buffer = vec![0; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buffer))
        .map_err(|e| format!("/dev/urandom: {e}"))?;
    Ok(buffer.iter().map(|b| format!("{b:02x}")).collect())
}

/// A minimal HTTP/1.1 request over a fresh connection: returns status and body. (xtask has no
/// dependencies, and these few calls do not need more.)
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    // A server that accepts but never answers must not hang the run.
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
