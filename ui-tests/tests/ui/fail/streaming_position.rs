use octopii::Streaming;

#[octopii::service]
trait Misplaced {
    async fn maybe(&self, lines: Option<Streaming<String>>) -> u64;
    async fn pair(&self) -> (Streaming<u8>, u64);
    async fn not_last(&self, lines: Streaming<String>, tag: String) -> u64;
    async fn in_error(&self) -> Result<u64, Streaming<u8>>;
}

fn main() {}
