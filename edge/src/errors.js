// Errors answered at the edge, in the caller's format and with the proxy's codes, so an SDK cannot
// tell an edge refusal from the gateway's own.

const OPENAI_TYPES = {
  401: "invalid_request_error",
  404: "invalid_request_error",
  405: "invalid_request_error",
  413: "invalid_request_error",
  429: "rate_limit_error",
  502: "api_error",
  503: "api_error",
};

const ANTHROPIC_TYPES = {
  401: "authentication_error",
  404: "not_found_error",
  405: "invalid_request_error",
  413: "request_too_large",
  429: "rate_limit_error",
  502: "api_error",
  503: "overloaded_error",
};

/** The error body for `format` ("openai" or "anthropic"). */
export function errorBody(format, status, code, message) {
  if (format === "anthropic") {
    return { type: "error", error: { type: ANTHROPIC_TYPES[status] ?? "api_error", message, code } };
  }
  return { error: { message, type: OPENAI_TYPES[status] ?? "api_error", param: null, code } };
}

/** A JSON error response; `headers` are added (`Retry-After`, `x-request-id`). */
export function errorResponse(format, status, code, message, headers = {}) {
  return new Response(JSON.stringify(errorBody(format, status, code, message)), {
    status,
    headers: { "content-type": "application/json", "x-flowgate-edge-decision": code, ...headers },
  });
}
