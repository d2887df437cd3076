pub mod api;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod daemon;
pub mod jarstore;
pub mod state;
