//! Fuzzed peer messages (Raft RPCs, forwarded writes, pre-votes, membership, worker heartbeats): never a 500, and the Raft core survives.
#![no_main]
use std::sync::OnceLock;

use gearpump_master::fuzzing::Server;

static SERVER: OnceLock<Server> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| SERVER.get_or_init(Server::start).peer(data));
