//! The pod simulation: each topology's sidecar container, read from
//! `deploy/kubernetes/`, run by the real binary as the kubelet would run it.
//!
//! - Every volume mount of the container is a directory under a temporary
//!   root (`/etc/aegis/config` → `ROOT/etc/aegis/config`); ConfigMaps and
//!   Secrets are laid out as the kubelet lays them out (the files in a
//!   timestamped directory, `..data` a symlink to it, each key a symlink
//!   through `..data`), the ledger's volume an empty directory.
//! - The container's `args` and `env` are used as they are; the config file
//!   the args name is the generated ConfigMap's, its mount paths mapped
//!   under the root. Two things differ, and only in the config file: each
//!   listener's port is a free one (so parallel tests do not collide; the
//!   container's named ports are mapped to them), and the remote tool
//!   server is the demo tool server on loopback.
//! - As root (CI), the process runs as the pod's `runAsUser`/`runAsGroup`,
//!   the ledger's volume owned by its `fsGroup`.
//!
//! Then: the startup, readiness and liveness probes answer on the
//! container's probe port and paths; a call through the agent-side URL is
//! decided by the shipped manifest (an undeclared tool refused, the tool
//! server seeing nothing); a ConfigMap update (the `..data` swap) changes
//! the decision without a restart; SIGTERM ends the process with exit 0
//! within the pod's `terminationGracePeriodSeconds`; and nothing was written
//! outside the ledger's volume.

