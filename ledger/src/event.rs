//! The 17 event types of the envelope contract (`spec/envelope.md`).

use std::fmt;
use std::str::FromStr;

macro_rules! event_types {
    ($($variant:ident => $name:literal,)*) => {
        /// What an envelope records. The strings are part of every hash: never
        /// rename one; add new types at the end.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventType { $($variant,)* }

        impl EventType {
            /// Every type, in the spec's order.
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(EventType::$variant => $name,)* }
            }
        }

        impl FromStr for EventType {
            type Err = UnknownEventType;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventType::$variant),)*
                    _ => Err(UnknownEventType(s.to_owned())),
                }
            }
        }
    };
}

event_types! {
    ModelCallStarted => "MODEL_CALL_STARTED",
    ModelCallFinished => "MODEL_CALL_FINISHED",
    ToolCallProposed => "TOOL_CALL_PROPOSED",
    ToolCallAllowed => "TOOL_CALL_ALLOWED",
    ToolCallDenied => "TOOL_CALL_DENIED",
    ToolCallExecuted => "TOOL_CALL_EXECUTED",
    ToolResult => "TOOL_RESULT",
    PolicyDecision => "POLICY_DECISION",
    ApprovalRequested => "APPROVAL_REQUESTED",
    ApprovalDecided => "APPROVAL_DECIDED",
    MemoryRead => "MEMORY_READ",
    MemoryWrite => "MEMORY_WRITE",
    HandoffRequested => "HANDOFF_REQUESTED",
    HandoffCompleted => "HANDOFF_COMPLETED",
    CheckpointCreated => "CHECKPOINT_CREATED",
    Termination => "TERMINATION",
    ErrorRaised => "ERROR_RAISED",
}

/// An event type outside the contract's 17.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown event type {0:?} (expected one of the 17 Aegis event types, e.g. TOOL_CALL_PROPOSED)"
)]
pub struct UnknownEventType(pub String);

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The strings are hashed into every envelope: pin them.
    #[test]
    fn names_are_pinned() {
        let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(
            names,
            [
                "MODEL_CALL_STARTED",
                "MODEL_CALL_FINISHED",
                "TOOL_CALL_PROPOSED",
                "TOOL_CALL_ALLOWED",
                "TOOL_CALL_DENIED",
                "TOOL_CALL_EXECUTED",
                "TOOL_RESULT",
                "POLICY_DECISION",
                "APPROVAL_REQUESTED",
                "APPROVAL_DECIDED",
                "MEMORY_READ",
                "MEMORY_WRITE",
                "HANDOFF_REQUESTED",
                "HANDOFF_COMPLETED",
                "CHECKPOINT_CREATED",
                "TERMINATION",
                "ERROR_RAISED",
            ]
        );
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(*t));
        }
        assert!("tool_call_proposed".parse::<EventType>().is_err());
        assert!("".parse::<EventType>().is_err());
    }
}
