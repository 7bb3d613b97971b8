use octopii::Streaming;

#[octopii::service]
trait Nested {
    async fn batches(&self) -> Streaming<Streaming<u64>>;
    async fn upload(&self, groups: Streaming<Vec<Streaming<u8>>>) -> u64;
    async fn open(&self) -> Result<Streaming<Streaming<u8>>, String>;
}

fn main() {}
