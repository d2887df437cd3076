//! Any text as a master's and a worker's gear.conf: a configuration or an error naming the file.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| gearpump_master::fuzzing::gear_conf(data));
