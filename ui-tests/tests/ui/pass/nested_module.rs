//! A service declared in a nested module, implemented, served and called
//! from outside it through `a::SClient` and `a::SServer`.
#![deny(warnings)]

mod a {
    pub mod b {
        /// A point on the wire.
        #[derive(Debug, serde::Serialize, serde::Deserialize)]
        pub struct Point {
            pub x: i32,
            pub y: i32,
        }

        #[octopii::service]
        pub trait Geometry {
            async fn distance(&self, from: Point, to: Point) -> f64;
        }
    }
}

mod server {
    use super::a::b::{Geometry, GeometryServer, Point};

    pub struct Plane;

    impl Geometry for Plane {
        async fn distance(&self, from: Point, to: Point) -> f64 {
            f64::from(from.x - to.x).hypot(f64::from(from.y - to.y))
        }
    }

    pub fn make() -> GeometryServer<Plane> {
        GeometryServer::new(Plane)
    }
}

mod client {
    use super::a::b::{GeometryClient, Point};

    pub async fn far(client: &GeometryClient) -> bool {
        let origin = Point { x: 0, y: 0 };
        matches!(client.distance(origin, Point { x: 3, y: 4 }).await, Ok(d) if d > 4.0)
    }
}

fn main() {
    let server: a::b::GeometryServer<server::Plane> = server::make();
    let _: &dyn octopii::rpc::Service = &server;
    let _ = client::far;
    assert_eq!(a::b::GeometryClient::SERVICE_NAME, "Geometry");
}
