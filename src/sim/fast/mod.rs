//! The fast paths: each gives the report stepping through every event gives, faster, under
//! a condition its file states first, with the test that compares the two.
//!
//! | file | what it skips | applies when (in short) | paths |
//! |---|---|---|---|
//! | `exchange.rs` | a connection's segments between connect() and TIME-WAIT | open loop, fixed delays, client closes, a quiet server | direct, cloud gateway |
//! | `gateway.rs` | a whole exchange's segments at a cloud NAT gateway | one SYN offset per gateway, no timeout within a connection | link–cloud gateway–link |
//! | `bulk_time_wait.rs` | TIME-WAIT entries as events | every connection a whole exchange; no entry can overflow, be skipped or reused | as whole exchanges |
//! | `unseen.rs` | client sockets before their TIME-WAIT | connect() pools, ports per destination, a host that keeps no tuple table or bind buckets | as whole exchanges |
//! | `stream.rs` | queueing a stream's next event | it sorts before everything queued | any |
//! | `parked.rs` | retries into an exhausted pool | fixed retry period, one pool | any |
//! | `bulk_arrivals.rs` | arrivals into an exhausted pool | one pool, `count` on error | any |
//!
//! Off: [`super::Simulation::stepping`] (streams, parked retries, bulk arrivals) and
//! [`super::Simulation::stepping_segments`] (whole exchanges, bulk TIME-WAIT, unseen
//! sockets). A new hop kind or kernel rule that one of them cannot reproduce turns it off
//! in its condition until a test shows it equal.

pub(super) mod bulk_arrivals;
pub(super) mod bulk_time_wait;
pub(super) mod exchange;
pub(super) mod gateway;
pub(super) mod parked;
pub(super) mod stream;
pub(super) mod unseen;
