//! openraft's type configuration and the identities of masters.

use std::io::Cursor;

use sha2::{Digest, Sha256};

use crate::config::HostPort;
use crate::state::{CommandResult, Proposal};

openraft::declare_raft_types!(
    /// Commands of the master state through Raft; snapshots are small (jar bytes never go
    /// through Raft, only their names and checksums), so an in-memory cursor is enough.
    pub TypeConfig:
        D = Proposal,
        R = CommandResult,
        NodeId = u64,
        Node = openraft::BasicNode,
        SnapshotData = Cursor<Vec<u8>>,
);

pub type NodeId = u64;
pub(super) type Raft = openraft::Raft<TypeConfig>;
pub(super) type LogId = openraft::LogId<NodeId>;
pub(super) type StorageError = openraft::StorageError<NodeId>;
pub(super) type StoredMembership = openraft::StoredMembership<NodeId, openraft::BasicNode>;

/// A master's Raft id is derived from its `host:port`, so every master computes the same ids
/// from the same list, whatever order the list is written in, with nothing to hand out.
pub fn node_id_of(master: &HostPort) -> NodeId {
    let digest = Sha256::digest(master.to_string().as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    // Keep ids positive in JSON consumers that read numbers as signed 64-bit.
    u64::from_be_bytes(bytes) >> 1
}

/// Identifies a masters list independently of its order; peers compare it before bootstrapping,
/// because Raft cannot survive two different initial memberships.
pub fn masters_fingerprint(masters: &[HostPort]) -> String {
    let mut names: Vec<String> = masters.iter().map(ToString::to_string).collect();
    names.sort();
    hex::encode(&Sha256::digest(names.join(",").as_bytes())[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(text: &str) -> HostPort {
        HostPort::parse(text).expect("valid")
    }

    #[test]
    fn ids_and_fingerprints_do_not_depend_on_order() {
        let a = [hp("node1:3000"), hp("node2:3000")];
        let b = [hp("node2:3000"), hp("node1:3000")];
        assert_eq!(masters_fingerprint(&a), masters_fingerprint(&b));
        assert_ne!(masters_fingerprint(&a), masters_fingerprint(&a[..1]));
        assert_ne!(node_id_of(&a[0]), node_id_of(&a[1]));
        assert_eq!(node_id_of(&hp("node1:3000")), node_id_of(&a[0]));
    }
}
