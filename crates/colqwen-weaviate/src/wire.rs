//! The binary insert path: Weaviate's gRPC `weaviate.v1.Weaviate/BatchObjects` as a Connect unary call over
//! HTTP/1.1 on the REST port (`POST /v1/grpc-web/weaviate.v1.Weaviate/BatchObjects`, body and answer plain
//! protobuf, `Content-Type: application/proto`). Weaviate serves gRPC-web and Connect there (since its
//! `grpcweb` handler, a transcoder in front of its gRPC server), so `ureq` stays the only HTTP client: no
//! tonic, no async runtime. A page's multi-vector travels as little-endian f32 bytes (≈ 393 KB for
//! 768 × 128) instead of ≈ 1.2 MB of decimal JSON that the server parses, and the answer holds only the
//! errors (the REST batch answer echoes every object, vectors included, as JSON).
//!
//! The few messages needed are written here by hand from the field numbers of Weaviate's
//! `grpc/proto/v1/batch.proto` and `base.proto` and protobuf's `struct.proto`; only the fields we send or read
//! are declared (protobuf skips unknown fields of an answer).

use std::collections::BTreeMap;

/// Path of the call on the REST port.
pub(crate) const BATCH_OBJECTS_PATH: &str = "/v1/grpc-web/weaviate.v1.Weaviate/BatchObjects";

/// `weaviate.v1.BatchObjectsRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BatchObjectsRequest {
    #[prost(message, repeated, tag = "1")]
    pub objects: Vec<BatchObject>,
    /// `weaviate.v1.ConsistencyLevel`: see [`consistency_level`].
    #[prost(int32, optional, tag = "2")]
    pub consistency_level: Option<i32>,
}

/// `weaviate.v1.BatchObject` (no references, no tenant, no single vector).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BatchObject {
    #[prost(string, tag = "1")]
    pub uuid: String,
    #[prost(message, optional, tag = "3")]
    pub properties: Option<Properties>,
    #[prost(string, tag = "4")]
    pub collection: String,
    #[prost(message, repeated, tag = "23")]
    pub vectors: Vec<Vectors>,
}

/// `weaviate.v1.BatchObject.Properties`: only the scalar ones (`non_ref_properties`).
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Properties {
    #[prost(message, optional, tag = "1")]
    pub non_ref_properties: Option<Struct>,
}

/// `google.protobuf.Struct`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Struct {
    #[prost(btree_map = "string, message", tag = "1")]
    pub fields: BTreeMap<String, Value>,
}

/// `google.protobuf.Value`, the two kinds we send.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Value {
    #[prost(oneof = "Kind", tags = "2, 3")]
    pub kind: Option<Kind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
pub(crate) enum Kind {
    /// `number_value`: Weaviate takes a whole number for an `int` property.
    #[prost(double, tag = "2")]
    Number(f64),
    /// `string_value` (text, and blobs as base64).
    #[prost(string, tag = "3")]
    Text(String),
}

/// `weaviate.v1.Vectors`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Vectors {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(bytes = "vec", tag = "3")]
    pub vector_bytes: Vec<u8>,
    /// `VectorType`: 2 is `VECTOR_TYPE_MULTI_FP32`.
    #[prost(int32, tag = "4")]
    pub r#type: i32,
}

/// `VECTOR_TYPE_MULTI_FP32`.
pub(crate) const MULTI_FP32: i32 = 2;

/// `weaviate.v1.BatchObjectsReply`.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BatchObjectsReply {
    #[prost(float, tag = "1")]
    pub took: f32,
    #[prost(message, repeated, tag = "2")]
    pub errors: Vec<BatchError>,
}

/// `weaviate.v1.BatchObjectsReply.BatchError`: `index` is the object's position in the request.
#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct BatchError {
    #[prost(int32, tag = "1")]
    pub index: i32,
    #[prost(string, tag = "2")]
    pub error: String,
}

/// `weaviate.v1.ConsistencyLevel` of `ONE`, `QUORUM` or `ALL` (anything else: unspecified, the server's default).
pub(crate) fn consistency_level(level: &str) -> i32 {
    match level {
        "ONE" => 1,
        "QUORUM" => 2,
        "ALL" => 3,
        _ => 0,
    }
}

