//! Every config file shipped in `configs/` and `deploy/kubernetes/` must
//! load, so examples cannot rot.
//!
//! Examples read upstream header secrets from the environment or from files
//! that only exist where they are deployed. The test supplies stand-ins and
//! nothing else: each `value_from_env: NAME` gets NAME set in the environment
//! map, each `value_from_file: PATH` is pointed at a temporary file holding a
//! known value, and so is each admin token's `file: PATH`; the rest of the
//! file is loaded exactly as shipped.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aegis_proxy::admin::Role;
use aegis_proxy::cli::RunFlags;
use aegis_proxy::config::{self, Config, McpConfig, RawConfig};
use aegis_proxy::identity::SessionScope;
use aegis_proxy::results::Keep;

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs")
}

/// What the test supplied in place of an example's secrets.
struct Supplied {
    /// Environment variables named by `value_from_env`, with their values.
    env: HashMap<String, String>,
    /// Each `value_from_file` path as shipped, with what its stand-in holds
    /// (less the trailing newline the stand-in file ends with).
    files: Vec<(String, String)>,
    /// Holds the stand-in files until the config is loaded.
    _dir: tempfile::TempDir,
}

/// Loads the example at `path` with stand-ins for its secrets (see the page
/// comment). Only the block form `value_from_*: VALUE` at the end of a line is
/// recognised, which is how the examples are written.
fn load(path: &Path) -> (Result<Config, config::ConfigError>, Supplied) {
    let text =
        fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut env = HashMap::new();
    let mut files = Vec::new();
    let mut shipped = String::new();
    for line in text.lines() {
        let code = line.trim_start();
        let mut line = line.to_owned();
        if let Some(name) = code.strip_prefix("value_from_env:") {
            let name = name.trim().to_owned();
            env.insert(name.clone(), format!("Bearer example-{name}"));
        } else if let Some(file) = code
            .strip_prefix("- file:")
            .or_else(|| code.strip_prefix("file:"))
        {
            // An admin.auth.tokens entry: a token of the accepted length.
            let file = file.trim().to_owned();
            let value = format!("example-admin-token-{}", files.len());
            let stand_in = dir.path().join(format!("secret-{}", files.len()));
            fs::write(&stand_in, format!("{value}\n")).expect("write stand-in");
            line = line.replace(&file, &stand_in.display().to_string());
            files.push((file, value));
        } else if let Some(file) = code.strip_prefix("value_from_file:") {
            let file = file.trim().to_owned();
            let value = format!("Bearer example-file-{}", files.len());
            let stand_in = dir.path().join(format!("secret-{}", files.len()));
            fs::write(&stand_in, format!("{value}\n")).expect("write stand-in");
            line = line.replace(&file, &stand_in.display().to_string());
            files.push((file, value));
        }
        shipped.push_str(&line);
        shipped.push('\n');
    }
    let flags = RunFlags::default();
    let loaded = RawConfig::from_yaml(&shipped)
        .map_err(|message| config::ConfigError {
            problems: vec![format!("{}: {message}", path.display())],
        })
        .and_then(|raw| Config::from_layers(raw, Some(path.to_owned()), &env, &flags));
    let supplied = Supplied {
        env,
        files,
        _dir: dir,
    };
    (loaded, supplied)
}

/// Kubernetes manifests (sidecar examples) also live in `configs/`; they are
/// not aegis-proxy configs. They are recognised by their first line that is
/// neither blank nor a comment (nor a `---` document marker) starting with
/// `apiVersion:`.
fn is_kubernetes_manifest(text: &str) -> bool {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#') && *line != "---")
        .is_some_and(|line| line.starts_with("apiVersion:"))
}

/// The `(name, value)` of an upstream's extra headers.
fn headers(config: &Config, upstream: &str) -> Vec<(String, String)> {
    let upstream = config
        .mcp
        .upstream(upstream)
        .unwrap_or_else(|| panic!("upstream {upstream} is configured"));
    upstream
        .headers
        .iter()
        .map(|header| {
            let value = header.value.value().to_str().expect("ASCII stand-in");
            (header.name.to_string(), value.to_owned())
        })
        .collect()
}

