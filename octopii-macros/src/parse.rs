//! From the syn tree to the [`model`](crate::model), in one walk.
//!
//! What the model cannot hold is reported here, each error at the user's
//! offending token: arguments to the attribute, an item that is not a
//! trait, trait items that are not methods, and methods that are not
//! `async fn m(&self, name: Type, ..)`. A method with such an error is still
//! modelled as far as it can be, so that [`check`](crate::check) reports
//! the problems of its types as well.

use proc_macro2::TokenStream;
use quote::{ToTokens, format_ident, quote};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{
    Attribute, FnArg, GenericArgument, Item, ItemTrait, Pat, PathArguments, PathSegment,
    ReturnType, TraitItem, TraitItemFn, Type,
};

use crate::Errors;
use crate::model::{Arg, ArgKind, Method, Reply, Service};

/// The service `item` declares, with every error in the attribute's
/// arguments and in the syntax of the trait in `errors`; `None` if `item`
/// is not a trait.
pub fn service(args: TokenStream, item: &Item, errors: &mut Errors) -> Option<Service> {
    unsupported_args(args, errors);
    let Item::Trait(item) = item else {
        errors.push(not_a_trait(item));
        return None;
    };
    unsupported_trait_syntax(item, errors);
    let methods = item
        .items
        .iter()
        .filter_map(|trait_item| match trait_item {
            TraitItem::Fn(method) => Some(method_of(item, method, errors)),
            other => {
                unsupported_item(other, errors);
                None
            }
        })
        .collect();
    Some(Service {
        attrs: item.attrs.clone(),
        cfgs: attrs_named(&item.attrs, "cfg"),
        vis: item.vis.clone(),
        ident: item.ident.clone(),
        name: item.ident.unraw().to_string(),
        supertraits: item.supertraits.clone(),
        methods,
    })
}

/// Reports any argument to the attribute.
fn unsupported_args(args: TokenStream, errors: &mut Errors) {
    if args.is_empty() {
        return;
    }
    let parser = Punctuated::<syn::Meta, syn::Token![,]>::parse_terminated;
    match syn::parse::Parser::parse2(parser, args.clone()) {
        Ok(metas) => {
            for meta in metas {
                let path = meta.path();
                errors.at(
                    path,
                    format_args!(
                        "unknown argument `{}`; #[octopii::service] takes no arguments",
                        show(path)
                    ),
                );
            }
        }
        Err(_) => errors.at(
            args,
            "unexpected argument; #[octopii::service] takes no arguments",
        ),
    }
}

