#[octopii::service]
trait Store<V> {
    async fn get(&self, key: String) -> Option<V>;
}

#[octopii::service]
trait Borrowing<'a> {
    async fn name(&self) -> String;
}

#[octopii::service]
trait Bounded
where
    Self: Clone,
{
    async fn name(&self) -> String;
}

fn main() {}
