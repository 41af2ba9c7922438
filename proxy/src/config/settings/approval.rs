//! `approval:`: how long an approval stands, how a call waits for one, and
//! how many one session may have waiting.

use aegis_policy::ApprovalMode;

use super::{Kind, Setting};

pub const ENV_APPROVAL_MODE: &str = "AEGIS_APPROVAL_MODE";
/// Answering at once works with every client, whatever its own request
/// timeout; `hold` needs clients that wait (README, "Approvals").
pub const DEFAULT_APPROVAL_MODE: ApprovalMode = ApprovalMode::Retry;
pub const APPROVAL_MODE: Setting = Setting::new(
    "approval.mode",
    Kind::Text,
    "retry",
    "how a call that needs approval waits: hold or retry (policy.approvals may say per tool)",
)
.env(ENV_APPROVAL_MODE);

pub const ENV_APPROVAL_TTL_MS: &str = "AEGIS_APPROVAL_TTL_MS";
/// Long enough for a human to see a request and answer it; short enough
/// that an approval nobody used does not stand for the rest of the day.
pub const DEFAULT_APPROVAL_TTL_MS: u64 = 60 * 60 * 1000;
pub const APPROVAL_TTL_MS: Setting = Setting::new(
    "approval.ttl_ms",
    Kind::Integer,
    "3600000",
    "an approval expires this long after it was requested, decided or not",
)
.env(ENV_APPROVAL_TTL_MS);

pub const ENV_APPROVAL_HOLD_TIMEOUT_MS: &str = "AEGIS_APPROVAL_HOLD_TIMEOUT_MS";
/// Five minutes: a person who is around answers within it, and it is
/// within what agents' clients wait for one request (the TypeScript SDK's
/// default is 60 s but progress resets it; the Python SDK waits as long as
/// it is told to).
pub const DEFAULT_APPROVAL_HOLD_TIMEOUT_MS: u64 = 5 * 60 * 1000;
pub const APPROVAL_HOLD_TIMEOUT_MS: Setting = Setting::new(
    "approval.hold_timeout_ms",
    Kind::Integer,
    "300000",
    "in hold mode, how long a call is held open before it is answered pending (at most ttl_ms; unset, cut to it)",
)
.env(ENV_APPROVAL_HOLD_TIMEOUT_MS);

pub const ENV_APPROVAL_MAX_PENDING_PER_SESSION: &str = "AEGIS_APPROVAL_MAX_PENDING_PER_SESSION";
/// Enough for an agent's honest work; few enough that an agent cannot bury
/// its humans in requests.
pub const DEFAULT_APPROVAL_MAX_PENDING_PER_SESSION: u64 = 16;
pub const APPROVAL_MAX_PENDING_PER_SESSION: Setting = Setting::new(
    "approval.max_pending_per_session",
    Kind::Integer,
    "16",
    "approvals one session may have waiting; past it, calls that need one are denied",
)
.env(ENV_APPROVAL_MAX_PENDING_PER_SESSION);

pub const ENV_APPROVAL_MAX_PENDING: &str = "AEGIS_APPROVAL_MAX_PENDING";
/// A session's limit does not bound an agent that may name its own
/// sessions (`identity.session` from the client): this bounds them all.
pub const DEFAULT_APPROVAL_MAX_PENDING: u64 = 1024;
pub const APPROVAL_MAX_PENDING: Setting = Setting::new(
    "approval.max_pending",
    Kind::Integer,
    "1024",
    "approvals waiting in all sessions together; past it, calls that need one are denied",
)
.env(ENV_APPROVAL_MAX_PENDING);

pub const ENV_APPROVAL_WEBHOOK_URL: &str = "AEGIS_APPROVAL_WEBHOOK_URL";
pub const APPROVAL_WEBHOOK_URL: Setting = Setting::noted(
    "approval.webhook_url",
    Kind::Text,
    "none",
    "an http:// or https:// URL POSTed JSON when an approval is requested and when it is decided",
)
.env(ENV_APPROVAL_WEBHOOK_URL);

pub(super) const SETTINGS: &[Setting] = &[
    APPROVAL_MODE,
    APPROVAL_TTL_MS,
    APPROVAL_HOLD_TIMEOUT_MS,
    APPROVAL_MAX_PENDING_PER_SESSION,
    APPROVAL_MAX_PENDING,
    APPROVAL_WEBHOOK_URL,
];
