//! Files are never half-written and reads are bounded: `--in-place`
//! across files is all or nothing and keeps what a file is (a link, its
//! mode and owner); a file named twice is read once; policy modules and
//! inputs are read to a limit, and only regular files are modules.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use repoint_tests::{MIRROR_AND_SECRETS as CONFIG, Output, documents, run_command, temp_dir};

fn pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: team}}\nspec:\n  containers:\n  - name: app\n    image: nginx:1.25\n"
    )
}

fn repoint(args: &[&str]) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, "")
}

/// A directory with the config and `a.yaml`, `b/b.yaml`.
fn project(tag: &str) -> (PathBuf, String) {
    let dir = temp_dir(tag);
    std::fs::write(dir.join("repoint.yaml"), CONFIG).expect("config");
    std::fs::write(dir.join("token.txt"), "t0ken\n").expect("token");
    std::fs::write(dir.join("a.yaml"), pod("a")).expect("a");
    std::fs::create_dir_all(dir.join("b")).expect("mkdir");
    std::fs::write(dir.join("b/b.yaml"), pod("b")).expect("b");
    let config = dir.join("repoint.yaml").display().to_string();
    (dir, config)
}

fn in_place(config: &str, files: &[&Path]) -> Output {
    let mut args = vec!["run", "-c", config, "--in-place"];
    let files: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    args.extend(files.iter().map(String::as_str));
    repoint(&args)
}

/// `chattr +i`/`-i`; false (the caller skips, saying why) where the
/// machine cannot (not root, or a file system without the flag).
fn immutable(path: &Path, on: bool) -> bool {
    let flag = if on { "+i" } else { "-i" };
    let done = Command::new("chattr")
        .arg(flag)
        .arg(path)
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if on && !done {
        eprintln!("skipped: chattr +i is not possible here (it needs root on ext4 and the like)");
    }
    done
}

#[test]
fn a_file_that_cannot_be_staged_leaves_every_file_as_it_was() {
    let (dir, config) = project("inplace-stage");
    // Nothing can be created in b/, so b.yaml's new text cannot be staged.
    if !immutable(&dir.join("b"), true) {
        return;
    }
    let out = in_place(&config, &[&dir.join("a.yaml"), &dir.join("b/b.yaml")]);
    immutable(&dir.join("b"), false);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("b/b.yaml: cannot create a file beside it"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("a.yaml")).expect("a"),
        pod("a")
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("b/b.yaml")).expect("b"),
        pod("b")
    );
}

#[test]
fn a_file_that_cannot_be_replaced_puts_the_earlier_ones_back() {
    let (dir, config) = project("inplace-commit");
    // b.yaml's new text is staged beside it, but it cannot be replaced.
    if !immutable(&dir.join("b/b.yaml"), true) {
        return;
    }
    let out = in_place(&config, &[&dir.join("a.yaml"), &dir.join("b/b.yaml")]);
    immutable(&dir.join("b/b.yaml"), false);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("b/b.yaml: cannot be replaced")
            && out.stderr.contains("Operation not permitted"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("a.yaml put back as it was"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("a.yaml")).expect("a"),
        pod("a")
    );
    // No staged file is left behind.
    let left: Vec<_> = std::fs::read_dir(dir.join("b")).expect("ls").collect();
    assert_eq!(left.len(), 1, "{left:?}");
}

#[test]
fn a_link_mode_and_owner_are_kept_and_hard_links_refused() {
    let (dir, config) = project("inplace-keep");
    let target = dir.join("b/b.yaml");
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    // Root can give the file away; elsewhere it keeps the runner's own.
    let _ = std::os::unix::fs::chown(&target, Some(4321), Some(4321));
    let before = std::fs::metadata(&target).expect("meta");
    let link = dir.join("link.yaml");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");
    let out = in_place(&config, &[&link]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
    let text = std::fs::read_to_string(&target).expect("target");
    assert!(
        text.contains("mirror.corp/hub/library/nginx:1.25"),
        "{text}"
    );
    let after = std::fs::metadata(&target).expect("meta");
    assert_eq!(after.mode() & 0o7777, 0o640);
    assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));

    let other = dir.join("other-name.yaml");
    std::fs::hard_link(dir.join("a.yaml"), &other).expect("hard link");
    let out = in_place(&config, &[&dir.join("a.yaml")]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("it has 2 hard links"), "{}", out.stderr);
    assert_eq!(std::fs::read_to_string(&other).expect("other"), pod("a"));
}

#[test]
fn a_file_named_twice_is_read_once() {
    let (dir, config) = project("named-twice");
    let a = dir.join("a.yaml");
    let again = dir.join("b/../a.yaml");
    let out = repoint(&[
        "run",
        "-c",
        &config,
        &a.display().to_string(),
        &again.display().to_string(),
    ]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let kinds: Vec<_> = documents(&out.stdout)
        .iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, ["Pod", "Secret"], "{}", out.stdout);
    let out = in_place(&config, &[&a, &again]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let written = std::fs::read_to_string(&a).expect("a");
    let kinds: Vec<_> = documents(&written)
        .iter()
        .map(|d| d["kind"].clone())
        .collect();
    assert_eq!(kinds, ["Pod", "Secret"], "{written}");
}

fn module_config(dir: &Path, module: &Path, limits: &str) -> String {
    let path = dir.join("modules.yaml");
    std::fs::write(
        &path,
        format!(
            "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: p\n  module: {}\n{limits}",
            module.display()
        ),
    )
    .expect("config");
    path.display().to_string()
}

#[test]
fn only_regular_files_of_a_bounded_size_are_modules() {
    let dir = temp_dir("modules");
    let fifo = dir.join("policy.wasm");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for (module, limits, said) in [
        // A FIFO would block forever; a device never ends.
        (fifo.clone(), "", "not a regular file"),
        (PathBuf::from("/dev/zero"), "", "not a regular file"),
    ] {
        let config = module_config(&dir, &module, limits);
        let out = repoint(&["check", "-c", &config, "-"]);
        assert_eq!(out.code, 2, "{}", out.stderr);
        assert!(
            out.stderr.contains(said),
            "{}: {}",
            module.display(),
            out.stderr
        );
    }
    // A sparse 1 GiB file is refused by its size, not read.
    let big = dir.join("big.wasm");
    std::fs::File::create(&big)
        .expect("create")
        .set_len(1 << 30)
        .expect("sparse");
    let out = repoint(&["check", "-c", &module_config(&dir, &big, ""), "-"]);
    assert!(
        out.stderr.contains("larger than 134217728 bytes"),
        "{}",
        out.stderr
    );
    let small = dir.join("small.wasm");
    std::fs::write(&small, vec![0u8; 4096]).expect("write");
    let out = repoint(&[
        "check",
        "-c",
        &module_config(&dir, &small, "limits: {moduleSize: 1Ki}\n"),
        "-",
    ]);
    assert!(
        out.stderr.contains("larger than 1024 bytes"),
        "{}",
        out.stderr
    );
}

#[test]
fn inputs_are_read_to_a_limit() {
    let (dir, config) = project("input-limit");
    let out = repoint(&["images", "--max-input-size", "1", "/dev/zero"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("reading /dev/zero: larger than 1048576 bytes"),
        "{}",
        out.stderr
    );
    // Standard input that never ends.
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let out = Command::new(env!("CARGO_BIN_EXE_repoint"))
        .args(["run", "-c", &config, "--max-input-size", "1"])
        .stdin(zero)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reading standard input: larger than 1048576 bytes"),
        "{stderr}"
    );
    drop(dir);
}