fn not_a_trait(item: &Item) -> syn::Error {
    let (what, tokens) = match item {
        Item::Impl(i) => {
            let (impl_token, self_ty) = (&i.impl_token, &i.self_ty);
            let message = if i.trait_.is_some() {
                "#[octopii::service] goes on the service trait, not on an impl of it"
            } else {
                "#[octopii::service] can only be used on a trait, not on an impl block"
            };
            return syn::Error::new_spanned(quote!(#impl_token #self_ty), message);
        }
        Item::Struct(i) => ("a struct", named(i.struct_token, &i.ident)),
        Item::Enum(i) => ("an enum", named(i.enum_token, &i.ident)),
        Item::Union(i) => ("a union", named(i.union_token, &i.ident)),
        Item::Fn(i) => ("a function", named(i.sig.fn_token, &i.sig.ident)),
        Item::Mod(i) => ("a module", named(i.mod_token, &i.ident)),
        Item::Type(i) => ("a type alias", named(i.type_token, &i.ident)),
        Item::Const(i) => ("a constant", named(i.const_token, &i.ident)),
        Item::Static(i) => ("a static", named(i.static_token, &i.ident)),
        Item::TraitAlias(i) => ("a trait alias", named(i.trait_token, &i.ident)),
        other => ("this item", other.to_token_stream()),
    };
    syn::Error::new_spanned(
        tokens,
        format_args!("#[octopii::service] can only be used on a trait, not on {what}"),
    )
}

fn named(keyword: impl ToTokens, ident: &syn::Ident) -> TokenStream {
    quote!(#keyword #ident)
}

/// Reports what a trait is or has besides `trait X: Bounds`.
fn unsupported_trait_syntax(item: &ItemTrait, errors: &mut Errors) {
    if let Some(unsafety) = &item.unsafety {
        errors.at(unsafety, "a service trait cannot be `unsafe`");
    }
    if let Some(auto) = &item.auto_token {
        errors.at(auto, "a service trait cannot be an `auto` trait");
    }
    if !item.generics.params.is_empty() {
        errors.at(
            &item.generics,
            not_generic("a service trait", &item.generics),
        );
    }
    if let Some(where_clause) = &item.generics.where_clause {
        errors.at(where_clause, "a service trait cannot have a `where` clause");
    }
}

/// Reports an item of the trait that is not a method.
fn unsupported_item(item: &TraitItem, errors: &mut Errors) {
    match item {
        TraitItem::Type(assoc) => errors.at(
            named(assoc.type_token, &assoc.ident),
            "associated types are not supported in a service trait; use a concrete type in the methods",
        ),
        TraitItem::Const(assoc) => errors.at(
            named(assoc.const_token, &assoc.ident),
            "associated constants are not supported in a service trait",
        ),
        TraitItem::Macro(mac) => errors.at(
            &mac.mac,
            "macro invocations are not supported in a service trait; write the methods out",
        ),
        other => errors.at(
            other,
            "unsupported item in a service trait; only `async fn` methods are allowed",
        ),
    }
}

fn not_generic(what: &str, generics: &syn::Generics) -> String {
    let only_lifetimes = generics
        .params
        .iter()
        .all(|param| matches!(param, syn::GenericParam::Lifetime(_)));
    if only_lifetimes {
        format!("{what} cannot have lifetime parameters: what crosses the wire must be owned")
    } else {
        format!("{what} cannot be generic: the types that cross the wire must be concrete")
    }
}

/// The model of `method`, with the errors of its syntax in `errors`.
fn method_of(item: &ItemTrait, method: &TraitItemFn, errors: &mut Errors) -> Method {
    unsupported_method_syntax(item, method, errors);
    let sig = &method.sig;
    let mut inputs = sig.inputs.iter();
    let receiver = match inputs.next() {
        Some(FnArg::Receiver(receiver)) => {
            unsupported_receiver(receiver, errors);
            receiver.clone()
        }
        _ => {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format_args!(
                    "a service method must take `&self` first: write `async fn {}(&self, ...)`",
                    sig.ident
                ),
            ));
            // Model the arguments anyway, as if `&self` were there.
            inputs = sig.inputs.iter();
            syn::parse_quote!(&self)
        }
    };
    let inputs = inputs
        .enumerate()
        .filter_map(|(i, input)| match input {
            FnArg::Typed(arg) => Some(arg_of(i, arg, errors)),
            // A second receiver is a syntax error rustc reports itself.
            FnArg::Receiver(_) => None,
        })
        .collect();
    let (output, output_is_unit) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), true),
        ReturnType::Type(_, ty) => {
            let unit = matches!(ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty());
            ((**ty).clone(), unit)
        }
    };
    Method {
        // `#[octopii(..)]` is the attribute's own: the trait does not keep it.
        attrs: method
            .attrs
            .iter()
            .filter(|attr| !attr.path().is_ident("octopii"))
            .cloned()
            .collect(),
        idempotent: idempotent(&method.attrs, errors),
        docs: attrs_named(&method.attrs, "doc"),
        deprecated: attrs_named(&method.attrs, "deprecated"),
        ident: sig.ident.clone(),
        name: sig.ident.unraw().to_string(),
        fn_token: sig.fn_token,
        semi_token: method.semi_token.unwrap_or_default(),
        receiver,
        inputs,
        reply: reply_of(&output),
        output,
        output_is_unit,
    }
}

/// Whether `#[octopii(idempotent)]` marks the method; any other option
/// of `#[octopii(..)]` is an error.
fn idempotent(attrs: &[Attribute], errors: &mut Errors) -> bool {
    let mut idempotent = false;
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("octopii")) {
        let parsed = attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("idempotent") {
                idempotent = true;
                Ok(())
            } else {
                Err(meta.error(
                    "unknown option of `#[octopii(..)]` on a method: the only one is \
                     `idempotent`",
                ))
            }
        });
        if let Err(e) = parsed {
            errors.push(e);
        }
    }
    idempotent
}

