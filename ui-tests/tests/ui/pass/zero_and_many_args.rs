//! Methods with no arguments, one, and many: the arguments travel as one
//! tuple, and many of them raise no lint in the generated code.
#![deny(warnings)]

use std::sync::Arc;

use octopii::rpc::{Context, Service};
use octopii::transport::PeerInfo;

#[octopii::service]
pub trait Shapes {
    async fn nothing(&self);
    async fn zero(&self) -> u8;
    async fn one(&self, a: u8) -> u8;
    async fn eight(
        &self,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: String,
        g: Vec<u8>,
        h: (bool, char),
    ) -> u64;
}

struct Impl;

impl Shapes for Impl {
    async fn nothing(&self) {}

    async fn zero(&self) -> u8 {
        0
    }

    async fn one(&self, a: u8) -> u8 {
        a
    }

    async fn eight(
        &self,
        a: u8,
        b: u16,
        c: u32,
        d: u64,
        e: i8,
        f: String,
        g: Vec<u8>,
        h: (bool, char),
    ) -> u64 {
        let tail = f.len() + g.len() + usize::from(h.0) + h.1.len_utf8();
        u64::from(a) + u64::from(b) + u64::from(c) + d + e.unsigned_abs() as u64 + tail as u64
    }
}

fn main() {
    let service = ShapesServer::new(Impl);
    let ctx = Context::new(
        Arc::new(PeerInfo {
            addr: ([127, 0, 0, 1], 1).into(),
            identity: "test".into(),
            role: octopii::transport::tls::Role::Client,
            verified: true,
        }),
        None,
        Vec::new(),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let call = |method: &str, args: Vec<u8>| {
        runtime
            .block_on(service.call(method, ctx.clone(), args.into()))
            .unwrap()
    };
    use octopii::codec::{decode, encode};

    decode::<()>(&call("nothing", encode(&()).unwrap())).unwrap();
    assert_eq!(
        decode::<u8>(&call("zero", encode(&()).unwrap())).unwrap(),
        0
    );
    assert_eq!(
        decode::<u8>(&call("one", encode(&(7u8,)).unwrap())).unwrap(),
        7
    );
    let args = (
        1u8,
        2u16,
        3u32,
        4u64,
        -5i8,
        String::from("ab"),
        vec![1u8],
        (true, 'x'),
    );
    let eight = call("eight", encode(&args).unwrap());
    assert_eq!(decode::<u64>(&eight).unwrap(), 15 + 2 + 1 + 1 + 1);
}
