//! podnet-model: the Kubernetes resource model as pure functions. The registry
//! of resources (group/version/kind, plural, scope, short names, categories,
//! subresources), defaulting, validation with field paths, OpenAPI documents
//! and strict unknown-field detection, label and field selectors, JSON / merge /
//! strategic-merge patches and server-side apply, and kubectl Table printers.
//! Objects are `serde_json::Value`s in their wire form. No I/O happens here.

pub mod defaults;
pub mod error;
pub mod names;
pub mod openapi_proto;
pub mod patch;
pub mod registry;
pub mod schema;
pub mod selector;
pub mod ssa;
pub mod table;
pub mod validation;

pub use error::ModelError;
pub use registry::ResourceInfo;
