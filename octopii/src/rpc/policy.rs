//! Authorization: which verified callers a service serves.
//!
//! The transport establishes who called (the certificate's name and
//! [`Role`]); a [`Policy`] decides whether that caller may call a method.
//! The router asks the service ([`Service::authorize`]) before every call,
//! in one place, and answers a refusal with [`Code::PermissionDenied`]
//! (or [`Code::Unauthenticated`] when the caller's identity was never
//! verified, under `insecure_accept_any_certificate`), logging who was
//! refused and why.
//!
//! A generated server serves any caller the transport let in unless it is
//! wrapped: `XServer::new(service).authorize(policy)`; any other
//! [`Service`] can be wrapped with [`Authorized::new`].

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use super::{CallStream, Code, Context, HandlerFuture, RpcError, Service, StreamFuture};
use crate::identity::Role;
use crate::transport::PeerInfo;

/// One call as a policy sees it: the verified caller, service and method.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    peer: &'a PeerInfo,
    service: &'a str,
    method: &'a str,
}

impl<'a> Call<'a> {
    /// The call of `service.method` by `peer`.
    pub fn new(peer: &'a PeerInfo, service: &'a str, method: &'a str) -> Self {
        Call {
            peer,
            service,
            method,
        }
    }

    /// The caller's role, from its certificate.
    pub fn role(&self) -> Role {
        self.peer.role
    }

    /// The caller's name (its certificate's subject common name).
    pub fn name(&self) -> &'a str {
        &self.peer.identity
    }

    /// The caller's raft id, if it holds a node certificate.
    pub fn node_id(&self) -> Option<u64> {
        self.peer.role.node_id()
    }

    /// Whether the caller's certificate was verified against the cluster CA.
    pub fn verified(&self) -> bool {
        self.peer.verified
    }

    /// The service called.
    pub fn service(&self) -> &'a str {
        self.service
    }

    /// The method called.
    pub fn method(&self) -> &'a str {
        self.method
    }

    /// Everything the transport knows about the caller.
    pub fn peer(&self) -> &'a PeerInfo {
        self.peer
    }
}

type Rule = Arc<dyn Fn(&Call<'_>) -> bool + Send + Sync>;

/// Who may call a service, and optionally each of its methods.
///
/// A policy is a rule on the [`Call`] (the caller's verified role, name and
/// raft id, the service and method names) with a description that refusals
/// quote. [`method`](Self::method) gives one method a rule of its own.
///
/// ```
/// use octopii::rpc::Policy;
///
/// // Anyone may read; only nodes and admins may write.
/// let writers = Policy::nodes().or(Policy::admins());
/// let policy = Policy::any_caller().method("put", writers);
/// # let _ = policy;
/// ```
#[derive(Clone)]
pub struct Policy {
    rule: Rule,
    description: Arc<str>,
    methods: Vec<(Arc<str>, Policy)>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let methods: Vec<_> = self
            .methods
            .iter()
            .map(|(name, policy)| (name, &policy.description))
            .collect();
        f.debug_struct("Policy")
            .field("description", &self.description)
            .field("methods", &methods)
            .finish()
    }
}

impl Policy {
    /// A policy admitting the calls `rule` accepts; `description` (say,
    /// "current members") names who it admits in refusals and logs.
    pub fn from_fn(
        description: impl Into<String>,
        rule: impl Fn(&Call<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        Policy {
            rule: Arc::new(rule),
            description: description.into().into(),
            methods: Vec::new(),
        }
    }

    /// Every caller the transport let in: with verification on (the
    /// default), any certificate the cluster CA signed, whatever its role.
    /// The default of user services.
    pub fn any_caller() -> Self {
        Policy::from_fn("any caller", |_| true)
    }

    /// Callers with a role: nodes, clients and admins, but not a
    /// certificate that names no role ([`Role::Unknown`]).
    pub fn any_role() -> Self {
        Policy::from_fn("nodes, clients and admins", |call| {
            call.role() != Role::Unknown
        })
    }

    /// Node certificates only (any raft id).
    pub fn nodes() -> Self {
        Policy::from_fn("nodes", |call| call.role().is_node())
    }

    /// Client certificates only.
    pub fn clients() -> Self {
        Policy::from_fn("clients", |call| call.role() == Role::Client)
    }

    /// Admin certificates only.
    pub fn admins() -> Self {
        Policy::from_fn("admins", |call| call.role() == Role::Admin)
    }

    /// Nobody.
    pub fn nobody() -> Self {
        Policy::from_fn("nobody", |_| false)
    }

    /// Admits what either policy admits (each judged as a whole, with its
    /// own method rules).
    pub fn or(self, other: Policy) -> Self {
        let description = format!("{} or {}", self.description, other.description);
        Policy::from_fn(description, move |call| {
            self.check(call).is_ok() || other.check(call).is_ok()
        })
    }

    /// Gives `method` its own policy, replacing this one for that method.
    #[must_use]
    pub fn method(mut self, method: impl Into<String>, policy: Policy) -> Self {
        let method: Arc<str> = method.into().into();
        self.methods.retain(|(name, _)| *name != method);
        self.methods.push((method, policy));
        self
    }

    /// What this policy admits, in words.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Admits `call`, or says which rule refused it.
    pub fn check(&self, call: &Call<'_>) -> Result<(), String> {
        if let Some((_, policy)) = self.methods.iter().find(|(name, _)| **name == *call.method) {
            return policy.check(call);
        }
        if (self.rule)(call) {
            Ok(())
        } else {
            Err(format!(
                "{}.{} is for {}",
                call.service, call.method, self.description
            ))
        }
    }
}

/// A [`Service`] served only to the calls its [`Policy`] admits.
///
/// ```
/// # #[octopii::service] pub trait Echo { async fn echo(&self, s: String) -> String; }
/// # struct E;
/// # impl Echo for E { async fn echo(&self, s: String) -> String { s } }
/// use octopii::rpc::Policy;
///
/// let server = EchoServer::new(E).authorize(Policy::nodes());
/// # let _ = server;
/// ```
#[derive(Debug, Clone)]
pub struct Authorized<S> {
    service: S,
    policy: Policy,
}

impl<S> Authorized<S> {
    /// Serves `service` under `policy`, which replaces the service's own.
    pub fn new(service: S, policy: Policy) -> Self {
        Authorized { service, policy }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }
}

impl<S: Service> Service for Authorized<S> {
    fn name(&self) -> &'static str {
        self.service.name()
    }

