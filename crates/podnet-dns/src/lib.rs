//! podnet-dns (being built).
