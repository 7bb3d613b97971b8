use octopii::Streaming;

#[octopii::service]
trait Merge {
    async fn merge(&self, left: Streaming<u64>, right: Streaming<u64>) -> Streaming<u64>;
}

fn main() {}
