//! From a checked syn trait to the [`model`](crate::model).

use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, GenericArgument, ItemTrait, Pat, PathArguments, PathSegment, ReturnType,
    TraitItem, Type, TypeReference,
};

use crate::model::{Arg, Method, Reply, Service, StreamArg};

/// The service a trait declares. The trait has passed
/// [`validate::check`](crate::validate::check), so what it rejects is
/// skipped here without a second report.
pub fn service(item: &ItemTrait) -> Service {
    let methods = item
        .items
        .iter()
        .filter_map(|item| match item {
            TraitItem::Fn(method) => method_of(method),
            _ => None,
        })
        .collect();
    Service {
        attrs: item.attrs.clone(),
        cfgs: item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"))
            .cloned()
            .collect(),
        vis: item.vis.clone(),
        ident: item.ident.clone(),
        name: item.ident.unraw().to_string(),
        supertraits: item.supertraits.clone(),
        methods,
    }
}

fn method_of(method: &syn::TraitItemFn) -> Option<Method> {
    let sig = &method.sig;
    let mut inputs = sig.inputs.iter();
    let Some(FnArg::Receiver(receiver)) = inputs.next() else {
        return None;
    };
    let mut context = None;
    let mut args = Vec::new();
    let mut input_stream = None;
    for input in inputs {
        let FnArg::Typed(typed) = input else {
            return None;
        };
        let Pat::Ident(pat) = &*typed.pat else {
            return None;
        };
        let arg = Arg {
            attrs: typed.attrs.clone(),
            ident: pat.ident.clone(),
            ty: (*typed.ty).clone(),
        };
        if context_type(&typed.ty).is_some() {
            context = Some(arg);
        } else if let Some(item) = streaming_item(&typed.ty) {
            let item = item.clone();
            input_stream = Some(StreamArg { arg, item });
        } else {
            args.push(arg);
        }
    }
    let (output, output_is_unit) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), true),
        ReturnType::Type(_, ty) => {
            let unit = matches!(ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty());
            ((**ty).clone(), unit)
        }
    };
    let reply = if let Some(item) = streaming_item(&output) {
        Reply::Stream {
            item: Box::new(item.clone()),
        }
    } else if let Some((item, error)) = fallible_stream(&output) {
        Reply::FallibleStream {
            item: Box::new(item.clone()),
            error: Box::new(error.clone()),
        }
    } else {
        Reply::Value
    };
    Some(Method {
        attrs: method.attrs.clone(),
        docs: attrs_named(&method.attrs, "doc"),
        deprecated: attrs_named(&method.attrs, "deprecated"),
        ident: sig.ident.clone(),
        name: sig.ident.unraw().to_string(),
        fn_token: sig.fn_token,
        semi_token: method.semi_token.unwrap_or_default(),
        receiver: receiver.clone(),
        context,
        args,
        input_stream,
        output,
        output_is_unit,
        reply,
    })
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
pub fn is_context(ty: &Type) -> bool {
    octopii_type(ty, "Context").is_some_and(|last| last.arguments.is_none())
}

/// The reference, if `ty` is `&Context`.
pub fn context_type(ty: &Type) -> Option<&TypeReference> {
    match ungroup(ty) {
        Type::Reference(reference) if is_context(&reference.elem) => Some(reference),
        _ => None,
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
pub fn fallible_stream(ty: &Type) -> Option<(&Type, &Type)> {
    let last = plain_path(ty)?.segments.last()?;
    match type_args(last)[..] {
        [ok, error] if last.ident == "Result" => Some((streaming_item(ok)?, error)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use syn::{Type, parse_quote};

    use super::{context_type, streaming_item};

    #[test]
    fn only_octopii_context_and_streaming_are_recognised() {
        let contexts: [Type; 4] = [
            parse_quote!(&Context),
            parse_quote!(&octopii::Context),
            parse_quote!(&octopii::rpc::Context),
            parse_quote!(&::octopii::rpc::Context),
        ];
        for ty in &contexts {
            assert!(context_type(ty).is_some(), "{}", quote::quote!(#ty));
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
            assert!(context_type(ty).is_none(), "{}", quote::quote!(#ty));
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
