//! The code a service expands to: the trait, `XClient` and `XServer<S>`.
//!
//! Everything outside the user's own tokens is named by absolute path, so
//! the expansion works whatever the user has in scope.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Type};

use crate::model::{Method, Reply, Service};

/// The whole expansion.
pub fn service(service: &Service) -> TokenStream {
    let service_trait = service_trait(service);
    let client = client(service);
    let server = server(service);
    let assertions = wire_assertions(service);
    quote! {
        #service_trait
        #client
        #server
        #assertions
    }
}

/// The item of an invalid service, as close to the input as rustc accepts
/// without reporting again what [`parse`](crate::parse) and
/// [`check`](crate::check) have already
/// reported: argument patterns become names and `const` goes.
pub fn fallback(mut item: syn::Item) -> TokenStream {
    if let syn::Item::Trait(item_trait) = &mut item {
        for trait_item in &mut item_trait.items {
            let syn::TraitItem::Fn(method) = trait_item else {
                continue;
            };
            // The attribute's own options are not attributes rustc knows.
            method.attrs.retain(|attr| !attr.path().is_ident("octopii"));
            method.sig.constness = None;
            if method.default.is_some() {
                continue;
            }
            for (i, input) in method.sig.inputs.iter_mut().enumerate() {
                let syn::FnArg::Typed(arg) = input else {
                    continue;
                };
                match &mut *arg.pat {
                    syn::Pat::Ident(pat) => {
                        pat.by_ref = None;
                        pat.mutability = None;
                        pat.subpat = None;
                    }
                    syn::Pat::Wild(_) => {}
                    pat => {
                        let ident = format_ident!("arg{i}", span = pat.span());
                        *pat = syn::parse_quote!(#ident);
                    }
                }
            }
        }
    }
    quote!(#item)
}

/// The trait as written, with `async fn`s turned into methods returning
/// `Send` futures, and `Send + Sync + 'static` added to its supertraits.
fn service_trait(service: &Service) -> TokenStream {
    let Service {
        attrs, vis, ident, ..
    } = service;
    let supertraits = service
        .supertraits
        .iter()
        .map(|bound| quote!(#bound))
        .chain([
            quote!(::core::marker::Send),
            quote!(::core::marker::Sync),
            quote!('static),
        ]);
    let methods = service.methods.iter().map(|method| {
        let Method {
            attrs,
            fn_token,
            semi_token,
            ident,
            receiver,
            output,
            ..
        } = method;
        let inputs = method.inputs.iter().map(|arg| {
            let (attrs, ident, ty) = (&arg.attrs, &arg.ident, &arg.ty);
            quote!(#(#attrs)* #ident: #ty)
        });
        quote! {
            #(#attrs)*
            #[allow(clippy::too_many_arguments)]
            #fn_token #ident(#receiver #(, #inputs)*)
                -> impl ::core::future::Future<Output = #output> + ::core::marker::Send #semi_token
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: #(#supertraits)+* {
            #(#methods)*
        }
    }
}

fn client_ident(service: &Service) -> Ident {
    format_ident!(
        "{}Client",
        service.ident.unraw_string(),
        span = service.ident.span()
    )
}

fn server_ident(service: &Service) -> Ident {
    format_ident!(
        "{}Server",
        service.ident.unraw_string(),
        span = service.ident.span()
    )
}

/// `XClient`: one `async fn` per method, calling the peer.
fn client(service: &Service) -> TokenStream {
    let Service {
        cfgs,
        vis,
        ident,
        name,
        ..
    } = service;
    let client = client_ident(service);
    let struct_doc = doc(format!(
        "A client of the [`{ident}`] service on one peer: each method calls the peer and \
         returns its value, or an `octopii::RpcError` if the call itself failed."
    ));
    let name_doc = doc(format!("The service's name on the wire: `\"{name}\"`."));

    let wire = wire_bounds(service_types(service));
    let methods = service.methods.iter().map(|method| {
        let Method {
            docs,
            deprecated,
            ident: method_ident,
            output,
            ..
        } = method;
        let call_doc = doc(format!("Calls [`{ident}::{method_ident}`] on the peer."));
        let separator = (!docs.is_empty()).then(|| doc(String::new()));
        let idents: Vec<&Ident> = method.args().map(|arg| &arg.ident).collect();
        let types: Vec<&Type> = method.args().map(|arg| &arg.ty).collect();
        let stream_param = method.input_stream().map(|(stream, _)| {
            let (ident, ty) = (&stream.ident, &stream.ty);
            quote!(, #ident: impl ::core::convert::Into<#ty>)
        });
        let body = client_body(method);
        let fingerprint = method.fingerprint();
        quote! {
            #(#docs)*
            #separator
            #call_doc
            #(#deprecated)*
            #[allow(clippy::too_many_arguments)]
            #vis async fn #method_ident(&self #(, #idents: #types)* #stream_param)
                -> ::core::result::Result<#output, ::octopii::__private::RpcError>
            {
                let __args = (#(#idents,)*);
                let __client = self.client.with_signature(#fingerprint);
                #body
            }
        }
    });

    quote! {
        #(#cfgs)*
        #struct_doc
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #[allow(dead_code)]
        #vis struct #client {
            client: ::octopii::__private::Client,
        }

        #(#cfgs)*
        #[allow(dead_code)]
        impl #client {
            #name_doc
            #vis const SERVICE_NAME: &'static str = #name;

            /// A client of the service on the node at `peer`, calling
            /// through `node`'s connections.
            #vis fn new(node: &impl ::octopii::__private::Connect, peer: ::std::net::SocketAddr) -> Self {
                Self::from_client(::octopii::__private::Client::new(node, peer))
            }

            /// A client of the service over an existing `octopii::rpc::Client`,
            /// keeping its peer, deadline and metadata.
            #vis fn from_client(client: ::octopii::__private::Client) -> Self {
                Self { client }
            }

            /// A copy whose calls give up after `deadline`; the server is told
            /// and stops the handler when it passes.
            #[must_use]
            #vis fn with_deadline(&self, deadline: ::core::time::Duration) -> Self {
                Self { client: self.client.with_deadline(deadline) }
            }

            /// A copy whose calls carry `key = value` as metadata, which the
            /// handler reads from its `Context`.
            #[must_use]
            #vis fn with_metadata(
                &self,
                key: impl ::core::convert::Into<::std::string::String>,
                value: impl ::core::convert::Into<::std::string::String>,
            ) -> Self {
                Self { client: self.client.with_metadata(key, value) }
            }

            /// A copy whose calls are retried under `policy`: a call that
            /// never ran, and one that may have run if its method is
            /// `#[octopii(idempotent)]`.
            #[must_use]
            #vis fn with_retry(&self, policy: ::octopii::__private::RetryPolicy) -> Self {
                Self { client: self.client.with_retry(policy) }
            }

            /// A copy whose calls pass through `tower` layers (a
            /// `tower::ServiceBuilder` stacks several into one), replacing
            /// any given before; see `octopii::rpc::layers`.
            #[must_use]
            #vis fn layer<L>(&self, layer: L) -> Self
            where
                L: ::octopii::__private::Layer<::octopii::__private::Direct>,
                L::Service: ::octopii::__private::TowerService<
                        ::octopii::__private::Outgoing,
                        Response = ::octopii::__private::Bytes,
                        Error: ::core::convert::Into<::octopii::__private::BoxError>,
                        Future: ::core::marker::Send + 'static,
                    > + ::core::marker::Send
                    + 'static,
            {
                Self { client: self.client.layer(layer) }
            }
        }

        #(#cfgs)*
        #[allow(dead_code)]
        impl #client
        where
            #wire
        {
            #(#methods)*
        }
    }
}

/// The body of a client method, with the request's arguments in `__args`.
fn client_body(method: &Method) -> TokenStream {
    let Method { name, output, .. } = method;
    let types = method.args().map(|arg| &arg.ty);
    let args = quote!((#(#types,)*));
    let calls = quote!(::octopii::__private);
    let input = method.input_stream().map(|(stream, item)| {
        let ident = &stream.ident;
        (quote!(::core::convert::Into::into(#ident)), item)
    });
    let opened = |item: &Type| match &input {
        None => quote! {
            #calls::server_streaming::<#args, #item>(&__client, Self::SERVICE_NAME, #name, &__args)
                .await?
        },
        Some((input, input_item)) => quote! {
            #calls::bidi_streaming::<#args, #input_item, #item>(
                &__client, Self::SERVICE_NAME, #name, &__args, #input,
            )
            .await?
        },
    };
    match (&method.reply, &input) {
        (Reply::Value, None) if method.idempotent => quote! {
            __client
                .call_idempotent::<#args, #output>(Self::SERVICE_NAME, #name, &__args)
                .await
        },
        (Reply::Value, None) => quote! {
            __client
                .call::<#args, #output>(Self::SERVICE_NAME, #name, &__args)
                .await
        },
        (Reply::Value, Some((input, input_item))) => quote! {
            #calls::client_streaming::<#args, #input_item, #output>(
                &__client, Self::SERVICE_NAME, #name, &__args, #input,
            )
            .await
        },
        (Reply::Stream { item }, _) => {
            let opened = opened(item);
            quote! {
                let (__head, __items) = #opened;
                #calls::decode_head::<()>(&__head)?;
                ::core::result::Result::Ok(__items)
            }
        }
        (Reply::FallibleStream { item, error }, _) => {
            let opened = opened(item);
            quote! {
                let (__head, __items) = #opened;
                let __head = #calls::decode_head::<::core::result::Result<(), #error>>(&__head)?;
                ::core::result::Result::Ok(__head.map(|()| __items))
            }
        }
    }
}

/// `XServer<S>`: implements `octopii::rpc::Service` for any `S: X`.
fn server(service: &Service) -> TokenStream {
    let Service {
        cfgs,
        vis,
        ident,
        name,
        ..
    } = service;
    let server = server_ident(service);
    let server_name = server.to_string();
    let s = server_param(service);
    let struct_doc = doc(format!(
        "Serves an implementation of [`{ident}`]: hand it to `OctopiiNode::serve`."
    ));
    let names = service.methods.iter().map(|method| &method.name);

    let arms = service.methods.iter().map(|method| {
        let method_name = &method.name;
        if method.is_streaming() {
            return quote! {
                #method_name => ::octopii::__private::streaming_only(#name, __method),
            };
        }
        let (decode, invoke) = decode_and_invoke(service, method, &s);
        let reply = value_reply(method, invoke);
        quote! {
            #method_name => {
                let __service = ::std::sync::Arc::clone(&self.service);
                ::std::boxed::Box::pin(async move {
                    #decode
                    #reply
                })
            }
        }
    });
    let dispatch = if service.methods.is_empty() {
        quote!(::octopii::__private::unimplemented(#name, __method))
    } else {
        quote! {
            match __method {
                #(#arms)*
                _ => ::octopii::__private::unimplemented(#name, __method),
            }
        }
    };
    let serve_stream = serve_stream(service, &s);
    let wire = wire_bounds(service_types(service));

    quote! {
        #(#cfgs)*
        #struct_doc
        #[allow(dead_code)]
        #vis struct #server<S> {
            service: ::std::sync::Arc<S>,
        }

        #(#cfgs)*
        #[allow(dead_code)]
        impl<#s: #ident> #server<#s> {
            /// Serves `service`.
            #vis fn new(service: #s) -> Self {
                Self::from_arc(::std::sync::Arc::new(service))
            }

            /// Serves a shared `service`, which the caller may go on using.
            #vis fn from_arc(service: ::std::sync::Arc<#s>) -> Self {
                Self { service }
            }

            /// Serves only the calls `policy` admits; the others are
            /// answered `PermissionDenied`. Without it, every caller the
            /// transport let in is served.
            #vis fn authorize(
                self,
                policy: ::octopii::__private::Policy,
            ) -> ::octopii::__private::Authorized<Self> {
                ::octopii::__private::Authorized::new(self, policy)
            }

            /// Serves the service through `tower` layers (a
            /// `tower::ServiceBuilder` stacks several into one); see
            /// `octopii::rpc::layers`.
            #vis fn layer<L>(self, layer: L) -> ::octopii::__private::Layered<L::Service>
            where
                Self: ::octopii::__private::Service,
                L: ::octopii::__private::Layer<::octopii::__private::Handler>,
            {
                ::octopii::__private::Layered::new(self, layer)
            }
        }

        #(#cfgs)*
        impl<#s> ::core::clone::Clone for #server<#s> {
            fn clone(&self) -> Self {
                Self { service: ::std::sync::Arc::clone(&self.service) }
            }
        }

        #(#cfgs)*
        impl<#s> ::core::fmt::Debug for #server<#s> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                f.debug_struct(#server_name).finish_non_exhaustive()
            }
        }

        #(#cfgs)*
        #[allow(deprecated)]
        impl<#s: #ident> ::octopii::__private::Service for #server<#s>
        where
            #wire
        {
            fn name(&self) -> &'static str {
                #name
            }

            fn methods(&self) -> &'static [&'static str] {
                &[#(#names),*]
            }

            fn call(
                &self,
                __method: &str,
                __ctx: ::octopii::__private::Context,
                __args: ::octopii::__private::Bytes,
            ) -> ::octopii::__private::HandlerFuture {
                #dispatch
            }

            #serve_stream
        }
    }
}

