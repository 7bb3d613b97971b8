#[octopii::service]
trait Health {
    async fn ok(&self) -> bool {
        true
    }
}

fn main() {}