/// A multi-vector in Weaviate's byte layout (`byteops.Fp32SliceOfSlicesFromBytes`): the row width as a
/// little-endian u16, then the rows' f32 values, little-endian, row-major.
pub(crate) fn multi_vector_bytes(data: &[f32], dim: usize) -> Vec<u8> {
    let dim = u16::try_from(dim).expect("an embedding dimension fits in u16 (checked by the manifest)");
    let mut out = Vec::with_capacity(2 + data.len() * 4);
    out.extend_from_slice(&dim.to_le_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Whether `body` is a Connect error (`{"code": …}`): the binary path exists and refused, as opposed to a
/// server without it (its REST router's 404).
pub(crate) fn is_connect_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok_and(|v| v.get("code").is_some_and(|c| c.is_string()))
}

/// The text of a Connect error answer (`{"code": …, "message": …}`), or the body as text.
pub(crate) fn connect_error(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(v) => match (v.get("code").and_then(|c| c.as_str()), v.get("message").and_then(|m| m.as_str())) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => text.into_owned(),
        },
        Err(_) if text.trim().is_empty() => "(empty answer)".into(),
        Err(_) => text.into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    #[test]
    fn multi_vector_layout() {
        let b = multi_vector_bytes(&[1.0, -2.5, 0.0, 3.0], 2);
        assert_eq!(&b[..2], &[2, 0]);
        assert_eq!(b.len(), 2 + 16);
        assert_eq!(f32::from_le_bytes(b[6..10].try_into().expect("4 bytes")), -2.5);
    }

    /// The encoding against bytes written out by hand from the protobuf wire format, so that a wrong tag or
    /// wire type is caught without a server.
    #[test]
    fn request_wire_bytes() {
        let mut fields = BTreeMap::new();
        fields.insert("a".to_string(), Value { kind: Some(Kind::Number(1.0)) });
        let req = BatchObjectsRequest {
            objects: vec![BatchObject {
                uuid: "u".into(),
                properties: Some(Properties { non_ref_properties: Some(Struct { fields }) }),
                collection: "C".into(),
                vectors: vec![Vectors { name: "v".into(), vector_bytes: vec![9], r#type: MULTI_FP32 }],
            }],
            consistency_level: Some(2),
        };
        let value = [0x11, 0, 0, 0, 0, 0, 0, 0xf0, 0x3f]; // field 2, fixed64: 1.0
        let mut entry = vec![0x0a, 1, b'a', 0x12, value.len() as u8];
        entry.extend_from_slice(&value);
        let mut strukt = vec![0x0a, entry.len() as u8];
        strukt.extend_from_slice(&entry);
        let mut props = vec![0x0a, strukt.len() as u8];
        props.extend_from_slice(&strukt);
        let vectors = [0x0a, 1, b'v', 0x1a, 1, 9, 0x20, 2];
        let mut object = vec![0x0a, 1, b'u', 0x1a, props.len() as u8];
        object.extend_from_slice(&props);
        object.extend_from_slice(&[0x22, 1, b'C', 0xba, 0x01, vectors.len() as u8]); // tag 23: 0xba 0x01
        object.extend_from_slice(&vectors);
        let mut expected = vec![0x0a, object.len() as u8];
        expected.extend_from_slice(&object);
        expected.extend_from_slice(&[0x10, 2]);
        assert_eq!(req.encode_to_vec(), expected);

        let reply =
            BatchObjectsReply::decode(&[0x0d, 0, 0, 0x80, 0x3f, 0x12, 5, 0x08, 3, 0x12, 1, b'x'][..]).expect("decodes");
        assert_eq!(reply.took, 1.0);
        assert_eq!(reply.errors, vec![BatchError { index: 3, error: "x".into() }]);
    }

    #[test]
    fn connect_errors_read() {
        assert_eq!(connect_error(br#"{"code":"unauthenticated","message":"no key"}"#), "unauthenticated: no key");
        assert_eq!(connect_error(b"plain"), "plain");
        assert_eq!(connect_error(b""), "(empty answer)");
        assert!(is_connect_error(br#"{"code":"not_found","message":"x"}"#));
        assert!(!is_connect_error(br#"{"code":404,"message":"path /v1/grpc-web/x was not found"}"#));
        assert!(!is_connect_error(b""));
    }
}
