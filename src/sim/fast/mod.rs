//! The fast paths: each reproduces what stepping gives, faster, under a stated condition.

pub(super) mod bulk_arrivals;
pub(super) mod bulk_time_wait;
pub(super) mod exchange;
pub(super) mod parked;
pub(super) mod stream;
pub(super) mod unseen;
