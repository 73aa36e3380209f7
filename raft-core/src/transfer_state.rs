//! The state of a leadership transfer under way. A leaf: the rules in `transfer.rs` drive it.

use crate::types::NodeId;

/// A leadership transfer under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Transfer {
    pub(crate) target: NodeId,
    pub(crate) elapsed: u32,
    pub(crate) timeout_now_sent: bool,
}
