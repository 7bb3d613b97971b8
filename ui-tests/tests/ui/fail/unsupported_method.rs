#[octopii::service]
unsafe trait Raw {
    async unsafe fn peek(&self, address: u64) -> u8;
    const fn size(&self) -> usize;
    async extern "C" fn call(&self);
}

fn main() {}

#[octopii::service]
trait Configured {
    #[cfg(unix)]
    async fn only_on_unix(&self);
}
