//! What the controller keeps in memory between reconciles: the compact
//! forms objects are decoded into (`objects`), the store of one record per
//! object (`store`) and the work queue (`queue`). Pure data: nothing here
//! talks to the API server.

pub(crate) mod objects;
pub(crate) mod queue;
pub(crate) mod store;
