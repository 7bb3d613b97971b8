//! Everything a service trait cannot express, reported all at once.
//!
//! Each error points at the user's offending token. Checks run on the syn
//! tree before [`crate::parse`] builds the model, so the model can assume a
//! well-formed service.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{
    FnArg, GenericArgument, Item, ItemTrait, Pat, PathArguments, ReturnType, Signature, TraitItem,
    TraitItemFn, Type,
};

use crate::parse::{
    context_type, fallible_stream, is_context, names_streaming, streaming_item, ungroup,
};

/// Methods of the generated client; a service method may not take their names.
pub const CLIENT_METHODS: &[&str] = &["new", "from_client", "with_deadline", "with_metadata"];

/// Checks the attribute's arguments and the item it is on; returns the trait.
pub fn check(args: TokenStream, item: &Item) -> syn::Result<&ItemTrait> {
    let mut errors = Errors::default();
    check_args(args, &mut errors);
    let Item::Trait(item_trait) = item else {
        errors.push(not_a_trait(item));
        return Err(errors.finish().unwrap_err());
    };
    check_trait(item_trait, &mut errors);
    errors.finish().map(|()| item_trait)
}

/// Several errors, combined into one as they are found.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(first) => first.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

fn check_args(args: TokenStream, errors: &mut Errors) {
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

fn check_trait(item: &ItemTrait, errors: &mut Errors) {
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

    let mut seen: Vec<String> = Vec::new();
    for trait_item in &item.items {
        match trait_item {
            TraitItem::Fn(method) => {
                let name = method.sig.ident.unraw().to_string();
                if seen.contains(&name) {
                    errors.at(
                        &method.sig.ident,
                        format_args!("the service already has a method named `{name}`"),
                    );
                }
                seen.push(name);
                check_method(item, method, errors);
            }
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
            other => errors.at(other, "unsupported item in a service trait; only `async fn` methods are allowed"),
        }
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

fn check_method(item: &ItemTrait, method: &TraitItemFn, errors: &mut Errors) {
    let sig = &method.sig;
    let name = sig.ident.unraw().to_string();

    if CLIENT_METHODS.contains(&name.as_str()) {
        errors.at(
            &sig.ident,
            format_args!(
                "a service method cannot be named `{name}`: the generated `{}Client::{name}` has that name; rename the method",
                item.ident.unraw()
            ),
        );
    }
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

    check_inputs(sig, errors);
    match &sig.output {
        ReturnType::Default => {}
        ReturnType::Type(_, ty) => {
            check_type(ty, Position::Return, errors);
            check_streaming_return(ty, errors);
        }
    }
}

/// The first `Streaming` type inside `ty`, `ty` itself included.
fn find_streaming(ty: &Type) -> Option<&Type> {
    if names_streaming(ty) {
        return Some(ty);
    }
    match ungroup(ty) {
        Type::Path(path) => path.path.segments.iter().find_map(|segment| {
            let PathArguments::AngleBracketed(args) = &segment.arguments else {
                return None;
            };
            args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(ty) => find_streaming(ty),
                _ => None,
            })
        }),
        Type::Tuple(tuple) => tuple.elems.iter().find_map(find_streaming),
        Type::Array(array) => find_streaming(&array.elem),
        Type::Slice(slice) => find_streaming(&slice.elem),
        Type::Paren(paren) => find_streaming(&paren.elem),
        Type::Reference(reference) => find_streaming(&reference.elem),
        _ => None,
    }
}

const STREAMING_PLACES: &str = "`Streaming` can only be a method's last argument or its return type \
     (alone or as `Result<Streaming<T>, E>`), not part of another type";

/// Reports a `Streaming` inside the items of a stream.
fn check_stream_item(item: &Type, errors: &mut Errors) {
    if let Some(nested) = find_streaming(item) {
        errors.at(
            nested,
            "`Streaming` cannot be nested: the items of a stream are plain values",
        );
    }
}

/// Reports a `Streaming` in a place that cannot stream, or one without its
/// item type.
fn check_no_streaming(ty: &Type, errors: &mut Errors) {
    if let Some(found) = find_streaming(ty) {
        if streaming_item(found).is_none() {
            errors.at(found, "write `Streaming<T>`, with the type of its items");
        } else {
            errors.at(found, STREAMING_PLACES);
        }
    }
}

fn check_streaming_return(ty: &Type, errors: &mut Errors) {
    if let Some(item) = streaming_item(ty) {
        check_stream_item(item, errors);
    } else if let Some((item, error)) = fallible_stream(ty) {
        check_stream_item(item, errors);
        check_no_streaming(error, errors);
    } else {
        check_no_streaming(ty, errors);
    }
}

fn check_inputs(sig: &Signature, errors: &mut Errors) {
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver)) => {
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
        _ => {
            errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                format_args!(
                    "a service method must take `&self` first: write `async fn {}(&self, ...)`",
                    sig.ident
                ),
            ));
            // Check the arguments anyway, as if `&self` were there.
            inputs = sig.inputs.iter();
        }
    }

    let inputs: Vec<&FnArg> = inputs.collect();
    // Where each argument that travels is, and whether it streams.
    let streams: Vec<bool> = inputs
        .iter()
        .map(|input| match input {
            FnArg::Typed(arg) => streaming_item(&arg.ty).is_some(),
            FnArg::Receiver(_) => false,
        })
        .collect();
    let mut streaming_seen = false;
    for (position, input) in inputs.iter().enumerate() {
        let FnArg::Typed(arg) = input else {
            // A second receiver is a syntax error rustc reports itself.
            continue;
        };
        match &*arg.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => {}
            pat => errors.at(
                pat,
                format_args!(
                    "a service method argument must be a plain name, not a pattern: write `name: {}`",
                    show(&arg.ty)
                ),
            ),
        }
        let by_value = is_context(&arg.ty);
        let reference = context_type(&arg.ty);
        if by_value || reference.is_some() {
            if position != 0 {
                errors.at(
                    arg,
                    "the call context must be the first argument after `&self`",
                );
            } else if by_value {
                errors.at(&arg.ty, "take the call context as `&Context`");
            } else if reference.is_some_and(|context| context.mutability.is_some()) {
                errors.at(
                    &arg.ty,
                    "take the call context as `&Context`, not `&mut Context`",
                );
            } else if reference.is_some_and(|context| context.lifetime.is_some()) {
                errors.at(
                    &arg.ty,
                    "take the call context as plain `&Context`, without a lifetime",
                );
            }
            continue;
        }
        check_type(&arg.ty, Position::Arg, errors);
        if let Some(item) = streaming_item(&arg.ty) {
            if streaming_seen {
                errors.at(
                    &arg.ty,
                    "a service method can take only one `Streaming` argument: send the items \
                     of both in one stream, of an enum or a struct",
                );
            } else if streams[position + 1..].iter().any(|streams| !streams) {
                errors.at(
                    &arg.ty,
                    "a `Streaming` argument must be the last argument: its items follow the \
                     others on the wire",
                );
            }
            streaming_seen = true;
            check_stream_item(item, errors);
        } else {
            check_no_streaming(&arg.ty, errors);
        }
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

