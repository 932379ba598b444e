#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    ferrocable::fuzzing::assembler(data);
});
