#[octopii::service(timeout = 5, name = "Other")]
trait Timed {
    async fn tick(&self);
}

#[octopii::service(json)]
trait Encoded {
    async fn tock(&self);
}

#[octopii::service("Quoted")]
trait Quoted {
    async fn tack(&self);
}

fn main() {}
