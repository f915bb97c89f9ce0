//! How many function-table entries a component's core modules fill at
//! every instantiation: the part of starting an instance that wasmtime
//! cannot leave for later. wasmtime fills a table lazily, entry by entry on
//! first use, from the active element segments it can apply at compile
//! time (`try_func_table_init` in wasmtime-environ 48), taken in order:
//! function indices at a constant offset, inside the minimum size, of a
//! `funcref` table the module defines with no initial value but a single
//! `ref.func`. The first segment that is not so (into an imported table,
//! at an offset read from a global as a dynamically linked library's
//! `__table_base` is) and every segment after it in that module are
//! applied at instantiation, one function reference at a time.

use anyhow::{Context, Result};
use wasmparser::{
    ElementItems, ElementKind, Encoding, Operator, Parser, Payload, TableInit, TypeRef,
};

/// The entries `wasm`'s (a component's or a core module's) active element
/// segments fill at every instantiation.
pub(crate) fn filled_per_instance(wasm: &[u8]) -> Result<u64> {
    // One entry per module or component being read (`None`: a component).
    let mut open: Vec<Option<Tables>> = Vec::new();
    let mut filled = 0;
    for payload in Parser::new(0).parse_all(wasm) {
        let (module, payload) = match payload.context("reading the component")? {
            Payload::Version { encoding, .. } => {
                open.push((encoding == Encoding::Module).then(Tables::default));
                continue;
            }
            Payload::End(_) => {
                open.pop();
                continue;
            }
            other => match open.last_mut() {
                Some(Some(module)) => (module, other),
                _ => continue,
            },
        };
        match payload {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    if matches!(import?.ty, TypeRef::Table(_)) {
                        module.sizes.push(None);
                    }
                }
            }
            Payload::TableSection(tables) => {
                for table in tables {
                    let table = table?;
                    let prefilled = match table.init {
                        TableInit::RefNull => false,
                        TableInit::Expr(expr) => !is_one_ref_func(&expr)?,
                    };
                    let applicable = table.ty.element_type.is_func_ref() && !prefilled;
                    module.sizes.push(applicable.then_some(table.ty.initial));
                }
            }
            Payload::ElementSection(segments) => {
                for segment in segments {
                    let segment = segment?;
                    let ElementKind::Active {
                        table_index,
                        offset_expr,
                    } = segment.kind
                    else {
                        continue;
                    };
                    let (count, indices) = match segment.items {
                        ElementItems::Functions(items) => (items.count(), true),
                        ElementItems::Expressions(_, items) => (items.count(), false),
                    };
                    let size = module.sizes.get(table_index.unwrap_or(0) as usize);
                    let early = indices
                        && matches!(
                            (constant(&offset_expr)?, size),
                            (Some(offset), Some(Some(size)))
                                if offset + u64::from(count) <= (*size).min(MAX_FUNC_TABLE_SIZE)
                        );
                    module.eager |= !early;
                    if module.eager {
                        filled += u64::from(count);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(filled)
}

/// wasmtime's bound on a table it fills early (`MAX_FUNC_TABLE_SIZE`).
const MAX_FUNC_TABLE_SIZE: u64 = 1 << 20;

/// What decides whether a module's segments are applied early.
#[derive(Default)]
struct Tables {
    /// Per table index (imports first): its minimum size if segments can
    /// fill it early, `None` if imported or otherwise not.
    sizes: Vec<Option<u64>>,
    /// Whether a segment could not be applied early (so neither can the
    /// ones after it).
    eager: bool,
}

/// The offset a constant expression gives, when it is one `i32.const` or
/// `i64.const`.
fn constant(expr: &wasmparser::ConstExpr) -> Result<Option<u64>> {
    let mut ops = expr.get_operators_reader();
    let offset = match ops.read()? {
        Operator::I32Const { value } => u64::from(value.cast_unsigned()),
        Operator::I64Const { value } => value.cast_unsigned(),
        _ => return Ok(None),
    };
    Ok(matches!(ops.read()?, Operator::End).then_some(offset))
}

/// Whether a table's initial value is one `ref.func` (which wasmtime turns
/// into a precomputed table).
fn is_one_ref_func(expr: &wasmparser::ConstExpr) -> Result<bool> {
    let mut ops = expr.get_operators_reader();
    Ok(matches!(ops.read()?, Operator::RefFunc { .. }) && matches!(ops.read()?, Operator::End))
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
        // Past the table's minimum size (100): every instance too.
        assert_eq!(
            filled_per_instance(&module(false, ConstExpr::i32_const(98), 7)).expect("reads"),
            7
        );
    }
}