#[derive(Clone, Copy, PartialEq)]
enum Position {
    Arg,
    Return,
}

impl Position {
    fn what(self) -> &'static str {
        match self {
            Position::Arg => "a service method argument",
            Position::Return => "a service method's return type",
        }
    }
}

/// Reports borrowed, `impl Trait`, `Self` and inferred types anywhere in `ty`.
fn check_type(ty: &Type, position: Position, errors: &mut Errors) {
    match ty {
        Type::Reference(reference) => errors.at(
            reference,
            format_args!(
                "{} must be an owned type, not a reference: use `{}` instead of `{}`",
                position.what(),
                owned(reference),
                show(reference)
            ),
        ),
        Type::ImplTrait(impl_trait) => {
            let hint = match position {
                Position::Arg => "use a concrete type",
                Position::Return => "use a concrete type (the method is already `async`)",
            };
            errors.at(
                impl_trait,
                format_args!(
                    "`impl Trait` is not supported in {}: {hint}",
                    position.what()
                ),
            );
        }
        Type::Infer(infer) => errors.at(infer, "write the type out: `_` cannot cross the wire"),
        Type::Path(path) => {
            if let Some(qself) = &path.qself {
                check_type(&qself.ty, position, errors);
            }
            if let Some(first) = path.path.segments.first() {
                if path.qself.is_none() && first.ident == "Self" {
                    errors.at(
                        &first.ident,
                        format_args!(
                            "`Self` cannot be used in {}: name the type",
                            position.what()
                        ),
                    );
                }
            }
            for segment in &path.path.segments {
                match &segment.arguments {
                    PathArguments::None => {}
                    PathArguments::AngleBracketed(args) => {
                        for arg in &args.args {
                            match arg {
                                GenericArgument::Type(ty) => check_type(ty, position, errors),
                                GenericArgument::AssocType(assoc) => check_type(&assoc.ty, position, errors),
                                GenericArgument::Lifetime(lifetime) if lifetime.ident != "static" => {
                                    errors.at(
                                        lifetime,
                                        format_args!(
                                            "{} cannot borrow: use `'static` or an owned type instead of `{lifetime}`",
                                            position.what()
                                        ),
                                    )
                                }
                                _ => {}
                            }
                        }
                    }
                    PathArguments::Parenthesized(args) => {
                        for input in &args.inputs {
                            check_type(input, position, errors);
                        }
                        if let ReturnType::Type(_, output) = &args.output {
                            check_type(output, position, errors);
                        }
                    }
                }
            }
        }
        Type::Tuple(tuple) => {
            for elem in &tuple.elems {
                check_type(elem, position, errors);
            }
        }
        Type::Array(array) => check_type(&array.elem, position, errors),
        Type::Slice(slice) => check_type(&slice.elem, position, errors),
        Type::Paren(paren) => check_type(&paren.elem, position, errors),
        Type::Group(group) => check_type(&group.elem, position, errors),
        _ => {}
    }
}

