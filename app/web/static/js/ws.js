// A small graphql-transport-ws client: connection_init, subscribe/next/error/complete,
// ping/pong both ways, and reconnection with exponential backoff and jitter.
// Subscriptions survive reconnects: they are sent again after every connection_ack.

import { errorFromGraphQL } from "./graphql.js";

const PROTOCOL = "graphql-transport-ws";
const AUTH_CLOSE_CODES = new Set([4401, 4403]); // Unauthorized / Forbidden (connection_init refused)
// The service lost its event broker (or its database): events may have been missed. The
// subscription is kept and sent again after reconnecting, where onReconnect refetches (once the
// server answered a ping sent behind the subscribes, so they are registered).
const RETRY_LATER_CODE = "SERVICE_UNAVAILABLE";

/** ws(s)://<this host>/graphql */
export function defaultWsUrl(path = "/graphql") {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

/**
 * @param {object} options
 * @param {string} options.url
 * @param {() => object} options.connectionParams  payload of connection_init
 * @param {(status: string) => void} [options.onStatus]  connecting | live | reconnecting | offline | closed
 * @param {() => void} [options.onReconnect]  after a connection was lost and is back (refetch here):
 *   also after the server ended the subscriptions with SERVICE_UNAVAILABLE (a broker outage)
 * @param {(reason: string) => void} [options.onAuthError]  the server refused the credentials
 */
export function createWsClient({
  url,
  connectionParams,
  onStatus = () => {},
  onReconnect = () => {},
  onAuthError = () => {},
  ackTimeoutMs = 10000,
  pingIntervalMs = 15000,
  pongTimeoutMs = 8000,
  maxBackoffMs = 20000,
}) {
  const subscriptions = new Map(); // id → { payload, sink }
  let socket = null;
  let acknowledged = false;
  let everConnected = false;
  let stopped = true;
  let attempts = 0;
  let nextId = 1;
  let status = "closed";
  let reconnectTimer = null;
  let ackTimer = null;
  let pingTimer = null;
  let pongTimer = null;
  // One entry per ping sent on this socket, in order (the server answers them in order): a
  // callback to run on its pong, or null (a keepalive ping).
  let awaitingPong = [];

  function setStatus(next) {
    if (status !== next) {
      status = next;
      onStatus(next);
    }
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function clearTimers() {
    clearTimeout(ackTimer);
    clearInterval(pingTimer);
    clearTimeout(pongTimer);
    ackTimer = pingTimer = pongTimer = null;
    awaitingPong = [];
  }

  /** Ping now; `then` runs on its pong. The server handles a socket's messages in order, so
   * the pong also says that every subscribe sent before the ping is registered. */
  function ping(ws, then = null) {
    awaitingPong.push(then);
    send({ type: "ping" });
    clearTimeout(pongTimer);
    pongTimer = setTimeout(() => drop(ws, 4408, "Ping timeout"), pongTimeoutMs);
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    setStatus(everConnected ? "reconnecting" : "connecting");
    acknowledged = false;
    let ws;
    try {
      ws = new WebSocket(url, PROTOCOL);
    } catch {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.onopen = () => {
      send({ type: "connection_init", payload: connectionParams() });
      ackTimer = setTimeout(() => drop(ws, 4408, "Connection acknowledgement timeout"), ackTimeoutMs);
    };
    ws.onmessage = (event) => handleMessage(ws, event.data);
    ws.onerror = () => {
      // A close event always follows; reconnection is decided there.
    };
    ws.onclose = (event) => handleClose(ws, event.code, event.reason);
  }

  /** Stop using a socket at once (a dead connection may take long to report its close). */
  function drop(ws, code, reason) {
    if (ws !== socket) return;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    try {
      ws.close(code, reason);
    } catch {
      /* already closing */
    }
    handleClose(ws, code, reason);
  }

  function handleMessage(ws, raw) {
    if (ws !== socket) return;
    let message;
    try {
      message = JSON.parse(raw);
    } catch {
      drop(ws, 4400, "Invalid message");
      return;
    }
    switch (message.type) {
      case "connection_ack": {
        clearTimeout(ackTimer);
        acknowledged = true;
        attempts = 0;
        const wasReconnect = everConnected;
        everConnected = true;
        setStatus("live");
        for (const [id, sub] of subscriptions) send({ id, type: "subscribe", payload: sub.payload });
        startKeepalive(ws);
        // Refetch once the subscriptions are registered: a change between a refetch and its
        // subscription's registration would be in neither.
        if (wasReconnect) ping(ws, onReconnect);
        break;
      }
      case "ping":
        send(message.payload === undefined ? { type: "pong" } : { type: "pong", payload: message.payload });
        break;
      case "pong": {
        clearTimeout(pongTimer);
        pongTimer = null;
        const then = awaitingPong.shift();
        if (awaitingPong.length) {
          pongTimer = setTimeout(() => drop(ws, 4408, "Ping timeout"), pongTimeoutMs);
        }
        then?.();
        break;
      }
      case "next": {
        const sub = subscriptions.get(message.id);
        if (sub) sub.sink.next?.(message.payload || {});
        break;
      }
      case "error": {
        const sub = subscriptions.get(message.id);
        if (sub && Array.isArray(message.payload) && message.payload[0]?.extensions?.code === RETRY_LATER_CODE) {
          // The server closes with 1013 next; not waiting for that, reconnect with backoff.
          drop(ws, 1000, "Service unavailable: retry later");
        } else if (sub) {
          subscriptions.delete(message.id);
          sub.sink.error?.(errorFromGraphQL(message.payload));
        }
        break;
      }
      case "complete": {
        const sub = subscriptions.get(message.id);
        if (sub) {
          subscriptions.delete(message.id);
          sub.sink.complete?.();
        }
        break;
      }
      default:
        break;
    }
  }

  function startKeepalive(ws) {
    clearInterval(pingTimer);
    pingTimer = setInterval(() => {
      if (ws !== socket || pongTimer) return;
      ping(ws);
    }, pingIntervalMs);
  }

  function handleClose(ws, code, reason) {
    if (ws !== socket) return;
    socket = null;
    acknowledged = false;
    clearTimers();
    if (stopped) {
      setStatus("closed");
      return;
    }
    if (AUTH_CLOSE_CODES.has(code)) {
      stopped = true;
      setStatus("offline");
      onAuthError(reason || "The service refused the API token.");
      return;
    }
    scheduleReconnect();
  }

  function scheduleReconnect() {
    if (stopped) return;
    setStatus(everConnected ? "reconnecting" : "connecting");
    const base = Math.min(maxBackoffMs, 500 * 2 ** attempts);
    const delay = base / 2 + Math.random() * (base / 2);
    attempts += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(connect, delay);
  }

  function onOnline() {
    if (!stopped && !socket) connect();
  }

  return {
    get status() {
      return status;
    },

    start() {
      if (!stopped) return;
      stopped = false;
      attempts = 0;
      window.addEventListener("online", onOnline);
      connect();
    },

    stop() {
      stopped = true;
      clearTimeout(reconnectTimer);
      window.removeEventListener("online", onOnline);
      if (socket) drop(socket, 1000, "Normal closure");
      everConnected = false;
      setStatus("closed");
    },

    /** Run `then` once every subscription sent so far is registered on the server (at once
     * when not connected: the refetch after the next connection_ack covers it). */
    afterSubscribed(then) {
      if (acknowledged && socket) ping(socket, then);
      else then();
    },

    /**
     * subscribe({query, variables}, {next, error, complete}) → unsubscribe()
     * `next` receives the ExecutionResult ({data, errors}).
     */
    subscribe(payload, sink) {
      const id = String(nextId++);
      subscriptions.set(id, { payload, sink });
      if (acknowledged) send({ id, type: "subscribe", payload });
      return () => {
        if (!subscriptions.has(id)) return;
        subscriptions.delete(id);
        if (acknowledged) send({ id, type: "complete" });
      };
    },
  };
}
