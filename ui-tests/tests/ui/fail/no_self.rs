#[octopii::service]
trait Factory {
    async fn make(size: u32) -> Vec<u8>;
    async fn nothing() -> u8;
}

fn main() {}
