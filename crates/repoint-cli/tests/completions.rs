//! `repoint completions SHELL`: the bash script loads in a real bash and
//! completes subcommands and flags.

use std::path::Path;

use repoint_tests::{find_program, run_command, temp_dir};

#[test]
fn bash_completes_commands_and_flags() {
    let out = run_command(
        Path::new(env!("CARGO_BIN_EXE_repoint")),
        &["completions", "bash"],
        "",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let Some(bash) = find_program("bash") else {
        eprintln!("no bash: skipping");
        return;
    };
    let script = temp_dir("completions").join("repoint.bash");
    std::fs::write(&script, &out.stdout).expect("script");
    // What bash does on TAB: fill COMP_WORDS and call the function.
    let complete = |words: &str| {
        let program = format!(
            "source {}\nCOMP_WORDS=({words})\nCOMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))\n_repoint repoint \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\"\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            script.display()
        );
        let out = run_command(&bash, &["-c", &program], "");
        assert_eq!(out.code, 0, "{}", out.stderr);
        out.stdout
    };
    let commands = complete("repoint ''");
    for command in [
        "run",
        "check",
        "audit",
        "apply",
        "controller",
        "test",
        "completions",
    ] {
        assert!(
            commands.lines().any(|l| l == command),
            "{command} missing:\n{commands}"
        );
    }
    let flags = complete("repoint test --");
    assert!(flags.lines().any(|l| l == "--format"), "{flags}");
    let formats = complete("repoint test --format ''");
    assert_eq!(
        formats.lines().collect::<Vec<_>>(),
        ["text", "junit"],
        "{formats}"
    );
}
