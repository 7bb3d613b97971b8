#[octopii::service]
trait Session {
    async fn new(&self) -> u64;
    async fn from_client(&self, id: u64);
    async fn with_deadline(&self, seconds: u64);
    async fn r#with_metadata(&self, key: String, value: String);
}

fn main() {}
