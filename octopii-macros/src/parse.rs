//! From a checked syn trait to the [`model`](crate::model).

use syn::ext::IdentExt;
use syn::{Attribute, FnArg, ItemTrait, Pat, ReturnType, TraitItem, Type, TypeReference};

use crate::model::{Arg, Method, Service};

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
        output,
        output_is_unit,
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
