//! Fuzzed multipart bodies to the submit route: never a 500, no jar left behind by a refused upload.
#![no_main]
use std::sync::OnceLock;

use gearpump_master::fuzzing::Server;

static SERVER: OnceLock<Server> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| SERVER.get_or_init(Server::start).multipart(data));
