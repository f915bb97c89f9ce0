//! `docs/contract.md`, from the WIT package in `wit/` and its doc comments.

use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result};
use wit_component::WitPrinter;
use wit_parser::{
    Docs, Function, InterfaceId, Resolve, Type, TypeDefKind, TypeId, TypeOwner, WorldItem, WorldKey,
};

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
        for &type_id in interface.types.values() {
            type_section(w, &resolve, id, type_id)?;
        }
        for function in interface.functions.values() {
            function_section(w, &resolve, function)?;
        }
    }
    Ok(out)
}

/// A type of interface `owner`: its doc comment and a table of its
/// fields or cases.
fn type_section(w: &mut String, resolve: &Resolve, owner: InterfaceId, id: TypeId) -> Result<()> {
    let def = &resolve.types[id];
    let name = wit_type(resolve, &Type::Id(id))?;
    let table = match &def.kind {
        TypeDefKind::Record(record) => {
            let mut rows = String::from("| field | type | meaning |\n|---|---|---|\n");
            for field in &record.fields {
                let ty = wit_type(resolve, &field.ty)?;
                let field_name = escaped(&field.name);
                writeln!(rows, "| `{field_name}` | `{ty}` | {} |", cell(&field.docs))?;
            }
            rows
        }
        TypeDefKind::Enum(e) => {
            let mut rows = String::from("| case | meaning |\n|---|---|\n");
            for case in &e.cases {
                writeln!(rows, "| `{}` | {} |", case.name, cell(&case.docs))?;
            }
            rows
        }
        TypeDefKind::Flags(flags) => {
            let mut rows = String::from("| flag | meaning |\n|---|---|\n");
            for flag in &flags.flags {
                writeln!(rows, "| `{}` | {} |", flag.name, cell(&flag.docs))?;
            }
            rows
        }
        TypeDefKind::Variant(variant) => {
            let mut rows = String::from("| case | payload | meaning |\n|---|---|---|\n");
            for case in &variant.cases {
                let payload = match &case.ty {
                    Some(ty) => format!("`{}`", wit_type(resolve, ty)?),
                    None => "none".to_string(),
                };
                writeln!(
                    rows,
                    "| `{}` | {payload} | {} |",
                    case.name,
                    cell(&case.docs)
                )?;
            }
            rows
        }
        // `use`d from another interface: documented there.
        TypeDefKind::Type(Type::Id(used))
            if resolve.types[*used].owner != TypeOwner::Interface(owner) =>
        {
            return Ok(());
        }
        _ => String::new(),
    };
    writeln!(w, "### `{} {name}`\n", def.kind.as_str())?;
    paragraph(w, &def.docs)?;
    if !table.is_empty() {
        writeln!(w, "{table}")?;
    }
    Ok(())
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
        .map(|p| {
            Ok(format!(
                "{}: {}",
                escaped(&p.name),
                wit_type(resolve, &p.ty)?
            ))
        })
        .collect::<Result<_>>()?;
    let result = match &function.result {
        Some(ty) => format!(" -> {}", wit_type(resolve, ty)?),
        None => String::new(),
    };
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

/// A type as WIT source writes it (`option<string>`, `%resource`), by
/// wit-component's printer.
fn wit_type(resolve: &Resolve, ty: &Type) -> Result<String> {
    let mut printer = WitPrinter::default();
    printer.print_type_name(resolve, ty)?;
    Ok(printer.output.to_string())
}

/// A field or parameter name as WIT source must write it: keywords take a
/// `%`. (wit-component's printer escapes type names, but keeps its
/// keyword check to itself; this is the same list.)
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
