//! What `connect()` and `bind()` cost in CPU time: a fixed part plus a cost per candidate
//! port the search examines (issue 26). Calibrated by `portsim live --calibrate`.

use crate::time::Duration;

/// The time a port search holds the calling thread.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnectCost {
    /// Paid once per call.
    pub fixed: Duration,
    /// Paid per candidate port examined.
    pub per_probe: Duration,
}
