//! podnet-apiserver (being built).
