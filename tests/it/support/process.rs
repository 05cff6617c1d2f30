//! Test support: the `wecom-bridge` binary run as a child process (`serve`, CLI commands).

/// The `wecom-bridge` binary built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_wecom-bridge");

/// A free loopback port (bound and released; fine for tests on one machine).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `serve` child process.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub public: String,
    pub admin: String,
}

impl ServeProcess {
    /// Starts `wecom-bridge serve` with `config` in `cwd`, listening on fresh ports, and
    /// waits until it answers `/readyz`.
    pub fn start(config: &std::path::Path, cwd: &std::path::Path) -> ServeProcess {
        let public = format!("127.0.0.1:{}", free_port());
        let admin = format!("127.0.0.1:{}", free_port());
        let child = std::process::Command::new(BIN)
            .args(["--config", config.to_str().unwrap(), "serve"])
            .current_dir(cwd)
            .env("BRIDGE_SERVER__LISTEN", &public)
            .env("BRIDGE_ADMIN__LISTEN", &admin)
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("spawn wecom-bridge serve");
        let p = ServeProcess {
            child,
            public,
            admin,
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(&p.admin) {
                use std::io::{Read, Write};
                let _ = s.write_all(b"GET /readyz HTTP/1.0\r\n\r\n");
                let mut out = String::new();
                let _ = s.read_to_string(&mut out);
                if out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200") {
                    return p;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "serve did not become ready"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// SIGKILL: no shutdown, no flush.
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL on Unix
        self.child.wait().unwrap();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a `wecom-bridge` command to completion; returns (success, stdout, stderr).
pub fn run_cli(
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// [`run_cli`] of `wecom-bridge --config <config> <args…>`.
pub fn run_config(
    config: &std::path::Path,
    args: &[&str],
    cwd: &std::path::Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut all = vec!["--config", config.to_str().unwrap()];
    all.extend_from_slice(args);
    run_cli(&all, cwd, env)
}

/// [`run_cli`] from async tests, off the runtime's worker threads (the child may need servers
/// that run on this runtime).
pub async fn run_cli_async(args: &[&str], cwd: &std::path::Path) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let cwd = cwd.to_path_buf();
    tokio::task::spawn_blocking(move || {
        run_cli(
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            &cwd,
            &[],
        )
    })
    .await
    .unwrap()
}
