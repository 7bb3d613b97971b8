//! From a checked syn trait to the [`model`](crate::model).

use syn::ext::IdentExt;
use syn::{Attribute, FnArg, ItemTrait, Pat, ReturnType, TraitItem, Type, TypeReference};

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

/// The reference, if `ty` is the call context: `&Context` through any path
/// (`&octopii::rpc::Context`, `&Context`) whose last segment is `Context`.
pub fn context_type(ty: &Type) -> Option<&TypeReference> {
    let Type::Reference(reference) = ungroup(ty) else {
        return None;
    };
    let Type::Path(path) = ungroup(&reference.elem) else {
        return None;
    };
    let last = path.path.segments.last()?;
    (path.qself.is_none() && last.ident == "Context" && last.arguments.is_none())
        .then_some(reference)
}

/// The last segment of `ty` and its type arguments, if `ty` is a plain path.
fn path_end(ty: &Type) -> Option<(&syn::Ident, Vec<&Type>)> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    let types = match &last.arguments {
        syn::PathArguments::None => Vec::new(),
        syn::PathArguments::AngleBracketed(args) => args
            .args
            .iter()
            .filter_map(|arg| match arg {
                syn::GenericArgument::Type(ty) => Some(ty),
                _ => None,
            })
            .collect(),
        syn::PathArguments::Parenthesized(_) => return None,
    };
    Some((&last.ident, types))
}

/// `T`, if `ty` is `Streaming<T>` through any path (`octopii::Streaming<T>`,
/// `Streaming<T>`) whose last segment is `Streaming`.
pub fn streaming_item(ty: &Type) -> Option<&Type> {
    match path_end(ty)? {
        (ident, types) if ident == "Streaming" && types.len() == 1 => Some(types[0]),
        _ => None,
    }
}

/// Whether `ty` is a path whose last segment is `Streaming`, well-formed
/// or not.
pub fn names_streaming(ty: &Type) -> bool {
    path_end(ty).is_some_and(|(ident, _)| ident == "Streaming")
}

/// `(T, E)`, if `ty` is `Result<Streaming<T>, E>`.
pub fn fallible_stream(ty: &Type) -> Option<(&Type, &Type)> {
    match path_end(ty)? {
        (ident, types) if ident == "Result" && types.len() == 2 => {
            Some((streaming_item(types[0])?, types[1]))
        }
        _ => None,
    }
}
