//! The server's Dockerfile cannot be built here (no Docker engine), so it
//! is parsed and checked: known instructions, a multi-stage build whose
//! final stage is empty (`scratch`), a static musl build, and a numeric
//! non-root user before the entrypoint.

use repoint_tests::repo_root;

/// Instructions with continuation lines joined; comments and the parser
/// directive dropped. (instruction, arguments, line)
fn instructions(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let mut pending: Option<(String, usize)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if pending.is_none() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        let (mut joined, start) = pending.take().unwrap_or((String::new(), i + 1));
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                joined.push_str(part);
                joined.push(' ');
                pending = Some((joined, start));
            }
            None => {
                joined.push_str(trimmed);
                let (instruction, args) = joined.split_once(' ').unwrap_or((&joined, ""));
                out.push((
                    instruction.to_ascii_uppercase(),
                    args.trim().to_string(),
                    start,
                ));
            }
        }
    }
    assert!(
        pending.is_none(),
        "the Dockerfile ends inside a continuation"
    );
    out
}

#[test]
fn dockerfile_is_multi_stage_static_and_non_root() {
    let text = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let known = [
        "FROM",
        "RUN",
        "CMD",
        "LABEL",
        "EXPOSE",
        "ENV",
        "ADD",
        "COPY",
        "ENTRYPOINT",
        "VOLUME",
        "USER",
        "WORKDIR",
        "ARG",
        "ONBUILD",
        "STOPSIGNAL",
        "HEALTHCHECK",
        "SHELL",
    ];
    let all = instructions(&text);
    for (instruction, _, line) in &all {
        assert!(
            known.contains(&instruction.as_str()),
            "line {line}: unknown {instruction}"
        );
    }
    let stages: Vec<&(String, String, usize)> =
        all.iter().filter(|(i, _, _)| i == "FROM").collect();
    assert!(stages.len() >= 2, "multi-stage");
    assert!(
        stages[0].1.contains("alpine") && stages[0].1.contains(" AS build"),
        "a musl (static) build stage: {}",
        stages[0].1
    );
    assert_eq!(
        stages.last().map(|s| s.1.as_str()),
        Some("scratch"),
        "an empty final stage"
    );
    let final_stage_start = stages.last().map(|s| s.2).unwrap_or(0);
    let final_stage: Vec<&(String, String, usize)> = all
        .iter()
        .filter(|(_, _, l)| *l >= final_stage_start)
        .collect();
    // Everything the final stage copies comes from the build stage.
    for (instruction, args, line) in &final_stage {
        if instruction == "COPY" {
            assert!(args.contains("--from=build"), "line {line}: {args}");
        }
    }
    let user = final_stage
        .iter()
        .rev()
        .find(|(i, _, _)| i == "USER")
        .expect("a USER in the final stage");
    let uid: u32 = user
        .1
        .split(':')
        .next()
        .and_then(|u| u.parse().ok())
        .expect("a numeric uid");
    assert_ne!(uid, 0, "not root");
    let entrypoint = final_stage
        .iter()
        .find(|(i, _, _)| i == "ENTRYPOINT")
        .expect("an ENTRYPOINT");
    assert!(entrypoint.2 > user.2, "USER comes before the entrypoint");
    let exec: Vec<String> = serde_json::from_str(&entrypoint.1).expect("exec form (a JSON array)");
    assert_eq!(exec, ["/usr/local/bin/repoint"]);
    // The build installs the policies' target and builds the locked tree.
    let runs: String = all
        .iter()
        .filter(|(i, _, _)| i == "RUN")
        .map(|(_, a, _)| a.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(runs.contains("rustup target add wasm32-wasip2"));
    assert!(runs.contains("cargo build --release --locked -p repoint-cli"));
}
