#[octopii::service]
struct Calculator {
    total: i64,
}

#[octopii::service]
async fn add(a: i64, b: i64) -> i64 {
    a + b
}

trait Adder {
    async fn add(&self, a: i64, b: i64) -> i64;
}

struct Impl;

#[octopii::service]
impl Adder for Impl {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a + b
    }
}

fn main() {}
