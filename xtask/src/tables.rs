//! How many function-table entries a component's core modules fill at
//! every instantiation: the part of starting an instance that wasmtime
//! cannot leave for later. wasmtime fills a table lazily, entry by entry on
//! first use, from the active element segments it can apply at compile
//! time: those at a constant offset into a table the module defines
//! (`try_func_table_init` in wasmtime-environ). A segment into an imported
//! table, or at an offset read from a global (a dynamically linked
//! library's `__table_base`), is applied at instantiation, one function
//! reference at a time; and once one cannot be applied early, none after it
//! in that module is.

use anyhow::{Context, Result};
use wasmparser::{ElementItems, ElementKind, Encoding, Operator, Parser, Payload, TypeRef};

/// The entries `component`'s (or a core module's) active element
/// segments fill at every instantiation.
pub(crate) fn filled_per_instance(wasm: &[u8]) -> Result<u64> {
    // One entry per module or component being read: for a module, the
    // tables it imports and whether its segments are still applied early.
    let mut open: Vec<Option<Module>> = Vec::new();
    let mut filled = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.context("reading the component")? {
            Payload::Version { encoding, .. } => open.push(match encoding {
                Encoding::Module => Some(Module::default()),
                Encoding::Component => None,
            }),
            Payload::End(_) => {
                open.pop();
            }
            Payload::ImportSection(imports) => {
                if let Some(Some(module)) = open.last_mut() {
                    for import in imports.into_imports() {
                        if matches!(import?.ty, TypeRef::Table(_)) {
                            module.imported_tables += 1;
                        }
                    }
                }
            }
            Payload::ElementSection(segments) => {
                let Some(Some(module)) = open.last_mut() else {
                    continue;
                };
                for segment in segments {
                    let segment = segment?;
                    let ElementKind::Active {
                        table_index,
                        offset_expr,
                    } = segment.kind
                    else {
                        continue;
                    };
                    let constant = {
                        let mut ops = offset_expr.get_operators_reader();
                        matches!(
                            ops.read()?,
                            Operator::I32Const { .. } | Operator::I64Const { .. }
                        ) && matches!(ops.read()?, Operator::End)
                    };
                    let defined = table_index.unwrap_or(0) >= module.imported_tables;
                    module.eager |= !(constant && defined);
                    if module.eager {
                        filled += u64::from(match segment.items {
                            ElementItems::Functions(items) => items.count(),
                            ElementItems::Expressions(_, items) => items.count(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
    Ok(filled)
}

#[derive(Default)]
struct Module {
    imported_tables: u32,
    /// Whether a segment could not be applied early (so neither can the
    /// ones after it).
    eager: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasm_encoder::{
        ConstExpr, ElementSection, Elements, EntityType, FunctionSection, ImportSection, Module,
        RefType, TableSection, TableType, TypeSection, ValType,
    };

    /// A module of `functions` functions whose one segment of all of them
    /// goes into table 0 at `offset`, the table imported or its own.
    fn module(imported_table: bool, offset: ConstExpr, functions: u32) -> Vec<u8> {
        let table = TableType {
            element_type: RefType::FUNCREF,
            table64: false,
            minimum: 100,
            maximum: None,
            shared: false,
        };
        let mut m = Module::new();
        let mut types = TypeSection::new();
        types.ty().function([], []);
        m.section(&types);
        let mut imports = ImportSection::new();
        imports.import(
            "env",
            "__table_base",
            EntityType::Global(wasm_encoder::GlobalType {
                val_type: ValType::I32,
                mutable: false,
                shared: false,
            }),
        );
        if imported_table {
            imports.import("env", "__indirect_function_table", EntityType::Table(table));
        }
        m.section(&imports);
        let mut funcs = FunctionSection::new();
        (0..functions).for_each(|_| {
            funcs.function(0);
        });
        m.section(&funcs);
        if !imported_table {
            let mut tables = TableSection::new();
            tables.table(table);
            m.section(&tables);
        }
        let mut elements = ElementSection::new();
        let indices: Vec<u32> = (0..functions).collect();
        elements.active(Some(0), &offset, Elements::Functions(indices.into()));
        m.section(&elements);
        let mut code = wasm_encoder::CodeSection::new();
        (0..functions).for_each(|_| {
            let mut f = wasm_encoder::Function::new([]);
            f.instruction(&wasm_encoder::Instruction::End);
            code.function(&f);
        });
        m.section(&code);
        m.finish()
    }

    #[test]
    fn only_segments_wasmtime_cannot_apply_early_count() {
        // Its own table at a constant offset: filled lazily.
        assert_eq!(
            filled_per_instance(&module(false, ConstExpr::i32_const(1), 7)).expect("reads"),
            0
        );
        // An imported table, or an offset from a global: every instance.
        assert_eq!(
            filled_per_instance(&module(true, ConstExpr::i32_const(1), 7)).expect("reads"),
            7
        );
        assert_eq!(
            filled_per_instance(&module(false, ConstExpr::global_get(0), 5)).expect("reads"),
            5
        );
    }
}
