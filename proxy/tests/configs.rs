//! Every config file shipped in `configs/` must load, so examples cannot rot.
//!
//! Examples read upstream header secrets from the environment or from files
//! that only exist where they are deployed. The test supplies stand-ins and
//! nothing else: each `value_from_env: NAME` gets NAME set in the environment
//! map, each `value_from_file: PATH` is pointed at a temporary file holding a
//! known value, and so is each admin token's `file: PATH`; the rest of the
//! file is loaded exactly as shipped.

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
    assert!(
        loaded >= 2,
        "expected aegis.yaml and sidecar.yaml in {}",
        dir.display()
    );
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
fn the_sidecar_example_is_a_locked_down_pod() {
    let path = configs_dir().join("sidecar.yaml");
    let (config, supplied) = load(&path);
    let config = config.expect("configs/sidecar.yaml loads");
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
    assert_eq!(config.admin.listen, any(8080));
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
        Some(PathBuf::from("/etc/aegis/manifest.yaml"))
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
