//! `repoint run --output kustomize=DIR`: the overlay, built by the real
//! `kubectl kustomize`, gives the same objects as `repoint run`.
//!
//! The kubectl tests are skipped when kubectl is not on PATH, unless
//! `REPOINT_REQUIRE_KUBECTL` is set (CI sets it, so there they cannot be
//! skipped).

use std::path::{Path, PathBuf};

use repoint_tests::{
    Output, corpus_files, objects_by_identity, program_or_skip, repo_root, run_command, temp_dir,
};

fn repoint(args: &[&str], stdin: &str) -> Output {
    run_command(Path::new(env!("CARGO_BIN_EXE_repoint")), args, stdin)
}

fn kubectl() -> Option<PathBuf> {
    program_or_skip("kubectl", "REPOINT_REQUIRE_KUBECTL")
}

/// `kubectl kustomize` of the overlay; `outside` allows inputs outside it.
fn kustomize(kubectl: &Path, dir: &Path, outside: bool) -> String {
    let dir = dir.display().to_string();
    let mut args = vec!["kustomize", &dir];
    if outside {
        args.extend(["--load-restrictor", "LoadRestrictionsNone"]);
    }
    let out = run_command(kubectl, &args, "");
    assert_eq!(out.code, 0, "kubectl kustomize failed: {}", out.stderr);
    out.stdout
}

/// `built` (kubectl's output) holds the objects of `expected` (repoint's),
/// each the same.
fn assert_same_objects(built: &str, expected: &str) {
    let built = objects_by_identity(built);
    let expected = objects_by_identity(expected);
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same objects"
    );
    for (id, object) in &expected {
        assert_eq!(&built[id], object, "{id:?} differs");
    }
}

/// Write the overlay for `inputs` into `dir` and check kubectl builds the
/// objects `repoint run` prints. Returns the kustomization text.
fn assert_equivalent(kubectl: &Path, config: &str, inputs: &[&str], dir: &Path) -> String {
    let target = format!("kustomize={}", dir.display());
    let mut args = vec!["run", "-c", config, "-o", &target];
    args.extend(inputs);
    let out = repoint(&args, "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stdout.is_empty(),
        "the overlay goes to files, not stdout"
    );

    let mut args = vec!["run", "-c", config];
    args.extend(inputs);
    let expected = repoint(&args, "");
    assert_eq!(expected.code, 0, "{}", expected.stderr);

    let outside = inputs.iter().any(|i| {
        !Path::new(i)
            .canonicalize()
            .expect("test I/O")
            .starts_with(dir)
    });
    assert_same_objects(&kustomize(kubectl, dir, outside), &expected.stdout);
    std::fs::read_to_string(dir.join("kustomization.yaml")).expect("kustomization.yaml")
}

fn example_config() -> String {
    repo_root()
        .join("examples/repoint.yaml")
        .display()
        .to_string()
}

#[test]
fn examples_overlay_beside_the_inputs() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-beside");
    let manifests = repo_root().join("examples/manifests").display().to_string();
    let text = assert_equivalent(&kubectl, &example_config(), &[&manifests], &dir);
    // Renames are `images:` entries under the written and the normalized
    // name; the pull secret and the image volume are patches.
    assert!(text.contains("- name: nginx\n  newName: mirror.corp.example/hub/library/nginx\n"));
    assert!(text.contains(
        "- name: docker.io/library/nginx\n  newName: mirror.corp.example/hub/library/nginx\n"
    ));
    assert!(
        text.contains("../"),
        "resources are relative paths:\n{text}"
    );
    let pod_patch =
        std::fs::read_to_string(dir.join("patches/pod-shop-debug.yaml")).expect("patch");
    assert!(pod_patch.contains("/spec/volumes/0/image/reference"));
    assert!(pod_patch.contains("/spec/imagePullSecrets"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| {
            std::fs::metadata(dir.join(p))
                .expect("file")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("generated/secret-shop-corp-registry.yaml"), 0o600);
        assert_eq!(mode("kustomization.yaml"), 0o644);
    }
}

