//! Property test: Pods written in many YAML styles (block and flow,
//! plain, quoted and tagged scalars, anchors and aliases, comments, two
//! indentation habits, LF and CRLF), changed as the built-in policies
//! change them (images mirrored, pull secrets added, a service account
//! set), always come out as the patched value, by minimal edits alone.

use proptest::prelude::*;
use repoint_core::actions::Action;
use repoint_core::patch::PatchOp;
use repoint_core::{Limits, Stream};
use repoint_tests::{mirror_actions, plan_stream};

#[derive(Debug, Clone)]
enum Quote {
    Plain,
    Single,
    Double,
    Tagged,
}

#[derive(Debug, Clone)]
struct Container {
    name: String,
    image: String,
    quote: Quote,
    anchored: bool,
    comment: bool,
}

#[derive(Debug, Clone)]
enum Secrets {
    Absent,
    EmptyFlow,
    Null,
    ImplicitNull,
    Block(Vec<String>),
    Flow(Vec<String>),
}

#[derive(Debug, Clone)]
struct Pod {
    containers: Vec<Container>,
    /// Reuse the first container's image through an alias in a sidecar.
    alias_sidecar: bool,
    secrets: Secrets,
    flow_spec: bool,
    flow_containers: bool,
    wide: bool,
    crlf: bool,
    document_start: bool,
    trailing_comment: bool,
}

fn container() -> impl Strategy<Value = Container> {
    (
        "[a-z][a-z0-9]{0,6}",
        prop_oneof![
            Just("nginx".to_string()),
            Just("quay.io/org/app:v1".to_string()),
            Just("registry.k8s.io/pause:3.9".to_string()),
            Just("localhost:5000/x@sha256:0000000000000000000000000000000000000000000000000000000000000000".to_string()),
            "[a-z]{1,8}(/[a-z]{1,8}){0,2}(:[a-z0-9.]{1,6})?",
        ],
        prop_oneof![Just(Quote::Plain), Just(Quote::Single), Just(Quote::Double), Just(Quote::Tagged)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(name, image, quote, anchored, comment)| Container {
            name,
            image,
            quote,
            anchored,
            comment,
        })
}

fn secrets() -> impl Strategy<Value = Secrets> {
    let names = prop::collection::vec("[a-z]{1,6}", 1..3);
    prop_oneof![
        Just(Secrets::Absent),
        Just(Secrets::EmptyFlow),
        Just(Secrets::Null),
        Just(Secrets::ImplicitNull),
        names.clone().prop_map(Secrets::Block),
        names.prop_map(Secrets::Flow),
    ]
}

fn pod() -> impl Strategy<Value = Pod> {
    (
        prop::collection::vec(container(), 1..4),
        any::<bool>(),
        secrets(),
        any::<(bool, bool, bool, bool, bool, bool)>(),
    )
        .prop_map(
            |(
                mut containers,
                alias_sidecar,
                secrets,
                (flow_spec, flow_containers, wide, crlf, document_start, trailing_comment),
            )| {
                // Names must differ for the containers to be distinct.
                for (i, c) in containers.iter_mut().enumerate() {
                    c.name = format!("{}{i}", c.name);
                }
                Pod {
                    containers,
                    alias_sidecar,
                    secrets,
                    flow_spec,
                    flow_containers,
                    wide,
                    crlf,
                    document_start,
                    trailing_comment,
                }
            },
        )
}

fn scalar(c: &Container, i: usize) -> String {
    let anchor = if c.anchored || i == 0 {
        format!("&img{i} ")
    } else {
        String::new()
    };
    let text = match c.quote {
        Quote::Plain => c.image.clone(),
        Quote::Single => format!("'{}'", c.image),
        Quote::Double => format!("\"{}\"", c.image),
        Quote::Tagged => format!("!!str {}", c.image),
    };
    format!("{anchor}{text}")
}

fn flow_list(names: &[String]) -> String {
    let items: Vec<String> = names.iter().map(|n| format!("{{name: {n}}}")).collect();
    format!("[{}]", items.join(", "))
}

impl Pod {
    fn text(&self) -> String {
        let ind = if self.wide { "    " } else { "  " };
        let dash = if self.wide { "  - " } else { "- " };
        let under = if self.wide { "    " } else { "  " };
        let mut out = String::new();
        if self.document_start {
            out.push_str("# a pod\n---\n");
        }
        out.push_str("apiVersion: v1\nkind: Pod\nmetadata:\n");
        out.push_str(&format!("{ind}name: p # the name\n"));
        let mut containers: Vec<(String, String)> = self
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), scalar(c, i)))
            .collect();
        if self.alias_sidecar {
            containers.push(("sidecar".into(), "*img0".into()));
        }
        if self.flow_spec {
            let cs: Vec<String> = containers
                .iter()
                .map(|(n, i)| format!("{{name: {n}, image: {i}}}"))
                .collect();
            let mut members = vec![format!("containers: [{}]", cs.join(", "))];
            match &self.secrets {
                Secrets::Absent => {}
                Secrets::EmptyFlow => members.push("imagePullSecrets: []".into()),
                Secrets::Null => members.push("imagePullSecrets: null".into()),
                Secrets::ImplicitNull => members.push("imagePullSecrets: ".into()),
                Secrets::Block(n) | Secrets::Flow(n) => {
                    members.push(format!("imagePullSecrets: {}", flow_list(n)))
                }
            }
            out.push_str(&format!("spec: {{{}}}\n", members.join(", ")));
        } else {
            out.push_str("spec:\n");
            match &self.secrets {
                Secrets::Absent => {}
                Secrets::EmptyFlow => out.push_str(&format!("{ind}imagePullSecrets: []\n")),
                Secrets::Null => out.push_str(&format!("{ind}imagePullSecrets: null\n")),
                Secrets::ImplicitNull => out.push_str(&format!("{ind}imagePullSecrets:\n")),
                Secrets::Flow(n) => {
                    out.push_str(&format!("{ind}imagePullSecrets: {}\n", flow_list(n)))
                }
                Secrets::Block(n) => {
                    out.push_str(&format!("{ind}imagePullSecrets:\n"));
                    for name in n {
                        out.push_str(&format!("{ind}{dash}name: {name}\n"));
                    }
                }
            }
            if self.flow_containers {
                let cs: Vec<String> = containers
                    .iter()
                    .map(|(n, i)| format!("{{name: {n}, image: {i}}}"))
                    .collect();
                out.push_str(&format!("{ind}containers: [{}]\n", cs.join(", ")));
            } else {
                out.push_str(&format!("{ind}containers:\n"));
                for (k, (name, image)) in containers.iter().enumerate() {
                    out.push_str(&format!("{ind}{dash}name: {name}\n"));
                    let comment = self.containers.get(k).is_some_and(|c| c.comment);
                    let comment = if comment { " # pinned" } else { "" };
                    out.push_str(&format!("{ind}{under}image: {image}{comment}\n"));
                }
            }
        }
        if self.trailing_comment {
            out.push_str("# end\n");
        }
        if self.crlf {
            out = out.replace('\n', "\r\n");
        }
        out
    }
}

