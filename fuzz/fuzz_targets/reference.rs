//! Image references: whatever parses prints as a reference that parses
//! back to the same thing, and printing is a fixed point.
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
        // The familiar form parses back to the same reference, except
        // where distribution/reference itself refuses it: a familiar name
        // of 64 hex digits reads as an image ID (`docker.io/<64 hex>`).
        match ImageRef::parse(&image.familiar()) {
            Ok(familiar) => assert_eq!(familiar, image, "familiar form of {text:?}"),
            Err(reference::ReferenceError::HexIdentifier) => {}
            Err(e) => panic!("the familiar form of {text:?} does not parse: {e}"),
        }
    }
    let _ = reference::parse_raw(text);
    let _ = reference::parse_any(text);
    let _ = repoint_core::RegistryPath::parse(text);
});
