//! Pre-initialized policies: a policy's component with its `configure`
//! already run, so that an evaluation instantiates straight into the
//! configured state.
//!
//! Every object gets a fresh instance (no state carries from one object
//! or admission request to the next), and a fresh instance used to mean
//! running `configure` again: deserializing the settings, compiling globs,
//! and for Python or JavaScript starting the interpreter's module code.
//! That was most of a policy's cost per object. Here, when a policy is
//! configured, wasmtime's pre-initializer (wizer) instruments the
//! component, runs `configure` once with the settings, snapshots every
//! core instance's memories and globals, and writes a new component whose
//! initial state is that snapshot. Instances of the new component start
//! as copy-on-write images of the configured state: fresh and unshared,
//! with nothing to run first.
//!
//! A component's internal state beyond memories and globals (resource
//! handles it holds, tables it grew) cannot be captured. Policies built
//! with repoint's SDKs hold none after `configure`, and a component the
//! instrumentation cannot handle keeps the old path: instantiate and
//! configure for every object. The fallback is logged at debug level.
//!
//! Pre-initializing reads and rewrites the whole component (for a Python
//! policy, 40 MB), so its result is kept in the cache directory, keyed by
//! the component, the settings and this host's wasmtime: a later start
//! reads it back and compiles it from wasmtime's own cache.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Lift, Linker, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::bindings::Policy as PolicyBindings;
use crate::host::HostState;

/// The component of `bytes` with `configure(settings_json)` already run,
/// compiled; from `cache_dir` when it holds it, and kept there otherwise.
/// The caller has checked that `configure` accepts the settings.
/// `store` makes the store `configure` runs in, once the instrumented
/// component is compiled (so that compiling does not count against the
/// deadline).
pub(crate) fn configured(
    linker: &Linker<HostState>,
    store: impl FnOnce() -> Store<HostState>,
    bytes: &[u8],
    settings_json: &str,
    cache_dir: Option<&Path>,
) -> wasmtime::Result<Component> {
    let engine = linker.engine().clone();
    let cached = cache_dir.map(|dir| cache_path(dir, &engine, bytes, settings_json));
    if let Some(path) = &cached
        && let Ok(rewritten) = std::fs::read(path)
    {
        // A cache entry that does not compile (truncated, or from another
        // build) is made again.
        match Component::new(&engine, &rewritten) {
            Ok(component) => return Ok(component),
            Err(e) => tracing::debug!(
                "pre-initialized component {} unusable: {e:#}",
                path.display()
            ),
        }
    }
    let rewritten = rewrite(linker, store, bytes, settings_json)?;
    let component = Component::new(&engine, &rewritten)?;
    if let Some(path) = &cached
        && let Err(e) = keep(path, &rewritten)
    {
        // A cache is an optimization: run without it rather than fail.
        tracing::debug!("cannot keep {}: {e}", path.display());
    }
    Ok(component)
}

/// Where the pre-initialized form of `bytes` with `settings_json` is kept:
/// named by a digest of both, of this crate's version and of the engine's
/// build and settings (as wasmtime's compiled-code cache keys its own), so
/// that any change makes a new entry.
fn cache_path(dir: &Path, engine: &wasmtime::Engine, bytes: &[u8], settings_json: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    use std::hash::{Hash, Hasher};
    let mut engine_hash = std::hash::DefaultHasher::new();
    engine
        .precompile_compatibility_hash()
        .hash(&mut engine_hash);
    let mut digest = Sha256::new();
    for part in [
        env!("CARGO_PKG_VERSION").as_bytes(),
        &engine_hash.finish().to_le_bytes(),
        &(bytes.len() as u64).to_le_bytes(),
        bytes,
        settings_json.as_bytes(),
    ] {
        digest.update(part);
    }
    let name: String = digest
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    dir.join("preinit").join(format!("{name}.wasm"))
}

/// Write `bytes` to `path` whole or not at all (a temporary file beside it,
/// then a rename), so a concurrent start never reads half an entry.
fn keep(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, bytes)?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Instrument the component, run `configure` in it, and write the
/// snapshot as a new component.
fn rewrite(
    linker: &Linker<HostState>,
    store: impl FnOnce() -> Store<HostState>,
    bytes: &[u8],
    settings_json: &str,
) -> wasmtime::Result<Vec<u8>> {
    let mut wizer = Wizer::new();
    // The export stays: the bindings require it, and hosts that do not
    // pre-initialize call it.
    wizer.init_func("configure").keep_init_func(true);
    let (context, instrumented) = wizer.instrument_component(bytes)?;
    let component = Component::new(linker.engine(), &instrumented)?;
    let mut store = store();
    let instance = linker.instantiate(&mut store, &component)?;
    let bindings = PolicyBindings::new(&mut store, &instance)?;
    bindings
        .call_configure(&mut store, settings_json)?
        .map_err(|message| wasmtime::format_err!("configure failed: {message}"))?;
    let mut state = Snapshotting {
        store,
        instance,
        failed: None,
    };
    let rewritten = ready(wizer.snapshot_component(&context, &mut state))??;
    match state.failed {
        Some(e) => Err(e),
        None => Ok(rewritten),
    }
}

/// Gives wizer the instrumented instance's state, through the accessor
/// functions its instrumentation exports. Every call is synchronous: the
/// futures it returns are ready at once.
struct Snapshotting {
    store: Store<HostState>,
    instance: Instance,
    /// The first accessor call that failed. Wizer's trait has no error
    /// path: the calls after it answer defaults, and the snapshot is
    /// thrown away.
    failed: Option<wasmtime::Error>,
}

