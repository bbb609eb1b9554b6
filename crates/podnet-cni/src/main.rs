//! The `podnet-cni` plugin executable: reads the CNI environment and the
//! network configuration on stdin, prints the result or the error JSON.

use std::io::{Read, Write};
use std::process::ExitCode;

use podnet_cni::plugin::{self, CniEnvironment};
use podnet_cni::spec;

fn main() -> ExitCode {
    let environment = CniEnvironment::from_lookup(|name| std::env::var(name).ok());
    let mut stdin = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut stdin);
    let cni_version = serde_json::from_slice::<serde_json::Value>(&stdin)
        .ok()
        .and_then(|value| {
            value
                .get("cniVersion")
                .and_then(|v| v.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| spec::LATEST_VERSION.to_string());
    let mut stdout = std::io::stdout().lock();
    match plugin::run(&environment, &stdin) {
        Ok(Some(output)) => {
            let _ = writeln!(stdout, "{output}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(stdout, "{}", spec::error_json(&cni_version, &error));
            ExitCode::FAILURE
        }
    }
}
