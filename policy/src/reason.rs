//! Outcomes and reason codes, spelled exactly as Aegis spells them.

use std::fmt;

/// What a decision lets happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Allow,
    Deny,
    RequireApproval,
}

impl Outcome {
    pub const ALL: &'static [Outcome] = &[Outcome::Allow, Outcome::Deny, Outcome::RequireApproval];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::RequireApproval => "require_approval",
        }
    }
}

/// Why a decision came out as it did. Aegis's codes, plus `RATE_LIMITED`,
/// `MANIFEST_UNAVAILABLE`, `FS_DENY` and `APPROVAL_LIMIT`. Never rename one; add new ones at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    PermissionUndeclared,
    EgressDeny,
    BudgetExceeded,
    LoopDetected,
    TaintedToHighRisk,
    ExecDeny,
    ApprovalRequired,
    Ok,
    RateLimited,
    ManifestUnavailable,
    FsDeny,
    /// The call needs an approval, and its session has as many waiting as
    /// the sidecar allows (`approval.max_pending_per_session`); decided by
    /// the sidecar, never by [`crate::decide`].
    ApprovalLimit,
    /// `policy.sanitize` could not rewrite the call's arguments (a clamped
    /// field that is not a number, arguments that are not an object).
    SanitizeRefused,
}

impl Reason {
    pub const ALL: &'static [Reason] = &[
        Reason::PermissionUndeclared,
        Reason::EgressDeny,
        Reason::BudgetExceeded,
        Reason::LoopDetected,
        Reason::TaintedToHighRisk,
        Reason::ExecDeny,
        Reason::ApprovalRequired,
        Reason::Ok,
        Reason::RateLimited,
        Reason::ManifestUnavailable,
        Reason::FsDeny,
        Reason::ApprovalLimit,
        Reason::SanitizeRefused,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PermissionUndeclared => "PERMISSION_UNDECLARED",
            Reason::EgressDeny => "EGRESS_DENY",
            Reason::BudgetExceeded => "BUDGET_EXCEEDED",
            Reason::LoopDetected => "LOOP_DETECTED",
            Reason::TaintedToHighRisk => "TAINTED_TO_HIGH_RISK",
            Reason::ExecDeny => "EXEC_DENY",
            Reason::ApprovalRequired => "APPROVAL_REQUIRED",
            Reason::Ok => "OK",
            Reason::RateLimited => "RATE_LIMITED",
            Reason::ManifestUnavailable => "MANIFEST_UNAVAILABLE",
            Reason::FsDeny => "FS_DENY",
            Reason::ApprovalLimit => "APPROVAL_LIMIT",
            Reason::SanitizeRefused => "SANITIZE_REFUSED",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These strings are stored in ledgers and matched by dashboards: pin them.
    #[test]
    fn vocabulary_is_pinned() {
        let reasons: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "PERMISSION_UNDECLARED",
                "EGRESS_DENY",
                "BUDGET_EXCEEDED",
                "LOOP_DETECTED",
                "TAINTED_TO_HIGH_RISK",
                "EXEC_DENY",
                "APPROVAL_REQUIRED",
                "OK",
                "RATE_LIMITED",
                "MANIFEST_UNAVAILABLE",
                "FS_DENY",
                "APPROVAL_LIMIT",
                "SANITIZE_REFUSED",
            ]
        );
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(outcomes, ["allow", "deny", "require_approval"]);
    }
}
