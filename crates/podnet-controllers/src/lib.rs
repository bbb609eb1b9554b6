//! podnet-controllers (being built).
