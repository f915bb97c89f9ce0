//! The kit for writing a repoint policy in Rust.
//!
//! A policy is a WebAssembly component implementing the `policy` world of
//! `wit/` (package `repoint:policy@0.1.0`). With this crate it is a type that
//! implements [`Policy`] and one [`export_policy!`] line:
//!
//! ```ignore
//! use repoint_policy::prelude::*;
//!
//! #[derive(Default, serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Settings { registry: String }
//!
//! struct NoLatest;
//!
//! impl Policy for NoLatest {
//!     type Settings = Settings;
//!     fn info() -> Info { Info::validating("no-latest", "Deny :latest images") }
//!     fn evaluate(_: &Settings, resource: &Resource) -> Result<Vec<Action>, String> {
//!         Ok(resource.images.iter()
//!             .filter(|site| site.image.tag.as_deref() == Some("latest"))
//!             .map(|site| Action::Deny(format!("{} uses :latest", site.written)))
//!             .collect())
//!     }
//! }
//!
//! export_policy!(NoLatest);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the
//! `.wasm` in `target/wasm32-wasip2/release/` is the policy.
//!
//! What the SDK adds to the raw bindings:
//! - settings parsed from JSON into your own serde type (unknown keys are
//!   rejected if your type says `deny_unknown_fields`), validated once in
//!   `configure`, and handed to every `evaluate`;
//! - conversions between the WIT `image-ref` and [`repoint_core::ImageRef`],
//!   so policies use the host's own image parser ([`parse_image`]) and its
//!   matching ([`ImagePattern`], [`LabelSelector`], [`Glob`]);
//! - [`log`] and [`probe_image`], which also work in native unit tests;
//! - [`Policy::reads`], the parts of a resource the policy reads, which
//!   lets the host skip evaluations whose answer it already has.
//!
//! Depends on repoint-core (the image parser and patterns, built for
//! `wasm32-wasip2`) and on wit-bindgen; nothing of the host.

pub mod bindings {
    //! Raw bindings generated from `wit/` by wit-bindgen.
    #![allow(
        missing_docs,
        unsafe_code,
        unused_qualifications,
        missing_debug_implementations
    )]
    wit_bindgen::generate!({
        path: "../../wit",
        world: "selective-policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_bindings",
        default_bindings_module: "::repoint_policy::bindings",
    });
}

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;

pub use bindings::repoint::policy::host::{LogLevel, ProbeResult};
pub use bindings::repoint::policy::types::{
    Action, EnsurePullSecret, FileOrigin, ImageRef as WitImageRef, ImageSite, Operation, Origin,
    PatchOp, PatchOpKind, PatchServiceAccount, PolicyInfo, Resource, ResourceParts, SetImage,
    SiteKind,
};
pub use repoint_core::glob::Glob;
pub use repoint_core::matching::{ImagePattern, LabelSelector};
pub use repoint_core::mirror;
pub use repoint_core::{ImageRef, RegistryPath};

/// Everything a policy usually needs.
pub mod prelude {
    pub use crate::{
        Action, Glob, ImagePattern, ImageRef, Info, LabelSelector, Policy, ProbeResult, Resource,
        ResourceExt, ResourceParts, export_policy, log, parse_image, probe_image, set_image,
    };
}

/// What a policy says about itself (the WIT `policy-info`).
#[derive(Debug, Clone)]
pub struct Info {
    /// Short name.
    pub name: String,
    /// Version; defaults to the crate's version via [`Info::version`].
    pub version: String,
    /// One sentence.
    pub description: String,
    /// Whether it may change objects.
    pub mutating: bool,
    /// JSON Schema of the settings.
    pub settings_schema: Option<String>,
}

impl Info {
    /// A policy that changes objects.
    pub fn mutating(name: &str, description: &str) -> Self {
        Self {
            name: name.into(),
            version: "0.1.0".into(),
            description: description.into(),
            mutating: true,
            settings_schema: None,
        }
    }

    /// A policy that only denies or warns.
    pub fn validating(name: &str, description: &str) -> Self {
        Self {
            mutating: false,
            ..Self::mutating(name, description)
        }
    }

