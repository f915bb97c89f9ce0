//! The WIT contract parses, has the shape DESIGN.md describes, and every
//! item in it carries a `///` doc comment.

use repoint_tests::repo_root;
use wit_parser::{Docs, Resolve, TypeDefKind, WorldItem, WorldKey};

fn load() -> (Resolve, wit_parser::PackageId) {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve
        .push_dir(repo_root().join("wit"))
        .expect("wit/ parses");
    (resolve, pkg)
}

#[test]
fn package_and_world_shape() {
    let (resolve, pkg) = load();
    let package = &resolve.packages[pkg];
    assert_eq!(package.name.to_string(), "repoint:policy@0.1.0");
    let world = &resolve.worlds[package.worlds["policy"]];
    let name = |k: &WorldKey| resolve.name_world_key(k);
    let exports: Vec<String> = world.exports.keys().map(name).collect();
    assert_eq!(exports, ["info", "configure", "evaluate"]);
    let imports: Vec<String> = world
        .imports
        .iter()
        .filter(|(_, item)| matches!(item, WorldItem::Interface { .. }))
        .map(|(k, _)| name(k))
        .collect();
    assert!(
        imports.contains(&"repoint:policy/host@0.1.0".to_string()),
        "{imports:?}"
    );
    assert!(
        imports.contains(&"repoint:policy/types@0.1.0".to_string()),
        "{imports:?}"
    );

    let types = &resolve.interfaces[package.interfaces["types"]];
    let action = &resolve.types[types.types["action"]];
    let TypeDefKind::Variant(v) = &action.kind else {
        panic!("action is not a variant")
    };
    let cases: Vec<&str> = v.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        cases,
        [
            "set-image",
            "add-pull-secret",
            "ensure-pull-secret",
            "patch-service-account",
            "deny",
            "warn",
            "json-patch"
        ]
    );
    let host = &resolve.interfaces[package.interfaces["host"]];
    assert!(host.functions.contains_key("log"));
    assert!(host.functions.contains_key("probe-image"));
}

#[test]
fn every_item_is_documented() {
    let (resolve, pkg) = load();
    let package = &resolve.packages[pkg];
    let mut missing = Vec::new();
    let mut check = |what: String, docs: &Docs| {
        if docs.contents.as_deref().is_none_or(|d| d.trim().is_empty()) {
            missing.push(what);
        }
    };
    for (name, id) in &package.interfaces {
        let iface = &resolve.interfaces[*id];
        check(format!("interface {name}"), &iface.docs);
        for (fname, f) in &iface.functions {
            check(format!("{name}.{fname}"), &f.docs);
        }
        for (tname, tid) in &iface.types {
            let ty = &resolve.types[*tid];
            if matches!(ty.kind, TypeDefKind::Type(wit_parser::Type::Id(_))) {
                continue; // `use`d from another interface, documented there
            }
            check(format!("{name}.{tname}"), &ty.docs);
            match &ty.kind {
                TypeDefKind::Record(r) => r
                    .fields
                    .iter()
                    .for_each(|f| check(format!("{tname}.{}", f.name), &f.docs)),
                TypeDefKind::Variant(v) => v
                    .cases
                    .iter()
                    .for_each(|c| check(format!("{tname}.{}", c.name), &c.docs)),
                TypeDefKind::Enum(e) => e
                    .cases
                    .iter()
                    .for_each(|c| check(format!("{tname}.{}", c.name), &c.docs)),
                _ => {}
            }
        }
    }
    for (name, id) in &package.worlds {
        let world = &resolve.worlds[*id];
        check(format!("world {name}"), &world.docs);
        for (key, item) in &world.exports {
            if let WorldItem::Function(f) = item {
                check(
                    format!("{name} export {}", resolve.name_world_key(key)),
                    &f.docs,
                );
            }
        }
    }
    assert!(missing.is_empty(), "undocumented WIT items: {missing:?}");
}
