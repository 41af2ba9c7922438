//! The upstream's answer to a POST, relayed to the agent while the calls it
//! answers are settled ([`crate::mcp::settle`]): [`json`] reads a JSON
//! answer whole (bounded), [`stream`] relays an event stream event by event.

pub mod json;
pub mod stream;
