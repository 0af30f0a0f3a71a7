//! The Mold API client: request signing ([`sign`]), the JSON envelope ([`envelope`]), async
//! jobs ([`jobs`]), typed records ([`types`]) and the per-site client ([`client`]).

pub mod client;
pub mod envelope;
pub mod error;
pub mod job_times;
pub mod jobs;
pub mod sign;
pub mod types;

pub use client::{MoldClient, MoldSettings, is_read_command};
pub use error::{MoldError, MoldErrorKind};
pub use jobs::job_runs;
pub use sign::SignatureAlgorithm;
