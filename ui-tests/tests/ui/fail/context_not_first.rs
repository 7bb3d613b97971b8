use octopii::rpc::Context;

#[octopii::service]
trait Audit {
    async fn record(&self, event: String, ctx: &Context);
    async fn twice(&self, ctx: &Context, again: &octopii::rpc::Context);
    async fn mutable(&self, ctx: &mut Context);
    async fn owned(&self, ctx: Context);
}

fn main() {}
