//! Client REST requests with fuzzed paths, queries and JSON bodies: never a 500.
#![no_main]
use std::sync::OnceLock;

use gearpump_master::fuzzing::Server;

static SERVER: OnceLock<Server> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| SERVER.get_or_init(Server::start).rest(data));