#[test]
fn every_example_config_loads() {
    let dir = configs_dir();
    let entries = fs::read_dir(&dir).unwrap_or_else(|err| panic!("read {}: {err}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a configs/ entry").path())
        .filter(|path| {
            path.is_file()
                && path
                    .extension()
                    .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    paths.sort();

    let mut loaded = 0;
    let mut failures = Vec::new();
    for path in &paths {
        let text =
            fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
        if is_kubernetes_manifest(&text) {
            continue;
        }
        match load(path).0 {
            Ok(_) => loaded += 1,
            Err(err) => failures.push(format!("{}:\n{err}", path.display())),
        }
    }
    assert!(
        failures.is_empty(),
        "configs that do not load:\n{}",
        failures.join("\n")
    );
    assert!(loaded >= 1, "expected aegis.yaml in {}", dir.display());
}

#[test]
fn the_annotated_example_holds_the_defaults_and_one_upstream() {
    let path = configs_dir().join("aegis.yaml");
    let (config, supplied) = load(&path);
    let config = config.expect("configs/aegis.yaml loads");
    assert_eq!(
        supplied.env.keys().collect::<Vec<_>>(),
        ["TOOLS_TOKEN"],
        "the example's only secret"
    );
    assert!(supplied.files.is_empty());

    let tools = config.mcp.upstream("tools").expect("the example upstream");
    assert_eq!(tools.url, "http://127.0.0.1:9000/mcp");
    assert_eq!(tools.timeout, Duration::from_secs(30));
    assert_eq!(
        headers(&config, "tools"),
        [(
            "authorization".to_owned(),
            "Bearer example-TOOLS_TOKEN".to_owned()
        )]
    );
    // Everything else is exactly the defaults.
    let expected = Config {
        source: Some(path),
        mcp: McpConfig {
            listen: Some(config::DEFAULT_MCP_LISTEN),
            upstreams: vec![tools.clone()],
            default_upstream: Some("tools".to_owned()),
            ..McpConfig::default()
        },
        ..Config::default()
    };
    assert_eq!(config, expected);
}

#[test]
fn the_tool_gateway_config_is_a_locked_down_pod() {
    let path = deploy_dir().join("tool-gateway/aegis.yaml");
    let (config, supplied) = load(&path);
    let config = config.expect("deploy/kubernetes/tool-gateway/aegis.yaml loads");
    assert!(supplied.env.is_empty());
    let shipped: Vec<&str> = supplied.files.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        shipped,
        [
            "/var/run/secrets/aegis-api/operator",
            "/var/run/secrets/aegis-api/reader",
            "/var/run/secrets/tools/authorization",
        ],
        "every secret comes from a mounted Secret"
    );

    let any = |port: u16| SocketAddr::from(([0, 0, 0, 0], port));
    // The /v1 API on loopback: nothing outside the pod reaches it.
    assert_eq!(
        config.admin.listen,
        SocketAddr::from(([127, 0, 0, 1], 8080))
    );
    // Probes and Prometheus on a port that serves nothing else; every /v1
    // call needs a token, by role.
    assert_eq!(config.admin.metrics_listen, Some(any(9090)));
    let roles: Vec<Role> = config.admin.auth.tokens.iter().map(|t| t.role).collect();
    assert_eq!(roles, [Role::Operator, Role::Reader]);
    assert!(config.admin.auth.tokens.iter().all(|t| t.tenants.is_none()));
    assert!(!config.admin.auth.is_dev_mode());
    assert_eq!(config.mcp.listen, Some(any(8081)));
    assert_eq!(
        config.ledger.path,
        PathBuf::from("/var/lib/aegis/ledger.db")
    );
    assert!(!config.ledger.fail_open);
    assert_eq!(
        config.manifest,
        Some(PathBuf::from("/etc/aegis/manifest/manifest.yaml"))
    );
    assert_eq!(config.log.format, config::LogFormat::Json);

    let mcp = &config.mcp;
    assert!(mcp.enforce);
    assert!(!mcp.identity.trust_headers);
    assert_eq!(mcp.identity.default_tenant, "acme");
    // Agents are their service accounts; one session each, whatever they send.
    assert_eq!(mcp.identity.session_scope, SessionScope::Principal);
    let jwt = mcp.identity.jwt.as_ref().expect("agents present a JWT");
    assert_eq!(jwt.jwks_file, PathBuf::from("/etc/aegis-jwks/jwks.json"));
    assert_eq!(jwt.issuer, "https://kubernetes.default.svc.cluster.local");
    assert_eq!(jwt.audience, "aegis-proxy");
    assert!(!jwt.forward);
    // The ledger keeps no tool output: readers see sizes and hashes only.
    assert_eq!(mcp.results.keep, Keep::Hash);
    assert!(mcp.results.tools.is_empty());
    assert_eq!(mcp.shutdown_grace, Duration::from_secs(20));
    // Endpoints are removed before connections are refused.
    assert_eq!(mcp.drain_delay, Duration::from_secs(5));
    assert_eq!(mcp.default_upstream.as_deref(), Some("tools"));
    let [tools] = mcp.upstreams.as_slice() else {
        panic!("one upstream expected: {:?}", mcp.upstreams);
    };
    assert_eq!(tools.url, "http://127.0.0.1:9000/mcp");
    assert_eq!(
        headers(&config, "tools"),
        [(
            "authorization".to_owned(),
            "Bearer example-file-2".to_owned()
        )]
    );
}

#[test]
fn kubernetes_manifests_are_recognised() {
    assert!(is_kubernetes_manifest(
        "# sidecar\n---\napiVersion: v1\nkind: Pod\n"
    ));
    assert!(!is_kubernetes_manifest(
        "# apiVersion: v1\nadmin:\n  listen: 127.0.0.1:1\n"
    ));
    assert!(!is_kubernetes_manifest(""));
}

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/kubernetes")
}

