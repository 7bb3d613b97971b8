//! Names that could clash with the generated code's own: arguments named
//! like its locals, user types named like its generic parameter, raw
//! identifiers, types written through a `macro_rules!` fragment, and the
//! user's own `Result`.
#![deny(warnings)]

use std::borrow::Cow;
use std::collections::HashMap;

#[derive(serde::Serialize, serde::Deserialize)]
struct S(u8);

#[derive(serde::Serialize, serde::Deserialize)]
struct T;

#[allow(dead_code)]
type Result<V> = std::result::Result<V, String>;

macro_rules! service_of {
    ($ty:ty) => {
        #[octopii::service]
        trait Typed {
            async fn take(&self, value: $ty) -> $ty;
        }
    };
}

service_of!(Vec<(u8, [u16; 4])>);

#[octopii::service]
trait Clashes {
    async fn locals(
        &self,
        service: S,
        args: T,
        ctx: u8,
        method: String,
        client: HashMap<String, Vec<u8>>,
        __arg0: Cow<'static, str>,
    ) -> Result<S>;
    async fn r#type(&self, r#struct: u8) -> u8;
    async fn r#match(&self) -> ();
}

struct Impl;

impl Clashes for Impl {
    async fn locals(
        &self,
        service: S,
        _args: T,
        _ctx: u8,
        _method: String,
        _client: HashMap<String, Vec<u8>>,
        _arg0: Cow<'static, str>,
    ) -> Result<S> {
        Ok(service)
    }

    async fn r#type(&self, r#struct: u8) -> u8 {
        r#struct
    }

    async fn r#match(&self) {}
}

impl Typed for Impl {
    async fn take(&self, value: Vec<(u8, [u16; 4])>) -> Vec<(u8, [u16; 4])> {
        value
    }
}

fn main() {
    let clashes = ClashesServer::new(Impl);
    let typed = TypedServer::new(Impl);
    let services: [&dyn octopii::rpc::Service; 2] = [&clashes, &typed];
    assert_eq!(services[0].methods(), ["locals", "type", "match"]);
    assert_eq!(services[1].name(), "Typed");
    let _ = ClashesClient::r#type;
    let _: &dyn octopii::rpc::Service = &single::server();
}

/// A trait named like the server's type parameter.
mod single {
    #[octopii::service]
    pub trait S {
        async fn f(&self) -> u8;
    }

    pub struct Impl;

    impl S for Impl {
        async fn f(&self) -> u8 {
            1
        }
    }

    pub fn server() -> SServer<Impl> {
        SServer::new(Impl)
    }
}
