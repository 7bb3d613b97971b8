//! Procedural macros for Octopii. Use them through the `octopii` crate:
//! `#[octopii::service]` is documented there.
//!
//! The attribute works in three passes, each in its own module:
//!
//! * `validate` checks the trait for what a service cannot express and
//!   reports every problem at once, each pointing at the offending token;
//! * `parse` turns the checked trait into the `model`;
//! * `generate` writes the trait back, the client and the server.

use proc_macro::TokenStream;

mod generate;
mod model;
mod parse;
mod validate;

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
    match validate::check(args, &item) {
        Ok(item_trait) => generate::service(&parse::service(item_trait)),
        Err(error) => with_input(error, generate::fallback(item)),
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
            expanded.contains("streaming :: call :: server_streaming"),
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
}
