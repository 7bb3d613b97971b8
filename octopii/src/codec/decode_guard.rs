//! Limits on what decoding a value may cost beyond its bytes: how deeply it
//! nests and how many sequence elements it holds.
//!
//! bincode's size limit bounds the bytes a decoder allocates, not the work
//! it does for bytes it does not need: a type that contains itself (a tree,
//! a JSON-like value) nested a million levels deep in a few megabytes
//! recurses a million times and overflows the thread's stack, and a
//! `Vec<()>` claiming 2^64 elements reads no byte per element and never
//! ends. [`Guarded`] wraps the decoder's `serde::Deserializer`, counting
//! nesting and elements as they are visited, and fails the decode with an
//! ordinary error once either passes its limit.

use std::cell::Cell;
use std::marker::PhantomData;

use serde::de::{self, DeserializeSeed, Deserializer, Visitor};

/// Compound values (sequences, maps, tuples, structs, enums, options,
/// newtypes) a value may nest inside one another. Each level of a
/// recursive type takes at least one; 128 leaves room for any type that
/// does not recurse, and keeps the stack a decode uses far below the
/// 2 MiB of a runtime thread.
pub const MAX_DEPTH: u32 = 128;

/// Sequence elements and map entries a value may hold in total beyond one
/// per byte of its encoding. An element encoded in at least one byte is
/// paid for by its bytes; this many may be zero-sized (`()`, unit structs).
pub const SPARE_ELEMENTS: u64 = 65_536;

/// The counters of one decode, shared by every layer of the wrapper.
pub(super) struct Limits {
    depth_left: Cell<u32>,
    elements_left: Cell<u64>,
    elements_allowed: u64,
    hit: Cell<Option<Hit>>,
}

/// Which limit refused a decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hit {
    /// Nesting, [`MAX_DEPTH`].
    Depth,
    /// Sequence elements; the number allowed.
    Elements(u64),
}

impl Limits {
    /// The limits for decoding a value from `len` bytes.
    pub(super) fn for_input(len: usize) -> Self {
        let elements_allowed = (len as u64).saturating_add(SPARE_ELEMENTS);
        Limits {
            depth_left: Cell::new(MAX_DEPTH),
            elements_left: Cell::new(elements_allowed),
            elements_allowed,
            hit: Cell::new(None),
        }
    }

    /// The limit that refused the decode, if one did.
    pub(super) fn hit(&self) -> Option<Hit> {
        self.hit.get()
    }

    /// Runs `f` one nesting level deeper.
    fn nested<T, E: de::Error>(&self, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        let left = self.depth_left.get();
        if left == 0 {
            self.hit.set(Some(Hit::Depth));
            return Err(E::custom(format_args!(
                "the value nests deeper than {MAX_DEPTH} levels"
            )));
        }
        self.depth_left.set(left - 1);
        let out = f();
        self.depth_left.set(left);
        out
    }

    /// Counts one more element of a sequence or map.
    fn element<E: de::Error>(&self) -> Result<(), E> {
        let left = self.elements_left.get();
        if left == 0 {
            self.hit.set(Some(Hit::Elements(self.elements_allowed)));
            return Err(E::custom(
                "the value holds more sequence elements than its bytes allow",
            ));
        }
        self.elements_left.set(left - 1);
        Ok(())
    }

    fn cap_hint(&self, hint: Option<usize>) -> Option<usize> {
        let left = usize::try_from(self.elements_left.get()).unwrap_or(usize::MAX);
        hint.map(|n| n.min(left))
    }
}

/// A seed that decodes a `T` through the guarded deserializer.
pub(super) struct GuardedSeed<'l, T> {
    pub(super) limits: &'l Limits,
    pub(super) _value: PhantomData<T>,
}

impl<'de, T: de::Deserialize<'de>> DeserializeSeed<'de> for GuardedSeed<'_, T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<T, D::Error> {
        T::deserialize(Guarded {
            inner: deserializer,
            limits: self.limits,
        })
    }
}