    fn methods(&self) -> &'static [&'static str] {
        self.service.methods()
    }

    fn authorize(&self, call: &Call<'_>) -> Result<(), String> {
        self.policy.check(call)
    }

    fn call(&self, method: &str, ctx: Context, args: Bytes) -> HandlerFuture {
        self.service.call(method, ctx, args)
    }

    fn serve_stream(
        &self,
        method: &str,
        ctx: Context,
        args: Bytes,
        stream: CallStream,
    ) -> StreamFuture {
        self.service.serve_stream(method, ctx, args, stream)
    }
}

/// Asks `service` whether `peer` may call `method`; see [`judge`].
pub(crate) fn admit(service: &dyn Service, peer: &PeerInfo, method: &str) -> Result<(), RpcError> {
    let call = Call::new(peer, service.name(), method);
    judge(&call, service.authorize(&call))
}

/// A policy's `verdict` on `call` as the caller's status; a refusal is
/// logged with the caller's identity.
pub(crate) fn judge(call: &Call<'_>, verdict: Result<(), String>) -> Result<(), RpcError> {
    let peer = call.peer();
    verdict.map_err(|why| {
        tracing::warn!(
            peer = %peer.addr,
            name = %peer.identity,
            role = %peer.role,
            verified = peer.verified,
            "refused a call: {why}"
        );
        let code = if peer.verified {
            Code::PermissionDenied
        } else {
            Code::Unauthenticated
        };
        RpcError::new(
            code,
            format!("{} `{}` may not call this: {why}", peer.role, peer.identity),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Nothing;

    impl Service for Nothing {
        fn name(&self) -> &'static str {
            "Nothing"
        }

        fn methods(&self) -> &'static [&'static str] {
            &[]
        }

        fn call(&self, method: &str, _: Context, _: Bytes) -> HandlerFuture {
            crate::rpc::unimplemented("Nothing", method)
        }
    }

    fn peer(role: Role, verified: bool) -> PeerInfo {
        PeerInfo {
            addr: "127.0.0.1:1".parse().unwrap(),
            identity: "alice".into(),
            role,
            verified,
        }
    }

    #[test]
    fn a_method_rule_replaces_the_service_rule_for_that_method_only() {
        let policy = Policy::any_caller().method("put", Policy::admins());
        let client = peer(Role::Client, true);
        let admin = peer(Role::Admin, true);
        assert!(policy.check(&Call::new(&client, "Kv", "get")).is_ok());
        let refused = policy.check(&Call::new(&client, "Kv", "put")).unwrap_err();
        assert_eq!(refused, "Kv.put is for admins");
        assert!(policy.check(&Call::new(&admin, "Kv", "put")).is_ok());
    }

    #[test]
    fn built_in_rules_judge_the_role() {
        let node = peer(Role::Node { id: 2 }, true);
        let client = peer(Role::Client, true);
        let legacy = peer(Role::Unknown, true);
        let call = |p| Call::new(p, "S", "m");
        assert!(Policy::nodes().check(&call(&node)).is_ok());
        assert!(Policy::nodes().check(&call(&client)).is_err());
        assert!(Policy::any_role().check(&call(&client)).is_ok());
        assert!(Policy::any_role().check(&call(&legacy)).is_err());
        assert!(Policy::any_caller().check(&call(&legacy)).is_ok());
        assert!(Policy::nobody().check(&call(&node)).is_err());
        let either = Policy::clients().or(Policy::nodes());
        assert!(either.check(&call(&node)).is_ok());
        assert!(either.check(&call(&legacy)).is_err());
        let by_id = Policy::from_fn("node 2", |c| c.node_id() == Some(2));
        assert!(by_id.check(&call(&node)).is_ok());
    }

    #[test]
    fn a_refusal_is_permission_denied_or_unauthenticated() {
        let service = Authorized::new(Nothing, Policy::nodes());
        let verified = admit(&service, &peer(Role::Client, true), "m").unwrap_err();
        assert_eq!(verified.code(), Code::PermissionDenied);
        assert!(verified.message().contains("client `alice`"), "{verified}");
        let unverified = admit(&service, &peer(Role::Client, false), "m").unwrap_err();
        assert_eq!(unverified.code(), Code::Unauthenticated);
        assert!(admit(&service, &peer(Role::Node { id: 1 }, true), "m").is_ok());
    }
}
