//! Procedural macros for Octopii. Use them through the `octopii` crate:
//! `#[octopii::service]` is documented there.
//!
//! The attribute works in three passes, each in its own module:
//!
//! * `parse` walks the syntax tree once, into the `model` of the service,
//!   and reports what the model cannot hold (an item that is not a trait,
//!   a method that is not `async fn m(&self, ..)`, argument patterns);
//! * `check` reports what the model holds but a service must not have
//!   (clashing names, a context or a `Streaming` out of place, borrowed
//!   types), also for a trait `parse` found errors in;
//! * `generate` writes the trait back, the client and the server, from a
//!   model without errors.
//!
//! Errors are collected, not returned at the first: every problem is
//! reported at once, each at the offending token.

use std::fmt::Display;

use proc_macro::TokenStream;
use quote::ToTokens;

mod check;
mod generate;
mod model;
mod parse;

/// Turns a trait of `async fn`s into an Octopii service.
///
/// On `pub trait Calculator { ... }` it expands to:
///
/// * the trait itself, with `Send + Sync + 'static` added to its
///   supertraits and each `async fn m(&self, ..) -> T` declared as
///   `fn m(&self, ..) -> impl Future<Output = T> + Send`: implement it with
///   plain `async fn`s;
/// * `CalculatorClient` (`Clone`, `Debug`): `new(&node, peer)`,
///   `from_client(client)`, `with_deadline(d)`, `with_metadata(k, v)`, the
///   constant `SERVICE_NAME`, and per method
///   `async fn m(&self, ..) -> Result<T, RpcError>`;
/// * `CalculatorServer<S>` for any `S: Calculator`: `new(service)`,
///   `from_arc(arc)`, and an implementation of `octopii::rpc::Service` to
///   hand to `OctopiiNode::serve`.
///
/// The generated items take the trait's visibility. A method may take
/// `&Context` right after `&self`: the server fills it in, and the client
/// method leaves it out. The other arguments travel as one tuple, in order;
/// the result travels as the declared type, so a method returning
/// `Result<T, E>` delivers its error as `Ok(Err(e))`.
///
/// Streaming: a method may take `Streaming<T>` as its last argument, and
/// may return `Streaming<T>` or `Result<Streaming<T>, E>`. Such a method is
/// a streaming call on a QUIC stream of its own: the client method takes
/// `impl Into<Streaming<T>>` (a `Streaming`, or a `Vec<T>`) for the
/// streaming argument and returns `Result<Streaming<T>, RpcError>` (or
/// `Result<Result<Streaming<T>, E>, RpcError>`) for a streamed result, once
/// the server's handler has returned its stream (so a bidirectional handler
/// should return it without first waiting for the client's items). A second
/// `Streaming` argument, one that is not last, a nested `Streaming` and a
/// `Streaming` inside another type are rejected.
///
/// `Context` and `Streaming` are Octopii's when written bare or by a path
/// through `octopii` (`octopii::rpc::Context`, `::octopii::Streaming<T>`).
/// A type of either name from another module is an ordinary type, which
/// travels on the wire like any other.
///
/// Rejected, each with an error at the offending token: a method that is
/// not `async`, does not take `&self`, is generic, has a default body or a
/// `#[cfg]`; argument patterns; a call context other than `&Context` right
/// after `&self`; borrowed or `impl Trait` types; argument or return types
/// that are not `Serialize + DeserializeOwned + Send + 'static`; method
/// names the client already uses (`new`, `from_client`, `with_deadline`,
/// `with_metadata`); generic traits and associated items; any attribute
/// argument.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    expand(args.into(), input.into()).into()
}

fn expand(
    args: proc_macro2::TokenStream,
    input: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let item: syn::Item = match syn::parse2(input.clone()) {
        Ok(item) => item,
        Err(error) => return with_input(error, input),
    };
    match checked_service(args, &item) {
        Ok(service) => generate::service(&service),
        Err(error) => with_input(error, generate::fallback(item)),
    }
}

