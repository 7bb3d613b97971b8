//! The generated client and server take the trait's visibility:
//! `pub(crate)` here, private, and `pub(super)` in a nested module.
#![deny(warnings)]

mod inner {
    #[octopii::service]
    pub(crate) trait Crate {
        async fn a(&self) -> u8;
    }

    #[octopii::service]
    pub(super) trait Parent {
        async fn b(&self) -> u8;
    }

    #[octopii::service]
    trait Private {
        async fn c(&self) -> u8;
    }

    struct Impl;

    impl Private for Impl {
        async fn c(&self) -> u8 {
            3
        }
    }

    pub(crate) fn private_server() -> Box<dyn octopii::rpc::Service> {
        Box::new(PrivateServer::new(Impl))
    }
}

struct Impl;

impl inner::Crate for Impl {
    async fn a(&self) -> u8 {
        1
    }
}

impl inner::Parent for Impl {
    async fn b(&self) -> u8 {
        2
    }
}

pub(crate) fn servers() -> (inner::CrateServer<Impl>, inner::ParentServer<Impl>) {
    (
        inner::CrateServer::new(Impl),
        inner::ParentServer::new(Impl),
    )
}

fn main() {
    let _ = servers();
    assert_eq!(inner::private_server().name(), "Private");
    assert_eq!(inner::CrateClient::SERVICE_NAME, "Crate");
    assert_eq!(inner::ParentClient::SERVICE_NAME, "Parent");
}