#[test]
fn overlay_above_the_inputs_builds_without_flags() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-above");
    let manifests = dir.join("manifests");
    std::fs::create_dir_all(&manifests).expect("test I/O");
    for entry in std::fs::read_dir(repo_root().join("examples/manifests")).expect("test I/O") {
        let path = entry.expect("test I/O").path();
        std::fs::copy(&path, manifests.join(path.file_name().expect("test I/O")))
            .expect("test I/O");
    }
    let text = assert_equivalent(
        &kubectl,
        &example_config(),
        &[&manifests.display().to_string()],
        &dir,
    );
    assert!(text.contains("- manifests/shop.yaml\n"), "{text}");
}

/// A kustomize base as input, as a vendor's midstream overlay has it: the
/// overlay refers to the base directory, its patches apply to the objects
/// the base builds (name prefix, namespace and the base's own image
/// transform included), and `kubectl kustomize` of the overlay gives what
/// `repoint run` makes of the built base.
#[test]
fn an_overlay_over_a_kustomize_base_refers_to_the_base() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-base");
    let base = dir.join("base");
    std::fs::create_dir_all(&base).expect("test I/O");
    std::fs::copy(
        repo_root().join("examples/manifests/shop.yaml"),
        base.join("shop.yaml"),
    )
    .expect("test I/O");
    std::fs::write(
        base.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamePrefix: vendor-\nnamespace: shop\nresources: [shop.yaml]\nimages:\n- {name: nginx, newTag: '1.27.1'}\n",
    )
    .expect("test I/O");
    let overlay = dir.join("overlay");
    let target = format!("kustomize={}", overlay.display());
    let out = repoint(
        &[
            "run",
            "-c",
            &example_config(),
            "-o",
            &target,
            &base.display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = std::fs::read_to_string(overlay.join("kustomization.yaml")).expect("kustomization");
    assert!(text.contains("resources:\n- ../base\n"), "{text}");

    let built_base = kustomize(&kubectl, &base, false);
    let expected = repoint(&["run", "-c", &example_config(), "-"], &built_base);
    assert_eq!(expected.code, 0, "{}", expected.stderr);
    assert_same_objects(&kustomize(&kubectl, &overlay, false), &expected.stdout);
    assert!(
        objects_by_identity(&expected.stdout)
            .keys()
            .any(|id| id.3.starts_with("vendor-")),
        "the base's name prefix is in what the overlay patches: {}",
        expected.stdout
    );

    // Read without --output kustomize, the base directory is its files:
    // the kustomization is left out, with a warning.
    let out = repoint(
        &["run", "-c", &example_config(), &base.display().to_string()],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("kustomization.yaml: left out"),
        "{}",
        out.stderr
    );
    assert!(!out.stdout.contains("kind: Kustomization"));
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn corpus_overlays_build_to_the_run_output() {
    let Some(kubectl) = kubectl() else { return };
    let mut entries = 0;
    for (i, file) in corpus_files().iter().enumerate() {
        let dir = temp_dir(&format!("kustomize-corpus-{i}"));
        let text = assert_equivalent(
            &kubectl,
            &example_config(),
            &[&file.display().to_string()],
            &dir,
        );
        entries += text.matches("newName:").count();
    }
    assert!(entries > 0, "the corpus has renames kustomize can express");
}

/// Where kustomize's transformer would reach an image repoint leaves
/// alone (a custom resource's `containers`), or repoint renames one
/// kustomize does not reach (`ephemeralContainers`), the entry is dropped
/// and patches carry the change.
#[test]
fn entries_that_would_overreach_become_patches() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-overreach");
    let input = dir.join("in.yaml");
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec:\n  containers:\n  - {name: web, image: nginx:1.27}\n  ephemeralContainers:\n  - {name: dbg, image: busybox}\n---\napiVersion: example.com/v1\nkind: Thing\nmetadata: {name: t, namespace: shop}\nspec:\n  template:\n    containers:\n    - {name: x, image: nginx:1.25}\n",
    )
    .expect("test I/O");
    let config = dir.join("repoint.yaml");
    std::fs::write(
        &config,
        "apiVersion: repoint.dev/v1alpha1\nkind: Config\npolicies:\n- name: mirror\n  module: builtin:registry-mirror\n  settings: {rules: [{match: docker.io, replace: m.example/hub}]}\n",
    )
    .expect("test I/O");
    let overlay = dir.join("overlay");
    let text = assert_equivalent(
        &kubectl,
        &config.display().to_string(),
        &[&input.display().to_string()],
        &overlay,
    );
    assert!(!text.contains("images:"), "{text}");
    let patch =
        std::fs::read_to_string(overlay.join("patches/pod-shop-web.yaml")).expect("test I/O");
    assert!(
        patch.contains("m.example/hub/library/nginx:1.27"),
        "{patch}"
    );
    assert!(patch.contains("m.example/hub/library/busybox"), "{patch}");
}