/// Reports what a method is or has besides `async fn m(..) -> T;`.
fn unsupported_method_syntax(item: &ItemTrait, method: &TraitItemFn, errors: &mut Errors) {
    let sig = &method.sig;
    for attr in &method.attrs {
        if attr.path().is_ident("cfg") {
            errors.at(
                attr,
                "`#[cfg]` on a service method is not supported: every peer must agree on the \
                 methods; put the whole service behind `#[cfg]` instead",
            );
        }
    }
    if let Some(constness) = &sig.constness {
        errors.at(constness, "a service method cannot be `const`");
    }
    if let Some(unsafety) = &sig.unsafety {
        errors.at(unsafety, "a service method cannot be `unsafe`");
    }
    if let Some(abi) = &sig.abi {
        errors.at(abi, "a service method cannot have an `extern` ABI");
    }
    if sig.asyncness.is_none() {
        errors.at(
            named(sig.fn_token, &sig.ident),
            format_args!(
                "a service method must be `async`: write `async fn {}`",
                sig.ident
            ),
        );
    }
    if !sig.generics.params.is_empty() {
        errors.at(
            &sig.generics,
            not_generic("a service method", &sig.generics),
        );
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.at(
            where_clause,
            "a service method cannot have a `where` clause",
        );
    }
    if let Some(variadic) = &sig.variadic {
        errors.at(variadic, "a service method cannot be variadic");
    }
    if let Some(body) = &method.default {
        errors.push(syn::Error::new(
            body.brace_token.span.join(),
            format_args!(
                "a service method cannot have a default body; implement `{}` in each `impl {}`",
                sig.ident, item.ident
            ),
        ));
    }
}

/// How a method returning `output` answers.
fn reply_of(output: &Type) -> Reply {
    if let Some(item) = streaming_item(output) {
        Reply::Stream {
            item: Box::new(item.clone()),
        }
    } else if let Some((item, error)) = fallible_stream(output) {
        Reply::FallibleStream {
            item: Box::new(item.clone()),
            error: Box::new(error.clone()),
        }
    } else {
        Reply::Value
    }
}

/// Reports a receiver other than `&self`.
fn unsupported_receiver(receiver: &syn::Receiver, errors: &mut Errors) {
    let message = if receiver.colon_token.is_some() {
        (!is_ref_self(&receiver.ty)).then(|| {
            format!(
                "a service method must take `&self`, not `self: {}`",
                show(&receiver.ty)
            )
        })
    } else {
        match &receiver.reference {
            None => Some(String::from(
                "a service method must take `&self`, not `self` by value",
            )),
            Some(_) if receiver.mutability.is_some() => Some(String::from(
                "a service method must take `&self`, not `&mut self`: the server runs calls \
                 concurrently; keep mutable state behind a lock",
            )),
            Some((_, Some(_))) => Some(String::from(
                "a service method must take plain `&self`, without a lifetime",
            )),
            Some((_, None)) => None,
        }
    };
    if let Some(message) = message {
        errors.at(receiver, message);
    }
}

/// `&Self`, the type of `self: &Self`.
fn is_ref_self(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Reference(r) if r.lifetime.is_none() && r.mutability.is_none() => {
            matches!(ungroup(&r.elem), Type::Path(p) if p.qself.is_none() && p.path.is_ident("Self"))
        }
        _ => false,
    }
}

/// The `i`th argument after `&self`. An argument that is a pattern rather
/// than a name is reported, and modelled under a name of its position.
fn arg_of(i: usize, arg: &syn::PatType, errors: &mut Errors) -> Arg {
    let ident = match &*arg.pat {
        Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
        pat => {
            errors.at(
                pat,
                format_args!(
                    "a service method argument must be a plain name, not a pattern: write `name: {}`",
                    show(&arg.ty)
                ),
            );
            format_ident!("arg{i}", span = pat.span())
        }
    };
    let ty = &*arg.ty;
    let kind = if names_context(ty) {
        ArgKind::Context
    } else if let Some(item) = streaming_item(ty) {
        ArgKind::Stream {
            item: Box::new(item.clone()),
        }
    } else {
        ArgKind::Value
    };
    Arg {
        attrs: arg.attrs.clone(),
        ident,
        ty: ty.clone(),
        kind,
    }
}

fn attrs_named(attrs: &[Attribute], name: &str) -> Vec<Attribute> {
    attrs
        .iter()
        .filter(|attr| attr.path().is_ident(name))
        .cloned()
        .collect()
}

/// `ty` without the invisible groups a `macro_rules!` `$t:ty` adds.
pub fn ungroup(mut ty: &Type) -> &Type {
    while let Type::Group(group) = ty {
        ty = &group.elem;
    }
    ty
}

/// The path of `ty`, if `ty` is a plain path.
fn plain_path(ty: &Type) -> Option<&syn::Path> {
    match ungroup(ty) {
        Type::Path(path) if path.qself.is_none() => Some(&path.path),
        _ => None,
    }
}

