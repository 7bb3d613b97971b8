#[octopii::service]
trait Consume {
    async fn take(self) -> u64;
    async fn boxed(self: Box<Self>) -> u64;
}

fn main() {}
