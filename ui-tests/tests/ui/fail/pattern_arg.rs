#[octopii::service]
trait Geometry {
    async fn area(&self, (width, height): (i32, i32)) -> i32;
    async fn ignored(&self, _: u8);
    async fn by_ref(&self, ref name: String);
}

fn main() {}
