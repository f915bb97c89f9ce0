//! The document layer: any stream that parses renders back byte for byte
//! when nothing changes, and every position it reports is inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(stream) = repoint_fuzz::stream(data) else {
        return;
    };
    let out = stream.render(&[]).expect("an unchanged stream renders");
    assert_eq!(out.as_ref(), stream.text());
    for doc in stream.documents() {
        let (line, column) = stream.line_column(doc.start);
        assert!(line >= 1 && column >= 1);
        for pointer in repoint_fuzz::pointers(&doc.value) {
            let _ = stream.line_of(doc, &pointer);
        }
    }
});