impl Snapshotting {
    fn call<R: Lift + 'static, T: Default>(
        &mut self,
        instance: &str,
        func: &str,
        take: impl FnOnce(&Store<HostState>, R) -> T,
    ) -> T {
        if self.failed.is_some() {
            return T::default();
        }
        let result = (|| -> wasmtime::Result<R> {
            let (_, exported) = self
                .instance
                .get_export(&mut self.store, None, instance)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}"))?;
            let (_, index) = self
                .instance
                .get_export(&mut self.store, Some(&exported), func)
                .ok_or_else(|| wasmtime::format_err!("no export {instance}#{func}"))?;
            let typed = self
                .instance
                .get_typed_func::<(), (R,)>(&mut self.store, index)?;
            let (value,) = typed.call(&mut self.store, ())?;
            Ok(value)
        })();
        match result {
            Ok(value) => take(&self.store, value),
            Err(e) => {
                self.failed =
                    Some(e.context(format!("reading the snapshot through {instance}#{func}")));
                T::default()
            }
        }
    }
}

impl ComponentInstanceState for Snapshotting {
    fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) -> impl Future<Output = ()> + Send {
        self.call(instance, func, |store, list: WasmList<u8>| {
            contents(list.as_le_slice(store))
        });
        std::future::ready(())
    }

    fn call_func_ret_s32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i32> + Send {
        std::future::ready(self.call(instance, func, |_, v| v))
    }

    fn call_func_ret_s64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = i64> + Send {
        std::future::ready(self.call(instance, func, |_, v| v))
    }

    fn call_func_ret_f32(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u32> + Send {
        std::future::ready(self.call(instance, func, |_, v: f32| v.to_bits()))
    }

    fn call_func_ret_f64(
        &mut self,
        instance: &str,
        func: &str,
    ) -> impl Future<Output = u64> + Send {
        std::future::ready(self.call(instance, func, |_, v: f64| v.to_bits()))
    }
}

/// The output of a future that never waits (wizer's snapshot over the
/// synchronous accessors above); an error if it would.
fn ready<F: Future>(future: F) -> wasmtime::Result<F::Output> {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => Ok(output),
        Poll::Pending => Err(wasmtime::format_err!(
            "the snapshot waited on something, which it never should"
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::chain::Origin;
    use crate::probe::Offline;
    use crate::{ConfiguredPolicy, PolicySource, Runtime, RuntimeOptions, builtins};

    fn runtime(cache_dir: Option<std::path::PathBuf>) -> Arc<Runtime> {
        let options = RuntimeOptions {
            cache_dir,
            concurrency: 4,
            ..RuntimeOptions::default()
        };
        Arc::new(Runtime::new(options, Arc::new(Offline)).expect("runtime"))
    }

    fn counter(rt: &Runtime) -> ConfiguredPolicy {
        let path = builtins::test_policy("misbehave").expect("misbehave built");
        let loaded = Arc::new(rt.load(&PolicySource::File(path.into())).expect("load"));
        rt.configure("counter", loaded, r#"{"mode":"count"}"#)
            .expect("configure")
    }

    /// What the chain of `policy` warns on each of three Pods.
    fn warnings(rt: &Arc<Runtime>, policy: ConfiguredPolicy) -> Vec<String> {
        let chain = rt.chain(vec![policy], Vec::new()).expect("chain");
        (0..3)
            .flat_map(|i| {
                let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": format!("p{i}")},
                                 "spec": {"containers": [{"name": "a", "image": "nginx"}]}});
                let origin = Origin::File { path: "t.yaml".into(), document: i, line: 1 };
                let outcome = chain.evaluate(&pod, &origin).expect("evaluates").expect("relevant");
                outcome.warnings.into_iter().map(|w| w.message)
            })
            .collect()
    }

    #[test]
    fn a_pre_initialized_policy_and_its_fallback_give_every_object_a_fresh_instance() {
        let rt = runtime(None);
        let policy = counter(&rt);
        assert!(policy.configured.is_some(), "pre-initialized");
        let fresh = vec!["evaluation 1 of this instance".to_string(); 3];
        assert_eq!(warnings(&rt, policy.clone()), fresh);
        // The path for components the pre-initializer cannot handle.
        let fallback = ConfiguredPolicy {
            configured: None,
            ..policy
        };
        assert_eq!(warnings(&rt, fallback), fresh);
    }

    #[test]
    fn the_pre_initialized_component_is_cached_and_a_bad_entry_is_made_again() {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = runtime(Some(dir.path().to_path_buf()));
        assert!(counter(&rt).configured.is_some());
        let entries: Vec<_> = std::fs::read_dir(dir.path().join("preinit"))
            .expect("the cache holds the pre-initialized component")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let kept = std::fs::read(&entries[0]).expect("read");
        // Read back: the same entry serves a second configuration.
        assert!(counter(&rt).configured.is_some());
        // A damaged entry is replaced, not trusted.
        std::fs::write(&entries[0], b"not a component").expect("damage");
        let policy = counter(&rt);
        assert!(policy.configured.is_some());
        assert_eq!(std::fs::read(&entries[0]).expect("read"), kept);
        assert_eq!(warnings(&rt, policy).len(), 3);
    }
}
