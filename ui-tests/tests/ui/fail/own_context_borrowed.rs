// A user's own `Context` is an ordinary argument, so it cannot be borrowed
// the way Octopii's call context is.
mod mine {
    #[derive(serde::Serialize, serde::Deserialize)]
    pub struct Context {
        pub user: String,
    }
}

#[octopii::service]
trait Lookup {
    async fn who(&self, ctx: &mine::Context) -> String;
}

fn main() {}
