//! The C allocator's tuning for a long-running API server. A large LIST
//! allocates its reply in big buffers on whichever blocking-pool thread
//! serves it; left to its defaults glibc gives each of those threads an
//! arena of its own and raises its mmap threshold after every big free, so
//! the freed buffers stay resident, spread over many arenas.

/// Few arenas, and big buffers always in their own mappings (returned to
/// the system when freed). Called once when the server starts.
pub fn limit_allocator_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes glibc's tuning parameters.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // A fixed threshold also turns off glibc's dynamic raising of it.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Give freed heap memory back to the system, after a large reply.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator's heaps.
    unsafe {
        libc::malloc_trim(0);
    }
}
