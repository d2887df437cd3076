//! Helpers shared by the integration tests. Each test binary uses only some of them, hence the
//! blanket allowance for unused code.
#![allow(dead_code)]

pub mod jarstore_suite;
pub mod minihdfs;