#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use aegis_demo_upstream::{AnswerMode, DemoConfig, DemoServer};
use base64::Engine as _;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use support::{Api, DEADLINE, block_on};

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn yaml(path: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Lays out `files` (name → contents) at `dir` as the kubelet does; a
/// second call is an update: a new timestamped directory, then `..data`
/// swapped to it by a rename.
fn kubelet_volume(dir: &Path, files: &[(String, Vec<u8>)], generation: u32) {
    std::fs::create_dir_all(dir).unwrap();
    let stamp = format!("..2026_12_06_00_00_0{generation}.000000000");
    let data = dir.join(&stamp);
    std::fs::create_dir(&data).unwrap();
    for (name, contents) in files {
        std::fs::write(data.join(name), contents).unwrap();
    }
    let tmp = dir.join("..data_tmp");
    symlink(&stamp, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join("..data")).unwrap();
    for (name, _) in files {
        let link = dir.join(name);
        if link.symlink_metadata().is_err() {
            symlink(format!("..data/{name}"), &link).unwrap();
        }
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Every file under `dir` (following no symlinks), relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            if meta.is_dir() {
                stack.push(path.clone());
            }
            out.push(path.strip_prefix(dir).unwrap().to_owned());
        }
    }
    out.sort();
    out
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 key, its JWK Set, and a token it signs for `claims`.
struct Signer(Ed25519KeyPair);

impl Signer {
    fn new() -> Signer {
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        Signer(Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
    }

    fn jwks(&self) -> Vec<u8> {
        let x = b64(self.0.public_key().as_ref());
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": "pod", "alg": "EdDSA", "use": "sig"}]})
            .to_string()
            .into_bytes()
    }

    fn token(&self, claims: &Value) -> String {
        let header = b64(json!({"alg": "EdDSA", "typ": "JWT", "kid": "pod"})
            .to_string()
            .as_bytes());
        let payload = b64(claims.to_string().as_bytes());
        let input = format!("{header}.{payload}");
        format!("{input}.{}", b64(self.0.sign(input.as_bytes()).as_ref()))
    }
}

struct Pod {
    child: Child,
    root: tempfile::TempDir,
    /// The container's named ports → the ports they are on here.
    ports: HashMap<String, u16>,
    mcp: SocketAddr,
    admin: SocketAddr,
    /// Host directory of each mount path.
    mounts: HashMap<String, PathBuf>,
    /// The ConfigMap files of each generated ConfigMap.
    generated: HashMap<String, Vec<(String, Vec<u8>)>>,
    operator_token: String,
    /// The header an agent sends (a JWT for the tool gateway), if any.
    agent_auth: Option<String>,
}

/// Starts `topology`'s sidecar container in front of `upstream`.
fn start(topology: &str, upstream: &str) -> Pod {
    let dir = deploy().join(topology);
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let deployment = yaml(&dir.join("deployment.yaml"));
    let pod = deployment["spec"]["template"]["spec"].clone();
    let container = pod["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "aegis-proxy")
        .unwrap()
        .clone();
    let root = tempfile::tempdir().unwrap();
    // Readable by the pod's user, as the container's file system is.
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let host = |mount: &str| root.path().join(mount.trim_start_matches('/'));
    let mut mounts = HashMap::new();
    for m in container["volumeMounts"].as_array().unwrap() {
        let path = m["mountPath"].as_str().unwrap().to_owned();
        mounts.insert(path.clone(), host(&path));
    }
    // Free ports for the config's listeners, and the upstream on loopback.
    let (mcp, admin, metrics, forward) = (free_port(), free_port(), free_port(), free_port());
    let map_config = |text: &str| {
        let mut text = text.to_owned();
        // Longest mount paths first: a prefix never shadows a longer one.
        let mut paths: Vec<&String> = mounts.keys().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for path in paths {
            text = text.replace(path.as_str(), &mounts[path].display().to_string());
        }
        text.replace(":8081", &format!(":{mcp}"))
            .replace(":8080", &format!(":{admin}"))
            .replace(":9090", &format!(":{metrics}"))
            .replace(":3128", &format!(":{forward}"))
            .replace("https://tools.example.com/mcp", upstream)
            .replace("http://127.0.0.1:9000/mcp", upstream)
    };
    let mut generated = HashMap::new();
    for generator in kustomization["configMapGenerator"].as_array().unwrap() {
        let files: Vec<(String, Vec<u8>)> = generator["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| {
                let name = f.as_str().unwrap().to_owned();
                let text = std::fs::read_to_string(dir.join(&name)).unwrap();
                let text = if name == "aegis.yaml" {
                    map_config(&text)
                } else {
                    text
                };
                (name, text.into_bytes())
            })
            .collect();
        generated.insert(generator["name"].as_str().unwrap().to_owned(), files);
    }
    let operator_token = "pod-simulation-operator-token-0123456789".to_owned();
    let signer = Signer::new();
    let mut agent_auth = None;
    for m in container["volumeMounts"].as_array().unwrap() {
        let at = &mounts[m["mountPath"].as_str().unwrap()];
        let volume = pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == m["name"])
            .unwrap();
        if let Some(name) = volume["configMap"]["name"].as_str() {
            let files = match generated.get(name) {
                Some(files) => files.clone(),
                // Made by hand before applying (the kustomization says so).
                None if name == "aegis-jwks" => vec![("jwks.json".to_owned(), signer.jwks())],
                None => panic!("{topology}: no ConfigMap {name}"),
            };
            kubelet_volume(at, &files, 1);
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            let files = match name {
                "aegis-api-tokens" => vec![
                    ("operator".to_owned(), operator_token.clone().into_bytes()),
                    (
                        "reader".to_owned(),
                        b"pod-simulation-reader-token-0123456789".to_vec(),
                    ),
                ],
                "tools-token" => vec![("authorization".to_owned(), b"Bearer tools".to_vec())],
                other => panic!("{topology}: no Secret {other}"),
            };
            kubelet_volume(at, &files, 1);
        } else {
            assert!(volume["persistentVolumeClaim"].is_object(), "{volume}");
            std::fs::create_dir_all(at).unwrap();
        }
    }
    let config = String::from_utf8(generated["aegis-config"][0].1.clone()).unwrap();
    if config.contains("jwt:") {
        let now = aegis_ledger::now_unix_ms() / 1000;
        let claims = json!({"iss": "https://kubernetes.default.svc.cluster.local",
            "aud": "aegis-proxy", "sub": "system:serviceaccount:agents:support-agent",
            "iat": now, "exp": now + 3600});
        agent_auth = Some(format!("Bearer {}", signer.token(&claims)));
    }
    // Where the container's writes would go that are not on a volume.
    let cwd = root.path().join("cwd");
    let tmp = root.path().join("tmp");
    std::fs::create_dir_all(&cwd).unwrap();
    std::fs::create_dir_all(&tmp).unwrap();
    // Where the image has it (the user cannot read the build directory).
    let bin = root.path().join("usr/local/bin/aegis-proxy");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    if std::fs::hard_link(support::bin(), &bin).is_err() {
        std::fs::copy(support::bin(), &bin).unwrap();
    }
    let mut cmd = std::process::Command::new(&bin);
    cmd.env_clear().stdin(Stdio::null());
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            match mounts.iter().find(|(m, _)| a.starts_with(m.as_str())) {
                Some((m, h)) => a.replacen(m.as_str(), &h.display().to_string(), 1),
                None => a.to_owned(),
            }
        })
        .collect();
    cmd.args(&args)
        .current_dir(&cwd)
        .env("TMPDIR", &tmp)
        .env("HOME", &cwd)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(root.path().join("sidecar.log")).unwrap());
    for e in container["env"].as_array().into_iter().flatten() {
        cmd.env(e["name"].as_str().unwrap(), e["value"].as_str().unwrap());
    }
    run_as_the_pods_user(&mut cmd, &pod, &mounts, &container);
    let child = cmd.spawn().unwrap();
    let mut ports = HashMap::new();
    for p in container["ports"].as_array().unwrap() {
        let here = match p["containerPort"].as_u64().unwrap() {
            8081 => mcp,
            9090 => metrics,
            other => panic!("{topology}: port {other} is not mapped"),
        };
        ports.insert(p["name"].as_str().unwrap().to_owned(), here);
    }
    Pod {
        child,
        root,
        ports,
        mcp: SocketAddr::from(([127, 0, 0, 1], mcp)),
        admin: SocketAddr::from(([127, 0, 0, 1], admin)),
        mounts,
        generated,
        operator_token,
        agent_auth,
    }
}