    /// Set the version (use `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// Publish a JSON Schema for the settings.
    pub fn settings_schema(mut self, schema: &str) -> Self {
        self.settings_schema = Some(schema.into());
        self
    }
}

/// A policy: one rule about images and pull secrets.
pub trait Policy: 'static {
    /// The settings, deserialized from the config's `settings:` JSON.
    type Settings: serde::de::DeserializeOwned + 'static;

    /// Describe the policy.
    fn info() -> Info;

    /// Check settings beyond what deserialization checks. The message should
    /// name the offending setting.
    fn validate(_settings: &Self::Settings) -> Result<(), String> {
        Ok(())
    }

    /// Decide what to do with one resource.
    fn evaluate(settings: &Self::Settings, resource: &Resource) -> Result<Vec<Action>, String>;

    /// The parts of a resource `evaluate` reads under `settings`, beyond
    /// the ones always given (`api_version`, `kind`, `images`,
    /// `pull_secrets_pointer`). The host empties the others, and when
    /// `object-json` is not among them it may answer a resource from an
    /// earlier evaluation of the same parts instead of calling `evaluate`
    /// (the `selective-policy` world). The default is every part.
    fn reads(_settings: &Self::Settings) -> ResourceParts {
        ResourceParts::all()
    }
}

thread_local! {
    /// Settings stored by `configure`. A component instance is
    /// single-threaded and lives for one resource (or one configuration
    /// check), so nothing leaks between requests.
    static SETTINGS: RefCell<Option<Box<dyn Any>>> = const { RefCell::new(None) };
}

/// Parse and validate settings JSON for `P`. A parse error names the
/// setting (`rules[0]`), not a position in the JSON the host encoded
/// (which the user never wrote: the host locates the config's line).
pub fn parse_settings<P: Policy>(json: &str) -> Result<P::Settings, String> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let settings: P::Settings = serde_path_to_error::deserialize(&mut deserializer)
        .map_err(|e| settings_error(e.path(), e.inner()))?;
    P::validate(&settings)?;
    Ok(settings)
}

/// "invalid settings: rules[0]: unknown field ..." without serde_json's
/// " at line 1 column 57".
fn settings_error(path: &serde_path_to_error::Path, e: &serde_json::Error) -> String {
    let text = e.to_string();
    let position = format!(" at line {} column {}", e.line(), e.column());
    let message = text.strip_suffix(&position).unwrap_or(&text);
    let path = path.to_string();
    if path.is_empty() || path == "." {
        format!("invalid settings: {message}")
    } else {
        format!("invalid settings: {path}: {message}")
    }
}

/// Connects a [`Policy`] to the generated bindings; used by
/// [`export_policy!`], which implements the generated `Guest` trait by
/// calling these.
#[derive(Debug)]
pub struct Adapter<P>(PhantomData<P>);

impl<P: Policy> Adapter<P> {
    /// The WIT `info` export.
    pub fn info() -> PolicyInfo {
        let i = P::info();
        PolicyInfo {
            name: i.name,
            version: i.version,
            description: i.description,
            mutating: i.mutating,
            settings_schema: i.settings_schema,
        }
    }

    /// The WIT `configure` export.
    pub fn configure(settings_json: String) -> Result<(), String> {
        let settings = parse_settings::<P>(&settings_json)?;
        SETTINGS.with(|s| *s.borrow_mut() = Some(Box::new(settings)));
        Ok(())
    }

    /// The WIT `evaluate` export.
    pub fn evaluate(resource: Resource) -> Result<Vec<Action>, String> {
        Self::with_settings(|settings| P::evaluate(settings, &resource))
            .ok_or_else(|| "evaluate called before configure".to_string())?
    }

    /// The WIT `reads` export: every part when (against the contract) it
    /// is called before `configure`.
    pub fn reads() -> ResourceParts {
        Self::with_settings(P::reads).unwrap_or_else(ResourceParts::all)
    }

