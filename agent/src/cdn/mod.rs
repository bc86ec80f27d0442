//! The mini CDN edge (`lab-agent cdn`): a cache in front of the file store and the app.
//!
//! - [`cache`]: the byte-bounded cache and its two eviction policies (LRU, S3-FIFO).

pub mod cache;
