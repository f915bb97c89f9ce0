//! `docs/contract.md`, from the WIT package in `wit/` and its doc comments.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use wit_parser::{Docs, Function, Resolve, Type, TypeDefKind, TypeOwner, WorldItem, WorldKey};

pub fn render(wit_dir: &Path) -> Result<String> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(wit_dir)
        .with_context(|| format!("parsing {}", wit_dir.display()))?;
    let package = &resolve.packages[package];
    let mut out = String::new();
    let w = &mut out;
    writeln!(w, "# The policy contract: `{}`\n", package.name)?;
    writeln!(w, "{}\n", super::GENERATED)?;
    writeln!(
        w,
        "A policy is a WebAssembly component that implements the `policy` world of the WIT \
         package in `wit/`. This page is that package's documentation, written from its doc \
         comments. The Rust SDK (`crates/repoint-policy`), componentize-py and componentize-js \
         all generate their bindings from the same files; see [the guide](guide.md) for how \
         each language spells these types.\n"
    )?;

    for (name, &id) in &package.worlds {
        let world = &resolve.worlds[id];
        writeln!(w, "## World `{name}`\n")?;
        paragraph(w, &world.docs)?;
        world_items(w, &resolve, "Imports", &world.imports)?;
        world_items(w, &resolve, "Exports", &world.exports)?;
    }

    for (name, &id) in &package.interfaces {
        let interface = &resolve.interfaces[id];
        writeln!(w, "## Interface `{name}`\n")?;
        paragraph(w, &interface.docs)?;
        for (type_name, &type_id) in &interface.types {
            let def = &resolve.types[type_id];
            let type_name = escaped(type_name);
            match &def.kind {
                TypeDefKind::Record(record) => {
                    writeln!(w, "### `record {type_name}`\n")?;
                    paragraph(w, &def.docs)?;
                    writeln!(w, "| field | type | meaning |\n|---|---|---|")?;
                    for field in &record.fields {
                        let ty = type_name_of(&resolve, &field.ty);
                        writeln!(
                            w,
                            "| `{}` | `{ty}` | {} |",
                            escaped(&field.name),
                            cell(&field.docs)
                        )?;
                    }
                    writeln!(w)?;
                }
                TypeDefKind::Enum(e) => {
                    writeln!(w, "### `enum {type_name}`\n")?;
                    paragraph(w, &def.docs)?;
                    writeln!(w, "| case | meaning |\n|---|---|")?;
                    for case in &e.cases {
                        writeln!(w, "| `{}` | {} |", case.name, cell(&case.docs))?;
                    }
                    writeln!(w)?;
                }
                TypeDefKind::Variant(variant) => {
                    writeln!(w, "### `variant {type_name}`\n")?;
                    paragraph(w, &def.docs)?;
                    writeln!(w, "| case | payload | meaning |\n|---|---|---|")?;
                    for case in &variant.cases {
                        let payload = case.ty.as_ref().map_or_else(
                            || "none".to_string(),
                            |t| format!("`{}`", type_name_of(&resolve, t)),
                        );
                        writeln!(w, "| `{}` | {payload} | {} |", case.name, cell(&case.docs))?;
                    }
                    writeln!(w)?;
                }
                // `use`d from another interface: documented there.
                TypeDefKind::Type(Type::Id(used))
                    if resolve.types[*used].owner != TypeOwner::Interface(id) => {}
                other => {
                    writeln!(w, "### `type {type_name}` ({})\n", other.as_str())?;
                    paragraph(w, &def.docs)?;
                }
            }
        }
        for function in interface.functions.values() {
            function_section(w, &resolve, function)?;
        }
    }
    Ok(out)
}

