//! Image references: whatever parses prints as a reference that parses
//! back to the same thing, and printing is a fixed point. (The familiar
//! form is not a round trip, upstream either: `docker.io/a.b/c` is
//! familiar `a.b/c`, whose first component reads as a registry.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use repoint_core::ImageRef;
use repoint_core::reference;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(image) = ImageRef::parse(text) {
        let printed = image.to_string();
        let again = ImageRef::parse(&printed).unwrap_or_else(|e| {
            panic!("{text:?} printed as {printed:?}, which does not parse: {e}")
        });
        assert_eq!(again, image, "{text:?} -> {printed:?}");
        assert_eq!(again.to_string(), printed);
    }
    let _ = reference::parse_raw(text);
    let _ = reference::parse_any(text);
    let _ = repoint_core::RegistryPath::parse(text);
});
