// GraphQL over fetch: POST /graphql, JSON, Authorization: Bearer <token>.

/** An error the page can explain: `code` is the GraphQL extensions.code, or NETWORK / HTTP. */
export class ApiError extends Error {
  constructor(message, { code = "UNKNOWN", errors = [], status = 0 } = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.errors = errors;
    this.status = status;
  }

  get unauthenticated() {
    return this.code === "UNAUTHENTICATED" || this.status === 401;
  }
}

/** Build an ApiError from a GraphQL `errors` array (HTTP response or WebSocket `error` message). */
export function errorFromGraphQL(errors, status = 0) {
  const list = Array.isArray(errors) ? errors : [];
  const first = list[0] || {};
  const code = first.extensions?.code || (status === 401 ? "UNAUTHENTICATED" : "GRAPHQL");
  const message = first.message || "The API returned an error.";
  return new ApiError(message, { code, errors: list, status });
}

export function createClient({ url = "/graphql", getToken }) {
  /**
   * Run one operation. Resolves with `data`; rejects with ApiError when the request fails
   * or the response carries errors (a partial result is treated as a failure: this page
   * always needs the whole answer).
   */
  async function request(query, variables = {}, { signal } = {}) {
    const token = getToken();
    try {
      return await send(query, variables, signal, token);
    } catch (err) {
      // Which token failed: an answer to a token the user has since replaced says nothing
      // about the new one (see handleAuth in main.js).
      if (err instanceof ApiError) err.token = token;
      throw err;
    }
  }

  async function send(query, variables, signal, token) {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    if (token) headers.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        headers,
        body: JSON.stringify({ query, variables }),
        signal,
      });
    } catch (err) {
      if (err?.name === "AbortError") throw err;
      throw new ApiError("Could not reach the Sync Status service. Check your connection and try again.", {
        code: "NETWORK",
      });
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      body = null;
    }
    if (body && Array.isArray(body.errors) && body.errors.length) {
      throw errorFromGraphQL(body.errors, response.status);
    }
    if (!response.ok || !body || typeof body.data !== "object" || body.data === null) {
      const code = response.status === 401 ? "UNAUTHENTICATED" : "HTTP";
      throw new ApiError(
        response.ok
          ? "The service returned an unreadable response."
          : `The service answered HTTP ${response.status}${response.statusText ? ` ${response.statusText}` : ""}.`,
        { code, status: response.status },
      );
    }
    return body.data;
  }

  return { request };
}
