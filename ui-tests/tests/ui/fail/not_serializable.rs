pub struct Handle {
    pub id: u64,
}

#[octopii::service]
trait Files {
    async fn open(&self, path: String) -> Handle;
    async fn close(&self, handle: Handle) -> bool;
    async fn write(&self, file: std::fs::File, bytes: Vec<u8>);
}

fn main() {}
