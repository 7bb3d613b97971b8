//! What a [`model`](crate::model) can hold but a service must not have,
//! each error at the user's offending token: method names that clash, a
//! call context or a `Streaming` out of place, and types that cannot
//! cross the wire as owned values.

use quote::quote;
use syn::{GenericArgument, PathArguments, ReturnType, Type};

use crate::Errors;
use crate::model::{Arg, ArgKind, Method, Reply, Service};
use crate::parse::{names_streaming, show, streaming_item, ungroup};

/// Methods of the generated client; a service method may not take their names.
const CLIENT_METHODS: &[&str] = &[
    "new",
    "from_client",
    "with_deadline",
    "with_metadata",
    "with_retry",
    "layer",
];

/// Reports every problem of `service` into `errors`, method by method.
pub fn service(service: &Service, errors: &mut Errors) {
    let mut seen: Vec<&str> = Vec::new();
    for method in &service.methods {
        let name = method.name.as_str();
        if seen.contains(&name) {
            errors.at(
                &method.ident,
                format_args!("the service already has a method named `{name}`"),
            );
        }
        seen.push(name);
        if CLIENT_METHODS.contains(&name) {
            errors.at(
                &method.ident,
                format_args!(
                    "a service method cannot be named `{name}`: the generated `{}Client::{name}` has that name; rename the method",
                    service.name
                ),
            );
        }
        check_inputs(method, errors);
        check_type(&method.output, Position::Return, errors);
        match &method.reply {
            Reply::Value => check_no_streaming(&method.output, errors),
            Reply::Stream { item } => check_stream_item(item, errors),
            Reply::FallibleStream { item, error } => {
                check_stream_item(item, errors);
                check_no_streaming(error, errors);
            }
        }
        let unary = matches!(method.reply, Reply::Value) && method.input_stream().is_none();
        if method.idempotent && !unary {
            errors.at(
                &method.ident,
                "only a unary method can be `#[octopii(idempotent)]`: a stream is not retried",
            );
        }
    }
}

fn check_inputs(method: &Method, errors: &mut Errors) {
    let is_stream = |arg: &Arg| matches!(arg.kind, ArgKind::Stream { .. });
    for (position, arg) in method.inputs.iter().enumerate() {
        match &arg.kind {
            ArgKind::Context => check_context(position, arg, errors),
            ArgKind::Value => {
                check_type(&arg.ty, Position::Arg, errors);
                check_no_streaming(&arg.ty, errors);
            }
            ArgKind::Stream { item } => {
                check_type(&arg.ty, Position::Arg, errors);
                if method.inputs[..position].iter().any(is_stream) {
                    errors.at(
                        &arg.ty,
                        "a service method can take only one `Streaming` argument: send the \
                         items of both in one stream, of an enum or a struct",
                    );
                } else if !method.inputs[position + 1..].iter().all(is_stream) {
                    errors.at(
                        &arg.ty,
                        "a `Streaming` argument must be the last argument: its items follow \
                         the others on the wire",
                    );
                }
                check_stream_item(item, errors);
            }
        }
    }
}

/// Reports a call context that is not the first argument, or not taken as
/// plain `&Context`.
fn check_context(position: usize, arg: &Arg, errors: &mut Errors) {
    let Arg {
        attrs, ident, ty, ..
    } = arg;
    if position != 0 {
        errors.at(
            quote!(#(#attrs)* #ident: #ty),
            "the call context must be the first argument after `&self`",
        );
        return;
    }
    let message = match ungroup(ty) {
        Type::Reference(reference) if reference.mutability.is_some() => {
            "take the call context as `&Context`, not `&mut Context`"
        }
        Type::Reference(reference) if reference.lifetime.is_some() => {
            "take the call context as plain `&Context`, without a lifetime"
        }
        Type::Reference(_) => return,
        _ => "take the call context as `&Context`",
    };
    errors.at(ty, message);
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
            errors.at(
                found,
                "`Streaming` can only be a method's last argument or its return type \
                 (alone or as `Result<Streaming<T>, E>`), not part of another type",
            );
        }
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

#[cfg(test)]
mod tests {
    use syn::Type;

    use super::owned;

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
}