fn world_items<'a>(
    w: &mut String,
    resolve: &Resolve,
    heading: &str,
    items: impl IntoIterator<Item = (&'a WorldKey, &'a WorldItem)>,
) -> Result<()> {
    let mut functions = Vec::new();
    let mut interfaces = Vec::new();
    for (key, item) in items {
        match item {
            WorldItem::Interface { id, .. } => {
                let name = match key {
                    WorldKey::Name(name) => name.clone(),
                    WorldKey::Interface(_) => {
                        resolve.interfaces[*id].name.clone().unwrap_or_default()
                    }
                };
                interfaces.push(format!("[`{name}`](#interface-{name})"));
            }
            WorldItem::Function(function) => functions.push(function),
            WorldItem::Type { .. } => {}
        }
    }
    if interfaces.is_empty() && functions.is_empty() {
        return Ok(());
    }
    writeln!(w, "### {heading}\n")?;
    if !interfaces.is_empty() {
        writeln!(w, "Interfaces: {}.\n", interfaces.join(", "))?;
    }
    for function in functions {
        function_section(w, resolve, function)?;
    }
    Ok(())
}

fn function_section(w: &mut String, resolve: &Resolve, function: &Function) -> Result<()> {
    let params: Vec<String> = function
        .params
        .iter()
        .map(|p| format!("{}: {}", escaped(&p.name), type_name_of(resolve, &p.ty)))
        .collect();
    let result = function
        .result
        .as_ref()
        .map(|t| format!(" -> {}", type_name_of(resolve, t)))
        .unwrap_or_default();
    writeln!(w, "#### `{}`\n", function.name)?;
    writeln!(
        w,
        "```wit\n{}: func({}){result}\n```\n",
        function.name,
        params.join(", ")
    )?;
    paragraph(w, &function.docs)?;
    Ok(())
}

/// A type as WIT writes it.
fn type_name_of(resolve: &Resolve, ty: &Type) -> String {
    let id = match ty {
        Type::Bool => return "bool".into(),
        Type::U8 => return "u8".into(),
        Type::U16 => return "u16".into(),
        Type::U32 => return "u32".into(),
        Type::U64 => return "u64".into(),
        Type::S8 => return "s8".into(),
        Type::S16 => return "s16".into(),
        Type::S32 => return "s32".into(),
        Type::S64 => return "s64".into(),
        Type::F32 => return "f32".into(),
        Type::F64 => return "f64".into(),
        Type::Char => return "char".into(),
        Type::String => return "string".into(),
        Type::ErrorContext => return "error-context".into(),
        Type::Id(id) => *id,
    };
    let def = &resolve.types[id];
    if let Some(name) = &def.name {
        return escaped(name);
    }
    let of = |t: &Option<Type>| {
        t.as_ref()
            .map_or_else(|| "_".to_string(), |t| type_name_of(resolve, t))
    };
    match &def.kind {
        TypeDefKind::Option(t) => format!("option<{}>", type_name_of(resolve, t)),
        TypeDefKind::List(t) => format!("list<{}>", type_name_of(resolve, t)),
        TypeDefKind::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple
                .types
                .iter()
                .map(|t| type_name_of(resolve, t))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        TypeDefKind::Result(r) => match (&r.ok, &r.err) {
            (None, None) => "result".into(),
            (ok, err) => format!("result<{}, {}>", of(ok), of(err)),
        },
        TypeDefKind::Type(t) => type_name_of(resolve, t),
        other => other.as_str().to_string(),
    }
}

/// A name as WIT source must write it: keywords take a `%`.
fn escaped(name: &str) -> String {
    const KEYWORDS: &[&str] = &[
        "as",
        "bool",
        "borrow",
        "char",
        "constructor",
        "enum",
        "export",
        "f32",
        "f64",
        "flags",
        "from",
        "func",
        "future",
        "import",
        "include",
        "interface",
        "list",
        "option",
        "own",
        "package",
        "record",
        "resource",
        "result",
        "s16",
        "s32",
        "s64",
        "s8",
        "static",
        "stream",
        "string",
        "tuple",
        "type",
        "u16",
        "u32",
        "u64",
        "u8",
        "use",
        "variant",
        "with",
        "world",
    ];
    if KEYWORDS.contains(&name) {
        format!("%{name}")
    } else {
        name.to_string()
    }
}

/// Doc comments as a Markdown paragraph.
fn paragraph(w: &mut String, docs: &Docs) -> Result<()> {
    if let Some(text) = &docs.contents {
        writeln!(w, "{}\n", text.trim_end())?;
    }
    Ok(())
}

/// Doc comments as one table cell.
fn cell(docs: &Docs) -> String {
    docs.contents
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}
