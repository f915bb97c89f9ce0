//! A real containerd for tests (Debian's `containerd`), started on a
//! socket of its own with its own root and state, the CRI plugin off:
//! `ctr` then resolves and fetches images with containerd's own resolver,
//! as a node does.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `containerd`, stopped and cleaned up on drop.
#[derive(Debug)]
pub struct Containerd {
    /// The gRPC socket.
    pub socket: PathBuf,
    ctr: PathBuf,
    child: Child,
    dir: PathBuf,
}

impl Containerd {
    /// Start one, or `None` (the test skips) when `containerd` or `ctr` is
    /// not installed or this is not root; CI sets
    /// `REPOINT_REQUIRE_CONTAINERD`, and then either fails the test.
    pub fn start(tag: &str) -> Option<Self> {
        let required = std::env::var_os("REPOINT_REQUIRE_CONTAINERD").is_some();
        let (Some(containerd), Some(ctr)) = (
            crate::find_program("containerd"),
            crate::find_program("ctr"),
        ) else {
            assert!(
                !required,
                "REPOINT_REQUIRE_CONTAINERD is set but containerd or ctr is not on PATH (apt-get install containerd)"
            );
            eprintln!("containerd is not installed (apt-get install containerd): skipping");
            return None;
        };
        let root = {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
        };
        if !root {
            assert!(
                !required,
                "REPOINT_REQUIRE_CONTAINERD is set but containerd needs root"
            );
            eprintln!("containerd needs root: skipping");
            return None;
        }
        let dir = crate::temp_dir(&format!("containerd-{tag}"));
        let socket = dir.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
            dir.join("root").display(),
            dir.join("state").display(),
            socket.display()
        );
        std::fs::write(dir.join("config.toml"), config).expect("containerd config");
        let log = std::fs::File::create(dir.join("containerd.log")).expect("log");
        let child = Command::new(containerd)
            .arg("--config")
            .arg(dir.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let containerd = Self {
            socket,
            ctr,
            child,
            dir,
        };
        crate::wait_for(
            "containerd answers on its socket",
            Duration::from_secs(20),
            || containerd.ctr(&["version"]).ok(),
            || containerd.log(),
        );
        Some(containerd)
    }

    /// Run `ctr` against this containerd: its standard output, or what it
    /// said on failure.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.ctr)
            .arg("--address")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run ctr");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match out.status.success() {
            true => Ok(text(&out.stdout)),
            false => Err(format!("{}{}", text(&out.stdout), text(&out.stderr))),
        }
    }

    /// Fetch `image`'s content (no unpacking) with the registry hosts in
    /// `hosts_dir`, as containerd's CRI plugin resolves with `config_path`.
    pub fn fetch(&self, hosts_dir: &Path, image: &str) -> Result<String, String> {
        let hosts = hosts_dir.display().to_string();
        self.ctr(&["content", "fetch", "--hosts-dir", &hosts, image])
    }

    /// containerd's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