/// The type arguments of a path segment: `[A, B]` for `X<A, B>`.
fn type_args(segment: &PathSegment) -> Vec<&Type> {
    match &segment.arguments {
        PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The last segment of `ty`, if `ty` names Octopii's own `name`: bare
/// (`Context`) or by a path through the `octopii` crate
/// (`octopii::Context`, `::octopii::rpc::Context`). A type of that name
/// in any other module is the user's own, and an ordinary type.
fn octopii_type<'a>(ty: &'a Type, name: &str) -> Option<&'a PathSegment> {
    let path = plain_path(ty)?;
    let last = path.segments.last()?;
    let ours = match path.segments.len() {
        1 => path.leading_colon.is_none(),
        _ => path.segments[0].ident == "octopii",
    };
    (ours && last.ident == name).then_some(last)
}

/// Whether `ty` is the call context, `Context`, by value.
fn is_context(ty: &Type) -> bool {
    octopii_type(ty, "Context").is_some_and(|last| last.arguments.is_none())
}

/// Whether `ty` is the call context, by reference (`&Context`, `&mut
/// Context`, `&'a Context`) or by value.
fn names_context(ty: &Type) -> bool {
    match ungroup(ty) {
        Type::Reference(reference) => is_context(&reference.elem),
        ty => is_context(ty),
    }
}

/// `T`, if `ty` is `Streaming<T>`.
pub fn streaming_item(ty: &Type) -> Option<&Type> {
    match type_args(octopii_type(ty, "Streaming")?)[..] {
        [item] => Some(item),
        _ => None,
    }
}

/// Whether `ty` is a `Streaming`, well-formed or not.
pub fn names_streaming(ty: &Type) -> bool {
    octopii_type(ty, "Streaming").is_some()
}

/// `(T, E)`, if `ty` is `Result<Streaming<T>, E>` (any `Result`).
fn fallible_stream(ty: &Type) -> Option<(&Type, &Type)> {
    let last = plain_path(ty)?.segments.last()?;
    match type_args(last)[..] {
        [ok, error] if last.ident == "Result" => Some((streaming_item(ok)?, error)),
        _ => None,
    }
}

/// Tokens as a person would write them: `Vec<u8>`, not `Vec < u8 >`.
pub fn show(tokens: impl ToTokens) -> String {
    let mut text = tokens.to_token_stream().to_string();
    for (from, to) in [
        (" ,", ","),
        (" :: ", "::"),
        (":: ", "::"),
        (" ::", "::"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        ("( ", "("),
        (" )", ")"),
        ("[ ", "["),
        (" ]", "]"),
        ("& ", "&"),
        (" ;", ";"),
    ] {
        text = text.replace(from, to);
    }
    text
}

#[cfg(test)]
mod tests {
    use syn::{Type, parse_quote};

    use super::{names_context, show, streaming_item};

    #[test]
    fn show_reads_like_source() {
        let ty: Type = parse_quote!(std::collections::HashMap<String, Vec<(u8, [i32; 4])>>);
        assert_eq!(
            show(&ty),
            "std::collections::HashMap<String, Vec<(u8, [i32; 4])>>"
        );
        let ty: Type = parse_quote!(&'a mut str);
        assert_eq!(show(&ty), "&'a mut str");
    }

    #[test]
    fn only_octopii_context_and_streaming_are_recognised() {
        let contexts: [Type; 5] = [
            parse_quote!(Context),
            parse_quote!(&Context),
            parse_quote!(&octopii::Context),
            parse_quote!(&octopii::rpc::Context),
            parse_quote!(&::octopii::rpc::Context),
        ];
        for ty in &contexts {
            assert!(names_context(ty), "{}", quote::quote!(#ty));
        }
        let streams: [Type; 3] = [
            parse_quote!(Streaming<u8>),
            parse_quote!(octopii::Streaming<u8>),
            parse_quote!(::octopii::rpc::Streaming<u8>),
        ];
        for ty in &streams {
            assert!(streaming_item(ty).is_some(), "{}", quote::quote!(#ty));
        }

        let user_contexts: [Type; 4] = [
            parse_quote!(&mine::Context),
            parse_quote!(&crate::Context),
            parse_quote!(&::Context),
            parse_quote!(&<X as Y>::Context),
        ];
        for ty in &user_contexts {
            assert!(!names_context(ty), "{}", quote::quote!(#ty));
        }
        let user_streams: [Type; 3] = [
            parse_quote!(mine::Streaming<u8>),
            parse_quote!(self::Streaming<u8>),
            parse_quote!(super::octopii::Streaming<u8>),
        ];
        for ty in &user_streams {
            assert!(streaming_item(ty).is_none(), "{}", quote::quote!(#ty));
        }
    }
}
