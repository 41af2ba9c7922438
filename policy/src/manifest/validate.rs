//! Stage two: `RawManifest` → [`Manifest`], collecting every problem with its
//! path. Each check runs even when an earlier one failed; checks that relate
//! two fields (sandbox rule, tool references) run only when both fields were
//! readable, so one mistake is reported once, not as a cascade.

use serde::Deserialize;
use serde_json::Value;

use super::check::{Validator, got, key_path, quote};
use super::raw::{
    self, Field, RawBudgets, RawExec, RawFs, RawManifest, RawNet, RawPermissions, RawSandbox,
};
use super::{
    Budgets, ExecPermissions, FsPermissions, Manifest, ManifestError, NetPermissions, Permissions,
    Problem, SCHEMA_V0_1, Sandbox,
};
use crate::domain::{DomainError, DomainPattern};
use crate::paths;

/// Tools that make a manifest effectful (Aegis's `_effectful_tools`), matched
/// exactly or as a dotted prefix (`exec.shell`, `mcp.https.post`).
const EFFECTFUL_TOOLS: &[&str] = &["exec", "fs.write", "mcp.http", "mcp.https", "net"];

pub(super) fn manifest(value: &Value) -> Result<Manifest, ManifestError> {
    if !value.is_object() {
        return Err(ManifestError {
            problems: vec![Problem::new(
                "",
                format!("expected a mapping at the top level, got {}", got(value)),
            )],
        });
    }
    let raw = RawManifest::deserialize(value).map_err(|e| ManifestError {
        problems: vec![Problem::new("", e.to_string())],
    })?;
    let mut v = Validator::default();
    let manifest = v.manifest(raw);
    if v.problems.is_empty() {
        Ok(manifest)
    } else {
        Err(ManifestError {
            problems: v.problems,
        })
    }
}

impl Validator {
    fn manifest(&mut self, raw: RawManifest) -> Manifest {
        let schema = self.required_string("schema", raw.schema);
        if !schema.is_empty() && schema != SCHEMA_V0_1 {
            let message = format!("must be {}, got {}", quote(SCHEMA_V0_1), quote(&schema));
            self.problem("schema", message);
        }
        let name = self.required_string("name", raw.name);
        let version = self.required_string("version", raw.version);
        let publisher = self.required_string("publisher", raw.publisher);
        if raw.permissions.is_none() {
            self.problem("permissions", "required");
        }
        let (permissions, tools_ok, effects) = match self.section("permissions", raw.permissions) {
            Some(p) => self.permissions(p),
            None => (Permissions::empty(), false, Vec::new()),
        };
        let sandbox = self.sandbox(raw.sandbox, &effects);
        let integrity = self.integrity(raw.integrity);
        let declared = tools_ok.then_some(permissions.tools.as_slice());
        let fs_enforced = permissions.fs.is_enforced();
        let policy = match self.section("policy", raw.policy) {
            Some(p) => self.policy(p, declared, fs_enforced, &permissions.approval_required),
            None => Default::default(),
        };
        self.unknown("", raw.unknown, raw::MANIFEST_FIELDS);
        Manifest {
            schema,
            name,
            version,
            publisher,
            permissions,
            sandbox,
            integrity,
            policy,
        }
    }