fn changes(stream: &Stream, secrets: usize, account: bool) -> Vec<(usize, Vec<PatchOp>)> {
    let mut more: Vec<Action> = (0..secrets)
        .map(|i| Action::AddPullSecret(format!("corp{i}")))
        .collect();
    if account {
        more.push(Action::JsonPatch(vec![PatchOp::add(
            "/spec/serviceAccountName",
            "builder".into(),
        )]));
    }
    plan_stream(stream, &[], |sites| mirror_actions(sites, &more))
}

proptest! {
    // A failing case is printed whole (input and output); it is not saved
    // to a regressions file in the tree.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pods_in_every_style_round_trip(pod in pod(), secrets in 0usize..3, account in any::<bool>()) {
        let text = pod.text();
        let stream = Stream::parse("pod.yaml", text.clone(), Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        let changes = changes(&stream, secrets, account);
        let rendered = stream.render_each(&changes);
        prop_assert!(rendered.failures.is_empty(), "{:?}\n{text}", rendered.failures);
        prop_assert!(rendered.rerendered.is_empty(), "re-rendered: {:?}\n{text}", rendered.rerendered);
        let written = rendered.text.to_string();
        let out = Stream::parse("out.yaml", written.clone(), Limits::default())
            .map_err(|e| TestCaseError::fail(format!("{e}\n{written}")))?;
        for (index, ops) in &changes {
            let mut expected = stream.documents()[*index].value.clone();
            repoint_core::patch::apply(&mut expected, ops).expect("apply");
            let got = &out.documents()[*index].value;
            prop_assert!(
                repoint_core::document::first_difference(got, &expected).is_none(),
                "--- input\n{text}\n--- output\n{written}"
            );
        }
        if pod.crlf {
            prop_assert!(!written.replace("\r\n", "").contains('\n'), "{written:?}");
        }
    }
}
