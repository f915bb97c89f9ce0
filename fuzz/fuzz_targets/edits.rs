//! Edits as the built-in policies make them: every image mirrored and two
//! pull secrets added, through the action planner, rendered as the CLI
//! renders. The output must read back as the planned value, by splices
//! alone: a splice that does not check out is a finding even though the
//! re-render would cover it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use repoint_core::actions::{self, Action};
use repoint_core::{ImageRef, sites};

fuzz_target!(|data: &[u8]| {
    let Some(stream) = repoint_fuzz::stream(data) else {
        return;
    };
    let mut changes = Vec::new();
    for doc in stream.documents() {
        let mut ops = Vec::new();
        for object in sites::find_all(&doc.value, &[]) {
            let mut planned: Vec<Action> = object
                .sites
                .images
                .iter()
                .filter_map(|s| {
                    let image = s.image.as_ref().ok()?;
                    let mirrored = ImageRef {
                        registry: "mirror.corp.example".into(),
                        repository: format!("{}/{}", image.registry, image.repository),
                        tag: image.tag.clone(),
                        digest: image.digest.clone(),
                    };
                    Some(Action::SetImage {
                        pointer: s.pointer.clone(),
                        image: mirrored,
                    })
                })
                .collect();
            if !object.sites.images.is_empty() {
                planned.push(Action::AddPullSecret("corp-a".into()));
                planned.push(Action::AddPullSecret("corp-b".into()));
            }
            let Ok(plan) = actions::plan(&doc.value, &object.sites, &planned) else {
                continue;
            };
            // Site pointers start at the document root already.
            ops.extend(plan.patch);
        }
        if !ops.is_empty() {
            changes.push((doc.index, ops));
        }
    }
    repoint_fuzz::assert_renders(&stream, &changes, true);
});