    /// Returns the permissions, whether `tools` was readable, and the paths
    /// of effectful declarations (for the sandbox rule).
    fn permissions(&mut self, raw: RawPermissions) -> (Permissions, bool, Vec<String>) {
        let mut effects = Vec::new();
        let tools_ok = matches!(raw.tools, Some(Field::Ok(_)));
        if raw.tools.is_none() {
            self.problem(
                "permissions.tools",
                "required (an empty list declares no tools)",
            );
        }
        let mut tools: Vec<String> = Vec::new();
        let mut first_index: Vec<usize> = Vec::new();
        self.each_string("permissions.tools", raw.tools, |v, i, tool| {
            if let Some(at) = tools.iter().position(|t| *t == tool) {
                let first = first_index[at];
                let message = format!(
                    "{} is already declared at permissions.tools[{first}]",
                    quote(&tool)
                );
                v.problem(format!("permissions.tools[{i}]"), message);
                return;
            }
            if is_effectful(&tool) {
                effects.push(format!("permissions.tools[{i}] {}", quote(&tool)));
            }
            tools.push(tool);
            first_index.push(i);
        });
        let fs = match self.section("permissions.fs", raw.fs) {
            Some(fs) => self.fs(fs),
            None => FsPermissions::default(),
        };
        if !fs.write_roots.is_empty() {
            effects.push("permissions.fs.write_roots".to_owned());
        }
        let net = match self.section("permissions.net", raw.net) {
            Some(net) => self.net(net, &mut effects),
            None => NetPermissions::default(),
        };
        let secrets = self.string_list("permissions.secrets", raw.secrets);
        let exec = self
            .section("permissions.exec", raw.exec)
            .map(|e| self.exec(e));
        if exec.as_ref().is_some_and(|e| !e.allowed_bins.is_empty()) {
            effects.push("permissions.exec.allowed_bins".to_owned());
        }
        let approval_path = "permissions.approval_required";
        let mut approval_required = Vec::new();
        self.each_string(approval_path, raw.approval_required, |v, i, tool| {
            if tools_ok && !tools.contains(&tool) {
                v.undeclared(format!("{approval_path}[{i}]"), &tool);
            }
            approval_required.push(tool);
        });
        let budgets = match self.section("permissions.budgets", raw.budgets) {
            Some(b) => self.budgets(b),
            None => Budgets::default(),
        };
        self.unknown("permissions", raw.unknown, raw::PERMISSIONS_FIELDS);
        let permissions = Permissions {
            tools,
            fs,
            net,
            secrets,
            exec,
            approval_required,
            budgets,
        };
        (permissions, tools_ok, effects)
    }

    fn fs(&mut self, raw: RawFs) -> FsPermissions {
        let read_roots = self.roots("permissions.fs.read_roots", raw.read_roots);
        let write_roots = self.roots("permissions.fs.write_roots", raw.write_roots);
        self.unknown("permissions.fs", raw.unknown, raw::FS_FIELDS);
        FsPermissions {
            read_roots,
            write_roots,
        }
    }

    /// A list of roots: each must normalise to an absolute path.
    fn roots(&mut self, path: &str, raw: Option<raw::List<String>>) -> Vec<String> {
        let mut roots = Vec::new();
        self.each_string(path, raw, |v, i, root| {
            if let Err(e) = paths::normalize_root(&root) {
                let message = format!("{}: {e} (a root must be an absolute path)", quote(&root));
                v.problem(format!("{path}[{i}]"), message);
            }
            roots.push(root);
        });
        roots
    }

    fn net(&mut self, raw: RawNet, effects: &mut Vec<String>) -> NetPermissions {
        let path = "permissions.net.domains";
        if matches!(&raw.domains, Some(Field::Ok(list)) if !list.is_empty()) {
            effects.push(path.to_owned());
        }
        let mut domains = Vec::new();
        self.each_string(
            path,
            raw.domains,
            |v, i, entry| match DomainPattern::parse(&entry) {
                Ok(pattern) => domains.push(pattern),
                Err(e) => v.problem(format!("{path}[{i}]"), domain_message(&entry, &e)),
            },
        );
        self.unknown("permissions.net", raw.unknown, raw::NET_FIELDS);
        NetPermissions { domains }
    }

    fn exec(&mut self, raw: RawExec) -> ExecPermissions {
        let allowed_bins = self.string_list("permissions.exec.allowed_bins", raw.allowed_bins);
        let arg_patterns = self.string_list("permissions.exec.arg_patterns", raw.arg_patterns);
        self.unknown("permissions.exec", raw.unknown, raw::EXEC_FIELDS);
        ExecPermissions {
            allowed_bins,
            arg_patterns,
        }
    }

