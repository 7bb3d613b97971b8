//! Every public item the attribute generates is documented: this crate
//! denies `missing_docs`, and only the user's own items carry docs.
#![deny(warnings, missing_docs)]

/// A key-value store.
///
/// Keys are strings; values are bytes.
#[octopii::service]
pub trait Store {
    /// Reads `key`.
    ///
    /// ```text
    /// get("a") -> Some([1, 2])
    /// ```
    async fn get(&self, key: String) -> Option<Vec<u8>>;

    #[doc = "Writes `value` under `key`; returns the previous value."]
    async fn put(&self, key: String, value: Vec<u8>) -> Option<Vec<u8>>;

    /// Deprecated methods stay callable, and warn where they are called.
    #[deprecated = "use `put`"]
    async fn set(&self, key: String, value: Vec<u8>);
}

struct Memory;

#[allow(deprecated)]
impl Store for Memory {
    async fn get(&self, _key: String) -> Option<Vec<u8>> {
        None
    }

    async fn put(&self, _key: String, value: Vec<u8>) -> Option<Vec<u8>> {
        Some(value)
    }

    async fn set(&self, _key: String, _value: Vec<u8>) {}
}

fn main() {
    let _server = StoreServer::new(Memory);
}
