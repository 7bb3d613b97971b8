//! What the attribute knows about a service once the trait is checked.

use syn::punctuated::Punctuated;
use syn::{Attribute, Ident, Type, TypeParamBound, Visibility};

/// A service trait.
pub struct Service {
    /// Every outer attribute of the trait, doc comments included.
    pub attrs: Vec<Attribute>,
    /// The trait's `#[cfg(...)]` attributes, repeated on generated items.
    pub cfgs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
    /// The name on the wire: the trait's name without `r#`.
    pub name: String,
    /// Supertraits the user wrote; `Send + Sync + 'static` are added.
    pub supertraits: Punctuated<TypeParamBound, syn::Token![+]>,
    pub methods: Vec<Method>,
}

/// One `async fn` of a service trait.
pub struct Method {
    /// Every attribute of the method, doc comments included (for the trait).
    pub attrs: Vec<Attribute>,
    /// The doc comments alone.
    pub docs: Vec<Attribute>,
    /// `#[deprecated]`, if any, repeated on the client method.
    pub deprecated: Vec<Attribute>,
    pub ident: Ident,
    /// The name on the wire: the method's name without `r#`.
    pub name: String,
    /// The `fn` token as written, so diagnostics about the trait method
    /// (such as `missing_docs`) point at the user's declaration.
    pub fn_token: syn::Token![fn],
    /// The closing `;` as written, for the same reason.
    pub semi_token: syn::Token![;],
    /// The `&self` receiver as written.
    pub receiver: syn::Receiver,
    /// The `ctx: &Context` argument, if the method takes one.
    pub context: Option<Arg>,
    /// The arguments that travel, in order.
    pub args: Vec<Arg>,
    /// The declared return type (`()` when there is no `->`).
    pub output: Type,
    /// Whether the return type is `()`.
    pub output_is_unit: bool,
}

impl Method {
    /// Whether the server passes the call's context to this method.
    pub fn takes_context(&self) -> bool {
        self.context.is_some()
    }
}

/// A named argument.
pub struct Arg {
    /// Attributes on the argument, kept in the trait only.
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub ty: Type,
}