    fn budgets(&mut self, raw: RawBudgets) -> Budgets {
        let path = |field: &str| format!("permissions.budgets.{field}");
        let defaults = Budgets::default();
        let budgets = Budgets {
            max_steps: self.positive(path("max_steps"), raw.max_steps, defaults.max_steps),
            max_tool_calls: self.positive(
                path("max_tool_calls"),
                raw.max_tool_calls,
                defaults.max_tool_calls,
            ),
            max_output_bytes: self.positive(
                path("max_output_bytes"),
                raw.max_output_bytes,
                defaults.max_output_bytes,
            ),
            timeout_ms: self.positive(path("timeout_ms"), raw.timeout_ms, defaults.timeout_ms),
            max_wall_time_ms: self.positive(
                path("max_wall_time_ms"),
                raw.max_wall_time_ms,
                defaults.max_wall_time_ms,
            ),
            max_model_calls: raw
                .max_model_calls
                .map(|v| self.positive(path("max_model_calls"), Some(v), 1)),
        };
        self.unknown("permissions.budgets", raw.unknown, raw::BUDGETS_FIELDS);
        budgets
    }

    fn sandbox(&mut self, raw: Option<Field<RawSandbox>>, effects: &[String]) -> Sandbox {
        let mut sandbox = Sandbox {
            required: false,
            image: None,
            mounts: Vec::new(),
        };
        if raw.is_none() {
            self.problem("sandbox", "required");
        }
        let Some(raw) = self.section("sandbox", raw) else {
            return sandbox;
        };
        match raw.required {
            None => self.problem("sandbox.required", "required"),
            Some(Field::Bad(v)) => self.expected("sandbox.required", "true or false", &v),
            Some(Field::Ok(required)) => {
                sandbox.required = required;
                if !required && !effects.is_empty() {
                    let message = format!(
                        "must be true when exec, fs.write or network permissions are declared (declared: {})",
                        effects.join(", ")
                    );
                    self.problem("sandbox.required", message);
                }
            }
        }
        sandbox.image = raw.image.map(|image| self.string("sandbox.image", image));
        match raw.mounts {
            None => {}
            Some(Field::Ok(mounts)) => sandbox.mounts = mounts,
            Some(Field::Bad(v)) => self.expected("sandbox.mounts", "a list", &v),
        }
        self.unknown("sandbox", raw.unknown, raw::SANDBOX_FIELDS);
        sandbox
    }

    /// Free-form, but the keys Aegis defines must have Aegis's types.
    fn integrity(&mut self, raw: Option<Value>) -> Value {
        let Some(value) = raw else {
            return Value::Object(Default::default());
        };
        let Value::Object(map) = &value else {
            self.expected("integrity", "a mapping", &value);
            return value;
        };
        match map.get("files") {
            None | Some(Value::Null) => {}
            Some(Value::Object(files)) => {
                for (file, hash) in files.iter().filter(|(_, hash)| !hash.is_string()) {
                    self.expected(key_path("integrity.files", file), "a string", hash);
                }
            }
            Some(other) => self.expected("integrity.files", "a mapping of path to sha256", other),
        }
        for key in ["tree_sha256", "signature"] {
            match map.get(key) {
                None | Some(Value::Null | Value::String(_)) => {}
                Some(other) => self.expected(format!("integrity.{key}"), "a string", other),
            }
        }
        value
    }
}

impl Permissions {
    fn empty() -> Self {
        Permissions {
            tools: Vec::new(),
            fs: FsPermissions::default(),
            net: NetPermissions::default(),
            secrets: Vec::new(),
            exec: None,
            approval_required: Vec::new(),
            budgets: Budgets::default(),
        }
    }
}

/// The domain module's reason, naming the entry once whether or not the
/// reason already quotes it.
pub(super) fn domain_message(entry: &str, error: &DomainError) -> String {
    let reason = error.to_string();
    if reason.contains(&format!("{entry:?}")) {
        reason
    } else {
        format!("{entry:?}: {reason}")
    }
}

fn is_effectful(tool: &str) -> bool {
    EFFECTFUL_TOOLS.iter().any(|e| {
        tool.strip_prefix(e)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}
