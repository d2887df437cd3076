pub mod config;
pub mod jarstore;
pub mod state;
