#[octopii::service]
trait Store {
    async fn put<V: serde::Serialize>(&self, value: V);
    async fn get<'a>(&self, key: String) -> String;
    async fn bounded(&self, key: String) -> String
    where
        Self: Sized;
}

fn main() {}
