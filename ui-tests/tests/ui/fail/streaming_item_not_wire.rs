use octopii::Streaming;

struct NotSerde;

#[octopii::service]
trait Items {
    async fn items(&self) -> Streaming<NotSerde>;
}

fn main() {}