    fn with_settings<R>(f: impl FnOnce(&P::Settings) -> R) -> Option<R> {
        SETTINGS.with(|s| {
            let stored = s.borrow();
            let settings = stored.as_ref()?.downcast_ref::<P::Settings>()?;
            Some(f(settings))
        })
    }
}

/// Export a [`Policy`] as the component's `selective-policy` world (the
/// `policy` world and its `reads`).
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        #[doc(hidden)]
        struct __RepointPolicyExport;

        impl $crate::bindings::Guest for __RepointPolicyExport {
            fn info() -> $crate::PolicyInfo {
                $crate::Adapter::<$policy>::info()
            }
            fn configure(settings_json: String) -> Result<(), String> {
                $crate::Adapter::<$policy>::configure(settings_json)
            }
            fn evaluate(resource: $crate::Resource) -> Result<Vec<$crate::Action>, String> {
                $crate::Adapter::<$policy>::evaluate(resource)
            }
            fn reads() -> $crate::ResourceParts {
                $crate::Adapter::<$policy>::reads()
            }
        }

        $crate::bindings::__export_policy_bindings!(__RepointPolicyExport with_types_in $crate::bindings);
    };
}

impl From<&WitImageRef> for ImageRef {
    fn from(r: &WitImageRef) -> Self {
        ImageRef {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
        }
    }
}

impl From<&ImageRef> for WitImageRef {
    fn from(r: &ImageRef) -> Self {
        WitImageRef {
            registry: r.registry.clone(),
            repository: r.repository.clone(),
            tag: r.tag.clone(),
            digest: r.digest.clone(),
        }
    }
}

/// Parse and normalize an image reference with the host's parser.
pub fn parse_image(s: &str) -> Result<ImageRef, String> {
    ImageRef::parse(s).map_err(|e| format!("invalid image reference {s:?}: {e}"))
}

/// A `set-image` action for `site`.
pub fn set_image(site: &ImageSite, image: &ImageRef) -> Action {
    Action::SetImage(SetImage {
        pointer: site.pointer.clone(),
        image: image.into(),
    })
}

/// Convenience accessors on a resource.
pub trait ResourceExt {
    /// Each image site with its image as a [`ImageRef`].
    fn image_refs(&self) -> Vec<(&ImageSite, ImageRef)>;
    /// A label's value.
    fn label(&self, key: &str) -> Option<&str>;
    /// Labels as `(key, value)` pairs, for [`LabelSelector::matches`].
    fn label_pairs(&self) -> Vec<(&str, &str)>;
    /// The whole object, parsed.
    fn object(&self) -> serde_json::Value;
    /// Whether the object's namespace matches one of `namespaces` (names or
    /// globs): what every built-in's `excludeNamespaces` means. An object
    /// whose manifest leaves its namespace to the client is in none.
    fn in_namespaces(&self, namespaces: &[Glob]) -> bool;
}

impl ResourceExt for Resource {
    fn image_refs(&self) -> Vec<(&ImageSite, ImageRef)> {
        self.images
            .iter()
            .map(|s| (s, ImageRef::from(&s.image)))
            .collect()
    }

    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn label_pairs(&self) -> Vec<(&str, &str)> {
        self.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    fn object(&self) -> serde_json::Value {
        serde_json::from_str(&self.object_json).unwrap_or(serde_json::Value::Null)
    }

    fn in_namespaces(&self, namespaces: &[Glob]) -> bool {
        self.namespace
            .as_deref()
            .is_some_and(|ns| namespaces.iter().any(|g| g.matches(ns)))
    }
}

/// Write a line to the host's log. Outside WebAssembly (native unit tests)
/// it writes to stderr.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    bindings::repoint::policy::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message}");
}

/// Ask the host whether `image` can be pulled anonymously. Outside
/// WebAssembly (native unit tests) it asks the function given to
/// [`testing::answer_probes`] on this thread, or answers `unknown`.
pub fn probe_image(image: &ImageRef) -> ProbeResult {
    #[cfg(target_arch = "wasm32")]
    {
        bindings::repoint::policy::host::probe_image(&image.into())
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        testing::PROBES.with(|p| match &*p.borrow() {
            Some(answer) => answer(image),
            None => ProbeResult::Unknown,
        })
    }
}