/// The owned type to suggest for a reference.
fn owned(reference: &syn::TypeReference) -> String {
    match ungroup(&reference.elem) {
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => "String".to_owned(),
        Type::Slice(slice) => format!("Vec<{}>", show(&slice.elem)),
        Type::Path(p) if p.qself.is_none() && p.path.is_ident("Path") => "PathBuf".to_owned(),
        elem => show(elem),
    }
}

/// Tokens as a person would write them: `Vec<u8>`, not `Vec < u8 >`.
fn show(tokens: impl ToTokens) -> String {
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
    use super::*;

    #[test]
    fn show_reads_like_source() {
        let ty: Type = syn::parse_quote!(std::collections::HashMap<String, Vec<(u8, [i32; 4])>>);
        assert_eq!(
            show(&ty),
            "std::collections::HashMap<String, Vec<(u8, [i32; 4])>>"
        );
        let ty: Type = syn::parse_quote!(&'a mut str);
        assert_eq!(show(&ty), "&'a mut str");
    }

    #[test]
    fn references_suggest_owned_types() {
        let check = |ty: Type| match ty {
            Type::Reference(r) => owned(&r),
            _ => unreachable!(),
        };
        assert_eq!(check(syn::parse_quote!(&str)), "String");
        assert_eq!(check(syn::parse_quote!(&'a [u8])), "Vec<u8>");
        assert_eq!(check(syn::parse_quote!(&MyType)), "MyType");
    }

    fn errors_of(item: Item) -> Vec<String> {
        match check(TokenStream::new(), &item) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_service_passes() {
        let item: Item = syn::parse_quote! {
            pub trait Calculator {
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn div(&self, ctx: &octopii::rpc::Context, a: i64, b: i64) -> Result<i64, E>;
                async fn none(&self);
                async fn cow(&self, c: std::borrow::Cow<'static, str>) -> Vec<String>;
            }
        };
        assert_eq!(errors_of(item), Vec::<String>::new());
    }

    #[test]
    fn every_problem_is_reported() {
        let item: Item = syn::parse_quote! {
            trait Bad {
                fn sync(&self);
                async fn by_value(self);
                async fn generic<T>(&self, t: T);
                async fn borrowed(&self, s: &str, v: Vec<&[u8]>);
                async fn late(&self, a: i32, ctx: &Context);
                async fn new(&self);
            }
        };
        let errors = errors_of(item);
        assert_eq!(errors.len(), 7, "{errors:#?}");
        assert!(
            errors[3].contains("use `String` instead of `&str`"),
            "{}",
            errors[3]
        );
        assert!(
            errors[4].contains("use `Vec<u8>` instead of `&[u8]`"),
            "{}",
            errors[4]
        );
    }

    #[test]
    fn streaming_patterns_pass() {
        let item: Item = syn::parse_quote! {
            pub trait Logs {
                async fn tail(&self, from: u64) -> Streaming<Line>;
                async fn upload(&self, ctx: &Context, name: String, lines: octopii::Streaming<Line>) -> u64;
                async fn chat(&self, msgs: Streaming<Msg>) -> Streaming<Msg>;
                async fn open(&self) -> Result<Streaming<u8>, E>;
            }
        };
        assert_eq!(errors_of(item), Vec::<String>::new());
    }

    #[test]
    fn misplaced_streaming_is_reported() {
        let item: Item = syn::parse_quote! {
            trait Bad {
                async fn two(&self, a: Streaming<u8>, b: Streaming<u8>);
                async fn first(&self, a: Streaming<u8>, b: u8);
                async fn nested(&self) -> Streaming<Option<Streaming<u8>>>;
                async fn inside(&self, a: Vec<Streaming<u8>>);
                async fn bare(&self, a: Streaming);
                async fn error(&self) -> Result<Streaming<u8>, Streaming<u8>>;
            }
        };
        let errors = errors_of(item);
        assert_eq!(errors.len(), 6, "{errors:#?}");
        assert!(errors[0].contains("only one `Streaming`"), "{}", errors[0]);
        assert!(
            errors[1].contains("must be the last argument"),
            "{}",
            errors[1]
        );
        assert!(errors[2].contains("cannot be nested"), "{}", errors[2]);
        assert!(
            errors[3].contains("not part of another type"),
            "{}",
            errors[3]
        );
        assert!(errors[4].contains("write `Streaming<T>`"), "{}", errors[4]);
        assert!(
            errors[5].contains("not part of another type"),
            "{}",
            errors[5]
        );
    }
}
