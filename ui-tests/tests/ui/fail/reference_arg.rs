#[octopii::service]
trait Greeter {
    async fn greet(&self, name: &str) -> String;
    async fn checksum(&self, data: &[u8]) -> u32;
    async fn first(&self, names: Vec<&'static str>) -> Option<String>;
    async fn longest(&self, names: Vec<String>) -> &'static str;
}

fn main() {}