/// As root: the pod's user and group, and the writable volume (the PVC)
/// owned by its `fsGroup`, as the kubelet would make it.
fn run_as_the_pods_user(
    cmd: &mut std::process::Command,
    pod: &Value,
    mounts: &HashMap<String, PathBuf>,
    container: &Value,
) {
    use std::os::unix::process::CommandExt as _;
    let euid = std::fs::metadata("/proc/self").map(|m| {
        use std::os::unix::fs::MetadataExt as _;
        m.uid()
    });
    if euid.ok() != Some(0) {
        return;
    }
    let security = &pod["securityContext"];
    let uid = u32::try_from(security["runAsUser"].as_u64().unwrap()).unwrap();
    let gid = u32::try_from(security["runAsGroup"].as_u64().unwrap()).unwrap();
    let fs_group = u32::try_from(security["fsGroup"].as_u64().unwrap()).unwrap();
    for m in container["volumeMounts"].as_array().unwrap() {
        if m["readOnly"] != true {
            let dir = &mounts[m["mountPath"].as_str().unwrap()];
            std::os::unix::fs::chown(dir, Some(uid), Some(fs_group)).unwrap();
        }
    }
    // The root and the non-volume directories are the user's to read only.
    cmd.uid(uid).gid(gid);
}

impl Pod {
    fn metrics(&self) -> Api {
        Api::new(SocketAddr::from(([127, 0, 0, 1], self.ports["metrics"])))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("sidecar.log")).unwrap_or_default()
    }

    /// The startup probe: its path and port until 200.
    async fn started(&mut self, probe: &Value) {
        let path = probe["httpGet"]["path"].as_str().unwrap();
        let started = Instant::now();
        loop {
            if let Ok((StatusCode::OK, _)) = self.metrics().request(Method::GET, path, None).await {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "the sidecar exited ({status}) before it was ready:\n{}",
                    self.log()
                );
            }
            assert!(started.elapsed() < DEADLINE, "never ready:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A `tools/call` through the agent-side URL: `(is_error, text)`.
    async fn call(&self, tool: &str) -> (bool, String) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": tool, "arguments": {"text": "from the pod"}}});
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(format!("http://{}/mcp/tools", self.mcp))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28");
        if let Some(auth) = &self.agent_auth {
            req = req.header("authorization", auth);
        }
        let resp = tokio::time::timeout(
            DEADLINE,
            client.request(req.body(Full::new(Bytes::from(body.to_string()))).unwrap()),
        )
        .await
        .unwrap()
        .unwrap();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let answer: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&bytes)));
        let result = &answer["result"];
        (
            result["isError"] == true,
            result["content"][0]["text"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        )
    }
}

