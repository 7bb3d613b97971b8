#[octopii::service]
trait Store {
    type Value;
    const LIMIT: usize;

    async fn get(&self, key: String) -> Option<u64>;
}

fn main() {}
