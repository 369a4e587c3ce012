//! Everything that talks to the API server: the gateway every Secret,
//! status and Event write goes through, how watches are run, Events, the
//! client-side rate limit and the count of requests by verb and code.

pub(crate) mod api_count;
pub(crate) mod events;
pub(crate) mod gateway;
#[cfg(test)]
pub(crate) mod mock;
pub(crate) mod ratelimit;
pub(crate) mod watch;