/// A `Deserializer` that counts nesting and elements on the way through.
struct Guarded<'l, D> {
    inner: D,
    limits: &'l Limits,
}

/// Wraps anything handed to a visitor, so what it decodes stays guarded.
struct Wrap<'l, X> {
    inner: X,
    limits: &'l Limits,
}

impl<'l, X> Wrap<'l, X> {
    fn new(inner: X, limits: &'l Limits) -> Self {
        Wrap { inner, limits }
    }
}

macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.inner.$method(Wrap::new(visitor, self.limits))
        }
    )*};
}

macro_rules! forward_nested {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            let limits = self.limits;
            limits.nested(|| self.inner.$method(Wrap::new(visitor, limits)))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Guarded<'_, D> {
    type Error = D::Error;

    forward! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64
        deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_unit
        deserialize_identifier deserialize_ignored_any
    }

    forward_nested! { deserialize_any deserialize_option deserialize_seq deserialize_map }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.inner
            .deserialize_unit_struct(name, Wrap::new(visitor, self.limits))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        limits.nested(|| {
            self.inner
                .deserialize_newtype_struct(name, Wrap::new(visitor, limits))
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        limits.nested(|| {
            self.inner
                .deserialize_tuple(len, Wrap::new(visitor, limits))
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        limits.nested(|| {
            self.inner
                .deserialize_tuple_struct(name, len, Wrap::new(visitor, limits))
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        limits.nested(|| {
            self.inner
                .deserialize_struct(name, fields, Wrap::new(visitor, limits))
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let limits = self.limits;
        limits.nested(|| {
            self.inner
                .deserialize_enum(name, variants, Wrap::new(visitor, limits))
        })
    }

    fn is_human_readable(&self) -> bool {
        self.inner.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Self::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.expecting(f)
    }

    visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char)
        visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_some(Guarded {
            inner: d,
            limits: self.limits,
        })
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        self.inner.visit_newtype_struct(Guarded {
            inner: d,
            limits: self.limits,
        })
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_seq(Wrap::new(seq, self.limits))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_map(Wrap::new(map, self.limits))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Self::Value, A::Error> {
        self.inner.visit_enum(Wrap::new(data, self.limits))
    }
}

/// A seed whose deserializer is guarded.
impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Wrap<'_, S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.inner.deserialize(Guarded {
            inner: d,
            limits: self.limits,
        })
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, A::Error> {
        let next = self.inner.next_element_seed(Wrap::new(seed, self.limits))?;
        if next.is_some() {
            self.limits.element::<A::Error>()?;
        }
        Ok(next)
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.cap_hint(self.inner.size_hint())
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let next = self.inner.next_key_seed(Wrap::new(seed, self.limits))?;
        if next.is_some() {
            self.limits.element::<A::Error>()?;
        }
        Ok(next)
    }

    fn next_value_seed<S: DeserializeSeed<'de>>(&mut self, seed: S) -> Result<S::Value, A::Error> {
        self.inner.next_value_seed(Wrap::new(seed, self.limits))
    }

    fn size_hint(&self) -> Option<usize> {
        self.limits.cap_hint(self.inner.size_hint())
    }
}

impl<'de, 'l, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Wrap<'l, A> {
    type Error = A::Error;
    type Variant = Wrap<'l, A::Variant>;

    fn variant_seed<S: DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self::Variant), A::Error> {
        let (value, variant) = self.inner.variant_seed(Wrap::new(seed, self.limits))?;
        Ok((value, Wrap::new(variant, self.limits)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Wrap<'_, A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.inner.unit_variant()
    }

    // A variant's fields are read within its enum's level.
    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, A::Error> {
        self.inner
            .newtype_variant_seed(Wrap::new(seed, self.limits))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.inner
            .tuple_variant(len, Wrap::new(visitor, self.limits))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.inner
            .struct_variant(fields, Wrap::new(visitor, self.limits))
    }
}
