//! The one port picker of the tests (the example bench_hdfs includes this file too).

use std::net::TcpListener;

/// Ports that were free a moment ago, picked at random below Linux's ephemeral range
/// (32768-60999): a port the kernel hands out for bind(0) can be taken by any outgoing
/// connection before the master listens on it, one picked down here only by another test.
pub fn free_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::with_capacity(count);
    while ports.len() < count {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        if !ports.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            ports.push(port);
        }
    }
    ports
}
