//! JSON-RPC 2.0 as MCP uses it: parsing a client's message from outside bytes (one message per
//! POST; batches are refused, as MCP removed them in 2025-06-18), and building answers.

use serde_json::{Map, Value, json};

/// Invalid JSON.
pub(crate) const PARSE_ERROR: i64 = -32700;
/// Not a JSON-RPC request.
pub(crate) const INVALID_REQUEST: i64 = -32600;
/// No such method.
pub(crate) const METHOD_NOT_FOUND: i64 = -32601;
/// Bad `params`.
pub(crate) const INVALID_PARAMS: i64 = -32602;
/// The gateway failed.
pub(crate) const INTERNAL_ERROR: i64 = -32603;
/// A tool (or server) the key may not use.
pub(crate) const FORBIDDEN: i64 = -32003;
/// A guardrail refused the call (or the key's guardrail policy cannot be read).
pub(crate) const GUARDRAIL: i64 = -32005;
/// A rate limit or budget of the key or its tenant refused the call.
pub(crate) const LIMITED: i64 = -32006;
/// An upstream server could not be reached or broke the protocol.
pub(crate) const UPSTREAM_UNAVAILABLE: i64 = -32004;

/// A request id: a string or an integer (never null, never fractional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Id {
    /// `"id": "abc"`.
    Text(String),
    /// `"id": 7`.
    Number(i64),
}

impl Id {
    /// The id as JSON.
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Self::Text(text) => Value::String(text.clone()),
            Self::Number(n) => Value::from(*n),
        }
    }
}

/// One message a client sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Message {
    /// A request, to be answered.
    Request {
        /// Its id.
        id: Id,
        /// The method.
        method: String,
        /// Its `params` object (empty when absent).
        params: Map<String, Value>,
    },
    /// A notification: nothing is answered.
    Notification {
        /// The method.
        method: String,
    },
    /// An answer to a request the server sent (the gateway sends none; accepted and dropped).
    Response,
}

/// Why a body is not a message; `id` is the request's when it could be read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Malformed {
    /// JSON-RPC error code.
    pub(crate) code: i64,
    /// What is wrong.
    pub(crate) message: String,
    /// The id, if one could be read.
    pub(crate) id: Option<Id>,
}

impl Malformed {
    fn new(code: i64, message: impl Into<String>, id: Option<Id>) -> Self {
        Self { code, message: message.into(), id }
    }
}

/// Reads one JSON-RPC message from `body`.
pub(crate) fn parse(body: &[u8]) -> Result<Message, Malformed> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| Malformed::new(PARSE_ERROR, format!("the body is not valid JSON: {error}"), None))?;
    let object = match value {
        Value::Object(object) => object,
        Value::Array(_) => {
            return Err(Malformed::new(
                INVALID_REQUEST,
                "JSON-RPC batches are not supported (MCP sends one message per request)",
                None,
            ));
        }
        _ => return Err(Malformed::new(INVALID_REQUEST, "a JSON-RPC message is a JSON object", None)),
    };
    let id = match object.get("id") {
        None => None,
        Some(Value::String(text)) => Some(Id::Text(text.clone())),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => Some(Id::Number(n)),
            None => return Err(Malformed::new(INVALID_REQUEST, "`id` must be a string or an integer", None)),
        },
        Some(_) => return Err(Malformed::new(INVALID_REQUEST, "`id` must be a string or an integer", None)),
    };
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(Malformed::new(INVALID_REQUEST, "`jsonrpc` must be \"2.0\"", id));
    }
    let Some(method) = object.get("method") else {
        if id.is_some() && (object.contains_key("result") || object.contains_key("error")) {
            return Ok(Message::Response);
        }
        return Err(Malformed::new(INVALID_REQUEST, "`method` is missing", id));
    };
    let Some(method) = method.as_str() else {
        return Err(Malformed::new(INVALID_REQUEST, "`method` must be a string", id));
    };
    let params = match object.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => return Err(Malformed::new(INVALID_PARAMS, "`params` must be an object", id)),
    };
    Ok(match id {
        Some(id) => Message::Request { id, method: method.to_owned(), params },
        None => Message::Notification { method: method.to_owned() },
    })
}

/// A success answer.
pub(crate) fn result(id: &Id, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "result": result})
}

/// An error answer; `id` is null when the request's could not be read.
pub(crate) fn error(id: Option<&Id>, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id.map_or(Value::Null, Id::to_value), "error": {"code": code, "message": message}})
}

/// An error answer with `data`.
pub(crate) fn error_with_data(id: &Id, code: i64, message: &str, data: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id.to_value(), "error": {"code": code, "message": message, "data": data}})
}

/// The JSON text of `value` with every object's members in sorted order: equal arguments give
/// equal text whatever order the client wrote them in.
pub(crate) fn canonical(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                let mut members: Vec<(&String, &Value)> = map.iter().collect();
                members.sort_by(|a, b| a.0.cmp(b.0));
                out.push('{');
                for (index, (name, member)) in members.into_iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(name.clone()).to_string());
                    out.push(':');
                    write(member, out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}
