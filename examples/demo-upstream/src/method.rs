//! The JSON-RPC methods this server counts.

/// JSON-RPC methods, a closed set for counting (the rest is `Other`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Initialize,
    ServerDiscover,
    Ping,
    ToolsList,
    ToolsCall,
    Initialized,
    Cancelled,
    Other,
}

impl Method {
    /// Every method but `Other`, in `index` order.
    pub(crate) const KNOWN: [Method; 7] = [
        Method::Initialize,
        Method::ServerDiscover,
        Method::Ping,
        Method::ToolsList,
        Method::ToolsCall,
        Method::Initialized,
        Method::Cancelled,
    ];

    pub(crate) fn from_name(name: &str) -> Method {
        match name {
            "initialize" => Method::Initialize,
            "server/discover" => Method::ServerDiscover,
            "ping" => Method::Ping,
            "tools/list" => Method::ToolsList,
            "tools/call" => Method::ToolsCall,
            "notifications/initialized" => Method::Initialized,
            "notifications/cancelled" => Method::Cancelled,
            _ => Method::Other,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Initialize => "initialize",
            Method::ServerDiscover => "server/discover",
            Method::Ping => "ping",
            Method::ToolsList => "tools/list",
            Method::ToolsCall => "tools/call",
            Method::Initialized => "notifications/initialized",
            Method::Cancelled => "notifications/cancelled",
            Method::Other => "other",
        }
    }

    /// Its counter's index; `None` for `Other`.
    pub(crate) fn index(self) -> Option<usize> {
        match self {
            Method::Other => None,
            known => Some(known as usize),
        }
    }
}