fn yaml(path: &Path) -> serde_json::Value {
    let text =
        fs::read_to_string(path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()));
    serde_saphyr::from_str(&text).unwrap_or_else(|err| panic!("parse {}: {err}", path.display()))
}

/// The port of a listen address's socket.
fn port(addr: Option<SocketAddr>) -> u64 {
    u64::from(addr.expect("a listener").port())
}

/// Each topology under `deploy/kubernetes/`: its kustomization names files
/// that exist (and every file there is named); its `aegis.yaml` loads and
/// its manifest validates; and the sidecar's container agrees with the
/// configuration it runs (the config file and manifest where the ConfigMaps
/// are mounted, the ledger on the volume, the tokens in the Secret, probes
/// and ports on the configured listeners), runs as a native sidecar, and is
/// locked down as Pod Security "restricted" asks.
#[test]
fn every_deploy_topology_is_consistent_with_its_config() {
    let mut topologies = 0;
    for entry in fs::read_dir(deploy_dir()).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        topologies += 1;
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let kustomization = yaml(&dir.join("kustomization.yaml"));
        let mut named: Vec<String> = vec!["kustomization.yaml".into()];
        for resource in kustomization["resources"].as_array().unwrap() {
            named.push(resource.as_str().unwrap().to_owned());
        }
        let mut generated = HashMap::new();
        for generator in kustomization["configMapGenerator"].as_array().unwrap() {
            let files: Vec<String> = generator["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f.as_str().unwrap().to_owned())
                .collect();
            named.extend(files.iter().cloned());
            generated.insert(generator["name"].as_str().unwrap().to_owned(), files);
        }
        let mut present: Vec<String> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        present.sort();
        named.sort();
        assert_eq!(
            present, named,
            "{name}: files and kustomization.yaml differ"
        );

        let (config, supplied) = load(&dir.join("aegis.yaml"));
        let config = config.unwrap_or_else(|e| panic!("{name}/aegis.yaml: {e}"));
        let manifest = fs::read_to_string(dir.join("manifest.yaml")).unwrap();
        if let Err(e) = aegis_policy::Manifest::from_yaml(&manifest) {
            panic!("{name}/manifest.yaml: {e}");
        }

        let deployment = yaml(&dir.join("deployment.yaml"));
        let pod = &deployment["spec"]["template"]["spec"];
        let sidecar = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "aegis-proxy")
            .unwrap_or_else(|| panic!("{name}: aegis-proxy is an init container"));
        assert_eq!(
            sidecar["restartPolicy"], "Always",
            "{name}: a native sidecar"
        );
        let mounts: HashMap<String, String> = sidecar["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["mountPath"].as_str().unwrap().to_owned(),
                    m["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let volume = |volume: &str| {
            pod["volumes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == volume)
                .unwrap_or_else(|| panic!("{name}: no volume {volume}"))
                .clone()
        };
        // The volume mounted at `path`'s directory.
        let mounted_at = |path: &Path| {
            let parent = path.parent().unwrap().to_string_lossy().into_owned();
            let volume_name = mounts
                .get(&parent)
                .unwrap_or_else(|| panic!("{name}: nothing is mounted at {parent}"));
            volume(volume_name)
        };
        let args: Vec<&str> = sidecar["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect();
        assert_eq!(args[..2], ["run", "--config"], "{name}");
        let config_file = Path::new(args[2]);
        assert_eq!(mounted_at(config_file)["configMap"]["name"], "aegis-config");
        assert_eq!(
            generated["aegis-config"],
            [config_file.file_name().unwrap().to_string_lossy()]
        );
        let manifest_path = config.manifest.clone().unwrap();
        assert_eq!(
            mounted_at(&manifest_path)["configMap"]["name"],
            "aegis-manifest"
        );
        assert!(mounted_at(&config.ledger.path)["persistentVolumeClaim"].is_object());
        // Every secret file is in a mounted Secret: the tokens in the API's.
        assert_eq!(config.admin.auth.tokens.len(), 2, "{name}");
        for (file, _) in &supplied.files {
            let secret = mounted_at(Path::new(file))["secret"]["secretName"].clone();
            assert!(secret.is_string(), "{name}: {file} is not in a Secret");
            if file.contains("aegis-api") {
                assert_eq!(secret, "aegis-api-tokens", "{name}: {file}");
            }
        }
        // Probes on the metrics listener, which serves nothing else.
        let ports: HashMap<String, u64> = sidecar["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_owned(),
                    p["containerPort"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            ports["metrics"],
            port(config.admin.metrics_listen),
            "{name}"
        );
        if let Some(mcp) = ports.get("mcp") {
            assert_eq!(*mcp, port(config.mcp.listen), "{name}");
        }
        for (probe, path) in [
            ("startupProbe", "/readyz"),
            ("readinessProbe", "/readyz"),
            ("livenessProbe", "/healthz"),
        ] {
            assert_eq!(sidecar[probe]["httpGet"]["path"], path, "{name} {probe}");
            assert_eq!(
                sidecar[probe]["httpGet"]["port"], "metrics",
                "{name} {probe}"
            );
        }
        assert!(
            config.admin.listen.ip().is_loopback(),
            "{name}: /v1 on loopback"
        );
        assert!(
            !config.admin.auth.is_dev_mode(),
            "{name}: tokens configured"
        );
        // Drain, grace and the ledger's flush fit the pod's grace period.
        let grace_ms = pod["terminationGracePeriodSeconds"].as_u64().unwrap() * 1000;
        let needed = config.mcp.drain_delay + config.mcp.shutdown_grace;
        assert!(u128::from(grace_ms) > needed.as_millis() + 1000, "{name}");
        // Pod Security "restricted".
        let security = &pod["securityContext"];
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_ne!(security["runAsUser"], 0, "{name}");
        assert!(
            security["fsGroup"].is_u64(),
            "{name}: the volume is the user's"
        );
        assert_eq!(
            security["seccompProfile"]["type"], "RuntimeDefault",
            "{name}"
        );
        let containers = pod["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .chain(pod["containers"].as_array().unwrap());
        for container in containers {
            let c = &container["securityContext"];
            let who = format!("{name}/{}", container["name"]);
            assert_eq!(c["allowPrivilegeEscalation"], false, "{who}");
            assert_eq!(c["readOnlyRootFilesystem"], true, "{who}");
            assert_eq!(
                c["capabilities"]["drop"],
                serde_json::json!(["ALL"]),
                "{who}"
            );
            assert!(
                container["resources"]["limits"]["memory"].is_string(),
                "{who}"
            );
        }
    }
    assert_eq!(topologies, 2, "agent-sidecar and tool-gateway");
}