fn simulate(topology: &str) {
    let deployment = yaml(&deploy().join(topology).join("deployment.yaml"));
    let pod_spec = deployment["spec"]["template"]["spec"].clone();
    let sidecar = pod_spec["initContainers"][0].clone();
    let grace = Duration::from_secs(pod_spec["terminationGracePeriodSeconds"].as_u64().unwrap());
    block_on(Duration::from_secs(120), async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let sandbox = tempfile::tempdir().unwrap();
        let config = DemoConfig {
            sandbox: sandbox.path().to_owned(),
            answer: AnswerMode::Json,
            ..DemoConfig::default()
        };
        let upstream = DemoServer::start(listener, config).await.unwrap();
        let mut pod = start(topology, &upstream.url());
        let before = tree(pod.root.path());
        pod.started(&sidecar["startupProbe"]).await;
        for probe in ["readinessProbe", "livenessProbe"] {
            let path = sidecar[probe]["httpGet"]["path"].as_str().unwrap();
            let port = &pod.ports[sidecar[probe]["httpGet"]["port"].as_str().unwrap()];
            let api = Api::new(SocketAddr::from(([127, 0, 0, 1], *port)));
            assert_eq!(api.get(path).await["status"], "ok", "{topology} {probe}");
        }
        // The shipped manifest does not declare the demo's `echo`.
        let (refused, text) = pod.call("echo").await;
        assert!(refused && text.contains("PERMISSION_UNDECLARED"), "{text}");
        assert_eq!(
            upstream.stats().tool_calls("echo"),
            0,
            "the tool server saw nothing"
        );
        // A ConfigMap update declaring it: the running sidecar reloads.
        let mut files = pod.generated["aegis-manifest"].clone();
        let manifest = String::from_utf8(files[0].1.clone()).unwrap();
        let updated = manifest.replacen("tools: [", "tools: [echo, ", 1);
        assert_ne!(updated, manifest);
        files[0].1 = updated.into_bytes();
        let manifest_dir = pod
            .mounts
            .iter()
            .find(|(m, _)| m.ends_with("/manifest"))
            .map(|(_, h)| h.clone())
            .unwrap();
        kubelet_volume(&manifest_dir, &files, 2);
        let admin = Api::new(pod.admin).with_token(&pod.operator_token);
        let started = Instant::now();
        while admin.get("/v1/manifest").await["generation"] != 2 {
            assert!(started.elapsed() < DEADLINE, "not reloaded:\n{}", pod.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (refused, text) = pod.call("echo").await;
        assert!(!refused, "{text}");
        assert_eq!(text, "from the pod");
        assert_eq!(upstream.stats().tool_calls("echo"), 1);
        // SIGTERM: exit 0 within the pod's grace period.
        support::signal(pod.child.id(), "TERM");
        let stopping = Instant::now();
        let status = loop {
            if let Some(status) = pod.child.try_wait().unwrap() {
                break status;
            }
            assert!(stopping.elapsed() < grace, "not stopped within {grace:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{status}:\n{}", pod.log());
        // Written: the ledger's volume only (and the update above).
        let ledger = pod
            .mounts
            .iter()
            .find(|(m, _)| m.as_str() == "/var/lib/aegis")
            .map(|(_, h)| h.strip_prefix(pod.root.path()).unwrap().to_owned())
            .unwrap();
        let manifest_rel = manifest_dir
            .strip_prefix(pod.root.path())
            .unwrap()
            .to_owned();
        let after = tree(pod.root.path());
        let new: Vec<&PathBuf> = after
            .iter()
            .filter(|p| !before.contains(p))
            .filter(|p| !p.starts_with(&ledger) && !p.starts_with(&manifest_rel))
            .filter(|p| p.as_path() != Path::new("sidecar.log"))
            .collect();
        assert!(
            new.is_empty(),
            "{topology}: written outside its volumes: {new:?}"
        );
        assert!(
            after
                .iter()
                .any(|p| p.starts_with(&ledger) && p.ends_with("ledger.db"))
        );
        upstream.shutdown().await;
    });
}

#[test]
fn the_agent_sidecar_pod_runs_as_its_manifest_says() {
    simulate("agent-sidecar");
}

#[test]
fn the_tool_gateway_pod_runs_as_its_manifest_says() {
    simulate("tool-gateway");
}
