//! Test entry point: `podnet-runtime-shim shim CONTAINER_DIR`, the same
//! contract as `podnet shim`.

fn main() {
    let mut arguments = std::env::args().skip(1);
    if arguments.next().as_deref() != Some("shim") {
        eprintln!("usage: podnet-runtime-shim shim CONTAINER_DIR");
        std::process::exit(2);
    }
    match podnet_runtime::ShimArgs::parse(arguments) {
        Ok(args) => podnet_runtime::shim_main(args),
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(2);
        }
    }
}
