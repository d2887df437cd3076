pub mod jarstore;