/// The service `item` declares, or every error in it and in `args`.
fn checked_service(
    args: proc_macro2::TokenStream,
    item: &syn::Item,
) -> syn::Result<model::Service> {
    let mut errors = Errors::default();
    let service = parse::service(args, item, &mut errors);
    if let Some(service) = &service {
        check::service(service, &mut errors);
    }
    errors.finish()?;
    Ok(service.expect("an item that is not a trait is an error"))
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

    /// An error spanning `tokens`.
    fn at(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// The errors followed by the input, so that an invalid service reports
/// only its own mistakes, not every use of the trait as well.
fn with_input(error: syn::Error, input: proc_macro2::TokenStream) -> proc_macro2::TokenStream {
    let mut tokens = error.to_compile_error();
    tokens.extend(input);
    tokens
}

#[cfg(test)]
mod tests {
    use quote::quote;

    /// The expansion of a typical service, as a parsed file.
    fn expand_calculator() -> syn::File {
        let input = quote! {
            /// Adds numbers.
            pub trait Calculator {
                /// Adds.
                async fn add(&self, a: i64, b: i64) -> i64;
                async fn div(&self, ctx: &octopii::rpc::Context, a: i64, b: i64) -> Result<i64, MathError>;
                async fn reset(&self);
            }
        };
        let expanded = super::expand(proc_macro2::TokenStream::new(), input);
        syn::parse2(expanded).expect("the expansion parses")
    }

    #[test]
    fn expansion_declares_trait_client_and_server() {
        let file = expand_calculator();
        let names: Vec<String> = file
            .items
            .iter()
            .filter_map(|item| match item {
                syn::Item::Trait(t) => Some(format!("trait {}", t.ident)),
                syn::Item::Struct(s) => Some(format!("struct {}", s.ident)),
                _ => None,
            })
            .collect();
        assert_eq!(
            names,
            [
                "trait Calculator",
                "struct CalculatorClient",
                "struct CalculatorServer"
            ]
        );
        // `OCTOPII_PRINT_EXPANSION=1 cargo test -p octopii-macros -- --nocapture`
        // prints the expansion, to read it through rustfmt.
        if std::env::var_os("OCTOPII_PRINT_EXPANSION").is_some() {
            println!("{}", quote!(#file));
        }
    }

    #[test]
    fn streaming_methods_are_served_on_their_own_stream() {
        let input = quote! {
            pub trait Logs {
                async fn tail(&self, from: u64) -> Streaming<Line>;
                async fn ping(&self) -> u64;
            }
        };
        let expanded = super::expand(proc_macro2::TokenStream::new(), input).to_string();
        syn::parse_str::<syn::File>(&expanded).expect("the expansion parses");
        // Only the streaming method is routed through `serve_stream`, and
        // its unary route refuses it.
        assert!(expanded.contains("fn serve_stream"), "{expanded}");
        assert!(
            expanded.contains("__private :: server_streaming"),
            "{expanded}"
        );
        assert!(expanded.contains("streaming_only"), "{expanded}");
        // `Streaming<Line>` is not checked as a wire type; `Line` is.
        assert!(expanded.contains("assert_wire :: < Line >"), "{expanded}");
        assert!(
            !expanded.contains("assert_wire :: < Streaming"),
            "{expanded}"
        );
    }

    #[test]
    fn a_service_without_streaming_methods_keeps_the_default_serve_stream() {
        let input = quote! {
            pub trait Plain {
                async fn ping(&self) -> u64;
            }
        };
        let expanded = super::expand(proc_macro2::TokenStream::new(), input).to_string();
        assert!(!expanded.contains("fn serve_stream"), "{expanded}");
    }

    #[test]
    fn an_invalid_service_keeps_its_input_and_reports() {
        let input = quote! {
            pub trait Bad {
                fn sync(&self);
            }
        };
        let expanded = super::expand(proc_macro2::TokenStream::new(), input).to_string();
        assert!(expanded.contains("compile_error"), "{expanded}");
        assert!(expanded.contains("pub trait Bad"), "{expanded}");
        assert!(!expanded.contains("BadClient"), "{expanded}");
    }

    /// The messages of every error in `item`, in order.
    fn errors_of(item: syn::Item) -> Vec<String> {
        match super::checked_service(proc_macro2::TokenStream::new(), &item) {
            Ok(_) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn a_valid_service_passes() {
        let item: syn::Item = syn::parse_quote! {
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
        let item: syn::Item = syn::parse_quote! {
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
        let item: syn::Item = syn::parse_quote! {
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
        let item: syn::Item = syn::parse_quote! {
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