impl From<repoint_core::sites::SiteKind> for SiteKind {
    fn from(k: repoint_core::sites::SiteKind) -> Self {
        use repoint_core::sites::SiteKind as K;
        match k {
            K::Container => Self::Container,
            K::InitContainer => Self::InitContainer,
            K::EphemeralContainer => Self::EphemeralContainer,
            K::ImageVolume => Self::ImageVolume,
            K::Custom => Self::Custom,
        }
    }
}

/// Build resources the way the host does, and stand in for the host's
/// registry probes, for policies' native unit tests.
pub mod testing {
    use repoint_core::resource::ResourceView;
    use repoint_core::sites::{self, ImageFields};

    use super::{FileOrigin, ImageSite, Origin, Resource, WitImageRef};
    #[cfg(not(target_arch = "wasm32"))]
    use super::{ImageRef, ProbeResult};

    /// How native tests answer probes.
    #[cfg(not(target_arch = "wasm32"))]
    type ProbeFn = Box<dyn Fn(&ImageRef) -> ProbeResult>;

    #[cfg(not(target_arch = "wasm32"))]
    thread_local! {
        pub(crate) static PROBES: std::cell::RefCell<Option<ProbeFn>> =
            const { std::cell::RefCell::new(None) };
    }

    /// Answer [`probe_image`](super::probe_image) calls on this thread
    /// with `answer`, as a registry would.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn answer_probes(answer: impl Fn(&ImageRef) -> ProbeResult + 'static) {
        PROBES.with(|p| *p.borrow_mut() = Some(Box::new(answer)));
    }

    /// The resource the host would pass for `object` (a whole Kubernetes
    /// object as JSON), with custom-resource `fields` if any.
    pub fn resource_with(object: &serde_json::Value, fields: &[ImageFields]) -> Resource {
        let found = sites::find_all(object, fields)
            .into_iter()
            .next()
            .map(|o| o.sites)
            .unwrap_or_default();
        let view = ResourceView::new(object, "", &found);
        Resource {
            api_version: view.api_version,
            kind: view.kind,
            namespace: view.namespace,
            name: view.name,
            labels: view.labels,
            annotations: view.annotations,
            images: view
                .images
                .iter()
                .filter_map(|s| {
                    let image = s.image.as_ref().ok()?;
                    Some(ImageSite {
                        kind: s.kind.into(),
                        pointer: s.pointer.clone(),
                        container: s.container.clone(),
                        written: s.written.clone(),
                        image: WitImageRef::from(image),
                    })
                })
                .collect(),
            pull_secrets: view.pull_secrets,
            pull_secrets_pointer: view.pull_secrets_pointer,
            service_account: view.service_account,
            origin: Origin::File(FileOrigin {
                path: "test.yaml".into(),
                document: 0,
                line: 1,
            }),
            object_json: view.object_json,
        }
    }

    /// [`resource_with`] without custom-resource fields.
    pub fn resource(object: &serde_json::Value) -> Resource {
        resource_with(object, &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Rule {
        r#match: String,
    }

    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Settings {
        rules: Vec<Rule>,
    }

    struct Example;

    impl Policy for Example {
        type Settings = Settings;
        fn info() -> Info {
            Info::validating("example", "an example")
        }
        fn evaluate(_: &Settings, _: &Resource) -> Result<Vec<Action>, String> {
            Ok(Vec::new())
        }
    }

    fn error(json: &str) -> String {
        parse_settings::<Example>(json).err().expect("rejected")
    }

    #[test]
    fn settings_errors_name_the_setting_not_a_json_position() {
        assert_eq!(
            error(r#"{"rules": [{"match": "a", "extra": 1}]}"#),
            "invalid settings: rules[0].extra: unknown field `extra`, expected `match`"
        );
        assert_eq!(
            error(r#"{"rules": 3}"#),
            "invalid settings: rules: invalid type: integer `3`, expected a sequence"
        );
        assert!(!error(r#"{"other": 1}"#).contains("column"));
    }
}
