use octopii::rpc::Streaming;

#[octopii::service]
pub trait Options {
    #[octopii(idempotent)]
    async fn read(&self) -> u32;
    #[octopii(cached)]
    async fn unknown_option(&self) -> u32;
    #[octopii(idempotent)]
    async fn watch(&self) -> Streaming<u32>;
}

fn main() {}
