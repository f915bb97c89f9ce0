//! The toolchain is pinned to an exact release, so a new stable release
//! (and its lints) cannot change what CI builds without a commit here; the
//! workspace's `rust-version` says the same release.

use repoint_tests::repo_root;

#[test]
fn the_toolchain_is_an_exact_release_and_the_workspace_agrees() {
    let toolchain = std::fs::read_to_string(repo_root().join("rust-toolchain.toml"))
        .expect("rust-toolchain.toml");
    let channel = toolchain
        .lines()
        .find_map(|l| l.trim().strip_prefix("channel"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("a channel");
    let parts: Vec<&str> = channel.split('.').collect();
    assert!(
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())),
        "channel {channel:?} is not an exact release like 1.95.0"
    );
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("rust-version"))
        .and_then(|rest| rest.split('"').nth(1))
        .expect("rust-version");
    assert!(
        channel.starts_with(&format!("{rust_version}.")) || channel == rust_version,
        "rust-version {rust_version} and the toolchain {channel} disagree"
    );
}
