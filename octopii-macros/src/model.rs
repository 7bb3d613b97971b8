//! What the attribute knows about a service: the trait as
//! [`parse`](crate::parse) reads it, which [`check`](crate::check) judges
//! and [`generate`](crate::generate) expands. The model of a trait with
//! errors is checked, to report them all, but never expanded.

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
    /// `#[octopii(idempotent)]`: running the method twice does what
    /// running it once does, so a client may retry it after a failure.
    pub idempotent: bool,
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
    /// The `&self` receiver as written (for a method without one, which
    /// is an error, a `&self` of the attribute's).
    pub receiver: syn::Receiver,
    /// The arguments after `&self`, in order.
    pub inputs: Vec<Arg>,
    /// The declared return type (`()` when there is no `->`).
    pub output: Type,
    /// Whether the return type is `()`.
    pub output_is_unit: bool,
    /// How the result travels.
    pub reply: Reply,
}

/// How a method's result travels.
pub enum Reply {
    /// One value in a response frame.
    Value,
    /// `Streaming<T>`: items after an empty head.
    Stream { item: Box<Type> },
    /// `Result<Streaming<T>, E>`: a head of `Result<(), E>`, then items if
    /// it is `Ok`.
    FallibleStream { item: Box<Type>, error: Box<Type> },
}

impl Method {
    /// Whether the server passes the call's context to this method.
    pub fn takes_context(&self) -> bool {
        self.inputs
            .iter()
            .any(|arg| matches!(arg.kind, ArgKind::Context))
    }

    /// The arguments that travel in the request, in order.
    pub fn args(&self) -> impl Iterator<Item = &Arg> {
        self.inputs
            .iter()
            .filter(|arg| matches!(arg.kind, ArgKind::Value))
    }

    /// The `Streaming<T>` argument and `T`, if the method takes a stream.
    pub fn input_stream(&self) -> Option<(&Arg, &Type)> {
        self.inputs.iter().find_map(|arg| match &arg.kind {
            ArgKind::Stream { item } => Some((arg, &**item)),
            _ => None,
        })
    }

    /// The method's signature as it crosses the wire: its name, the types
    /// of its arguments (and of a streamed input), and its return type, as
    /// written, without whitespace: `put(String,String)->Option<String>`.
    pub fn signature(&self) -> String {
        let written = |ty: &Type| quote::quote!(#ty).to_string().replace(' ', "");
        let mut inputs: Vec<String> = self.args().map(|arg| written(&arg.ty)).collect();
        if let Some((stream, _)) = self.input_stream() {
            inputs.push(written(&stream.ty));
        }
        format!(
            "{}({})->{}",
            self.name,
            inputs.join(","),
            written(&self.output)
        )
    }

    /// FNV-1a (64 bits) of [`signature`](Self::signature): what a client
    /// sends and a server compares.
    pub fn fingerprint(&self) -> u64 {
        self.signature()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325, |hash: u64, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            })
    }

    /// Whether the call owns a stream: it takes or returns a `Streaming`.
    pub fn is_streaming(&self) -> bool {
        self.input_stream().is_some() || !matches!(self.reply, Reply::Value)
    }

    /// Every type whose values cross the wire, in order: the arguments,
    /// the streamed items, the result (or its error).
    pub fn wire_types(&self) -> Vec<&Type> {
        let mut types: Vec<&Type> = self.args().map(|arg| &arg.ty).collect();
        types.extend(self.input_stream().map(|(_, item)| item));
        match &self.reply {
            Reply::Value => types.push(&self.output),
            Reply::Stream { item } => types.push(item),
            Reply::FallibleStream { item, error } => types.extend([&**item, &**error]),
        }
        types
    }

    /// Every type as written in the signature, the context's excepted.
    pub fn written_types(&self) -> impl Iterator<Item = &Type> {
        self.inputs
            .iter()
            .filter(|arg| !matches!(arg.kind, ArgKind::Context))
            .map(|arg| &arg.ty)
            .chain([&self.output])
    }
}

/// A named argument.
pub struct Arg {
    /// Attributes on the argument, kept in the trait only.
    pub attrs: Vec<Attribute>,
    pub ident: Ident,
    pub ty: Type,
    pub kind: ArgKind,
}

/// What an argument is, by its type.
pub enum ArgKind {
    /// The call context, `Context`, by reference or by value; only
    /// `&Context` passes [`check`](crate::check).
    Context,
    /// `Streaming<T>`: items that follow the request on the call's stream.
    Stream { item: Box<Type> },
    /// A value in the request.
    Value,
}