#[test]
fn standard_input_is_kept_in_the_overlay() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-stdin");
    let shop = std::fs::read_to_string(repo_root().join("examples/manifests/shop.yaml"))
        .expect("test I/O");
    let target = format!("kustomize={}", dir.display());
    let out = repoint(&["run", "-c", &example_config(), "-o", &target, "-"], &shop);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        std::fs::read_to_string(dir.join("stdin.yaml")).expect("test I/O"),
        shop
    );
    let expected = repoint(&["run", "-c", &example_config(), "-"], &shop);
    assert_eq!(
        objects_by_identity(&kustomize(&kubectl, &dir, false)),
        objects_by_identity(&expected.stdout)
    );
}

#[test]
fn regenerating_replaces_the_old_overlay_and_never_a_users() {
    let dir = temp_dir("kustomize-regen");
    let target = format!("kustomize={}", dir.display());
    let examples = repo_root().join("examples/manifests");
    let all = examples.display().to_string();
    let out = repoint(&["run", "-c", &example_config(), "-o", &target, &all], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(dir.join("patches/pod-shop-debug.yaml").exists());

    // Fewer inputs: the patch of the object no longer there goes away.
    let shop = examples.join("shop.yaml").display().to_string();
    let out = repoint(&["run", "-c", &example_config(), "-o", &target, &shop], "");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!dir.join("patches/pod-shop-debug.yaml").exists());
    assert!(dir.join("patches/deployment-shop-storefront.yaml").exists());

    // A kustomization.yaml repoint did not write is left alone.
    let users = temp_dir("kustomize-users");
    std::fs::write(users.join("kustomization.yaml"), "resources: [a.yaml]\n").expect("test I/O");
    let target = format!("kustomize={}", users.display());
    let out = repoint(&["run", "-c", &example_config(), "-o", &target, &shop], "");
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("was not written by repoint"),
        "{}",
        out.stderr
    );
    assert_eq!(
        std::fs::read_to_string(users.join("kustomization.yaml")).expect("test I/O"),
        "resources: [a.yaml]\n"
    );
    assert_eq!(std::fs::read_dir(&users).expect("test I/O").count(), 1);
}

#[test]
fn nothing_is_written_when_an_object_fails() {
    let dir = temp_dir("kustomize-fail");
    let input = dir.join("in.yaml");
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n  - {name: c, image: 'Not A Valid:Image'}\n",
    )
    .expect("test I/O");
    let overlay = dir.join("overlay");
    let target = format!("kustomize={}", overlay.display());
    let out = repoint(
        &[
            "run",
            "-c",
            &example_config(),
            "-o",
            &target,
            &input.display().to_string(),
        ],
        "",
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("nothing was written"), "{}", out.stderr);
    assert!(!overlay.exists());
}

/// An image that reaches a Deployment through a merge key (`<<: *podspec`)
/// is rewritten by the overlay too: kustomize expands the merge as kubectl
/// does, and the overlay's patch lands on the expanded object.
#[test]
fn overlay_over_a_merge_key_builds_the_same_objects() {
    let Some(kubectl) = kubectl() else { return };
    let dir = temp_dir("kustomize-merge");
    let input = dir.join("merged.yaml");
    std::fs::write(
        &input,
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: shared}\n  x-template: &podspec\n    containers:\n    - name: app\n      image: quay.io/org/app:v1\n- apiVersion: apps/v1\n  kind: Deployment\n  metadata: {name: web}\n  spec:\n    selector: {matchLabels: {app: web}}\n    template:\n      metadata: {labels: {app: web}}\n      spec:\n        <<: *podspec\n        hostNetwork: false\n",
    )
    .expect("write input");
    let overlay = dir.join("overlay");
    assert_equivalent(
        &kubectl,
        &example_config(),
        &[&input.display().to_string()],
        &overlay,
    );
}