/// The statement decoding a method's request arguments from `__args`, and
/// the expression calling the handler with them (and `__ctx`, `__input`).
fn decode_and_invoke(service: &Service, method: &Method, s: &Ident) -> (TokenStream, TokenStream) {
    let ident = &service.ident;
    let method_ident = &method.ident;
    let types: Vec<&Type> = method.args().map(|arg| &arg.ty).collect();
    let values: Vec<Ident> = (0..types.len())
        .map(|i| Ident::new(&format!("__arg{i}"), Span::mixed_site()))
        .collect();
    let context = method.takes_context().then(|| quote!(&__ctx,));
    let input = method.input_stream().map(|_| quote!(__input));
    let (name, signature, fingerprint) = (&service.name, method.signature(), method.fingerprint());
    // A caller built from another version of the method is told so before
    // its arguments are decoded as this version's.
    let check = quote! {
        ::octopii::__private::check_signature(&__ctx, #name, #signature, #fingerprint)?;
    };
    let decode = if types.is_empty() {
        quote!(#check ::octopii::__private::decode_args::<()>(&__args)?;)
    } else {
        quote!(#check let (#(#values,)*): (#(#types,)*) = ::octopii::__private::decode_args(&__args)?;)
    };
    let invoke = quote! {
        <#s as #ident>::#method_ident(&__service, #context #(#values,)* #input).await
    };
    (decode, invoke)
}

/// The encoded value a method answers, as a `Result<Vec<u8>, RpcError>`.
fn value_reply(method: &Method, invoke: TokenStream) -> TokenStream {
    let output = &method.output;
    if method.output_is_unit {
        quote! {
            #invoke;
            ::octopii::__private::encode_output(&())
        }
    } else {
        quote!(::octopii::__private::encode_output::<#output>(&#invoke))
    }
}

/// `Service::serve_stream` for the methods that stream, if there are any.
fn serve_stream(service: &Service, s: &Ident) -> TokenStream {
    let name = &service.name;
    let calls = quote!(::octopii::__private);
    let arms: Vec<TokenStream> = service
        .methods
        .iter()
        .filter(|method| method.is_streaming())
        .map(|method| {
            let method_name = &method.name;
            let (decode, invoke) = decode_and_invoke(service, method, s);
            let accept = match method.input_stream() {
                Some((_, item)) => {
                    quote!(let (__sink, __input) = #calls::split::<#item>(__stream);)
                }
                None => quote!(let __sink = #calls::sink(__stream);),
            };
            // The handler's result type, for `?` in the async block.
            let ok = quote!(::core::result::Result::<_, ::octopii::__private::RpcError>::Ok);
            let (reply, send) = match &method.reply {
                Reply::Value => (value_reply(method, invoke), quote!(respond)),
                Reply::Stream { .. } => (
                    quote! {
                        let __items = #invoke;
                        #ok((::octopii::__private::encode_output(&())?, ::core::option::Option::Some(__items)))
                    },
                    quote!(answer),
                ),
                Reply::FallibleStream { error, .. } => {
                    let head = quote!(::octopii::__private::encode_output::<::core::result::Result<(), #error>>);
                    (
                        quote! {
                            match #invoke {
                                ::core::result::Result::Ok(__items) => #ok((
                                    #head(&::core::result::Result::Ok(()))?,
                                    ::core::option::Option::Some(__items),
                                )),
                                ::core::result::Result::Err(__error) => #ok((
                                    #head(&::core::result::Result::Err(__error))?,
                                    ::core::option::Option::None,
                                )),
                            }
                        },
                        quote!(answer),
                    )
                }
            };
            quote! {
                #method_name => {
                    let __service = ::std::sync::Arc::clone(&self.service);
                    ::std::boxed::Box::pin(async move {
                        #accept
                        let __handler = async {
                            #decode
                            #reply
                        };
                        __sink.#send(__handler).await;
                    })
                }
            }
        })
        .collect();
    if arms.is_empty() {
        return TokenStream::new();
    }
    quote! {
        fn serve_stream(
            &self,
            __method: &str,
            __ctx: ::octopii::__private::Context,
            __args: ::octopii::__private::Bytes,
            __stream: ::octopii::__private::CallStream,
        ) -> ::octopii::__private::StreamFuture {
            match __method {
                #(#arms)*
                _ => #calls::no_streaming_method(#name, __method, __stream),
            }
        }
    }
}

/// The name of the server's type parameter in its impls: `S`, unless the
/// service's own tokens use that name (a type `S` in a signature, or a
/// trait named `S`), which the parameter would then shadow.
fn server_param(service: &Service) -> Ident {
    fn mentions(tokens: TokenStream, name: &str) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => ident == name,
            proc_macro2::TokenTree::Group(group) => mentions(group.stream(), name),
            _ => false,
        })
    }
    let ident = &service.ident;
    let types = service.methods.iter().flat_map(Method::written_types);
    let mut tokens = quote!(#ident);
    tokens.extend(types.map(|ty| quote!(#ty)));
    let name = if mentions(tokens, "S") { "__S" } else { "S" };
    Ident::new(name, Span::call_site())
}

/// Every type whose values cross the wire, over all methods, in order.
fn service_types(service: &Service) -> impl Iterator<Item = &Type> {
    service.methods.iter().flat_map(Method::wire_types)
}

/// The distinct types that cross the wire, in order of appearance.
fn wire_types<'a>(types: impl IntoIterator<Item = &'a Type>) -> Vec<&'a Type> {
    let mut seen: Vec<String> = Vec::new();
    let mut distinct = Vec::new();
    for ty in types {
        if matches!(crate::parse::ungroup(ty), Type::Tuple(tuple) if tuple.elems.is_empty()) {
            // `()` always crosses the wire.
            continue;
        }
        let key = quote!(#ty).to_string();
        if !seen.contains(&key) {
            seen.push(key);
            distinct.push(ty);
        }
    }
    distinct
}

/// One static assertion per type: a type that cannot cross the wire is
/// reported once, at the user's type, with `Wire`'s message.
fn wire_assertions(service: &Service) -> TokenStream {
    let types = wire_types(service_types(service));
    if types.is_empty() {
        return TokenStream::new();
    }
    let checks = types
        .iter()
        .map(|ty| quote_spanned!(ty.span()=> assert_wire::<#ty>();));
    let cfgs = &service.cfgs;
    quote! {
        #(#cfgs)*
        const _: fn() = || {
            fn assert_wire<T: ::octopii::__private::Wire>() {}
            #(#checks)*
        };
    }
}

/// `for<'wire> T: Wire` for each type, for the where-clauses of the impl
/// holding the client's calls and of the server's `Service` impl. Under `for<'wire>`
/// a bound on a concrete type is not checked where it is written, only
/// where the item is used, and the code under it can rely on it. So a type
/// that is not `Wire` is reported once, by [`wire_assertions`], rather than
/// once more by every generated line that encodes or decodes it.
fn wire_bounds<'a>(types: impl IntoIterator<Item = &'a Type>) -> TokenStream {
    let bounds = wire_types(types)
        .into_iter()
        .map(|ty| quote_spanned!(ty.span()=> for<'wire> #ty: ::octopii::__private::Wire,));
    quote!(#(#bounds)*)
}

fn doc(text: String) -> TokenStream {
    let text = if text.is_empty() {
        text
    } else {
        format!(" {text}")
    };
    quote!(#[doc = #text])
}

trait UnrawString {
    fn unraw_string(&self) -> String;
}

impl UnrawString for Ident {
    fn unraw_string(&self) -> String {
        syn::ext::IdentExt::unraw(self).to_string()
    }
}
