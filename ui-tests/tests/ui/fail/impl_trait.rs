#[octopii::service]
trait Stream {
    async fn send(&self, items: impl IntoIterator<Item = u8>);
    async fn lines(&self) -> impl Iterator<Item = String>;
    async fn later(&self) -> impl std::future::Future<Output = u8>;
}

fn main() {}
