// api.js: the fetch helper, error parsing and formatting the pages share.
// A classic script loaded before the page's own; it defines one global, `api`.
"use strict";

const api = (() => {
  // ApiError is every failed request: status 0 means the server was not reached.
  // code and message come from the contract's {"error":{"code","message"}} body;
  // detail is that error object (e.g. order_id for already_bought).
  class ApiError extends Error {
    constructor(status, code, message, detail, retryAfter) {
      super(message);
      this.name = "ApiError";
      this.status = status;
      this.code = code;
      this.detail = detail || {};
      this.retryAfter = retryAfter; // seconds, or null
    }
  }

  // request sends JSON and answers the parsed JSON body (null for 204), or throws
  // an ApiError. token, when given, goes in Authorization: Bearer; cookies
  // (fs_token, the queue-token cookie) always go along, same origin.
  async function request(method, path, { token, body, headers } = {}) {
    const init = {
      method,
      headers: { Accept: "application/json", ...headers },
      credentials: "same-origin",
      cache: "no-store",
    };
    if (token) init.headers.Authorization = "Bearer " + token;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError(0, "network", "Cannot reach the server. Check your connection.", null, null);
    }
    const data = await readJSON(res);
    if (!res.ok) throw toError(res, data);
    if (data === null && res.status !== 204) {
      throw new ApiError(res.status, "bad_response", "The server sent an unexpected answer.", null, null);
    }
    return data;
  }

  async function readJSON(res) {
    if (res.status === 204) return null;
    let text = "";
    try {
      text = await res.text();
    } catch {
      return null;
    }
    try {
      return text ? JSON.parse(text) : null;
    } catch {
      return null; // an HTML error page from a proxy, say
    }
  }

  function toError(res, data) {
    const e = data && typeof data.error === "object" && data.error !== null ? data.error : {};
    const code = typeof e.code === "string" ? e.code : "http_" + res.status;
    const message = typeof e.message === "string" && e.message ? e.message : statusMessage(res);
    return new ApiError(res.status, code, message, e, retryAfter(res));
  }

  function statusMessage(res) {
    if (res.status === 404) return "Not found.";
    if (res.status === 502 || res.status === 503 || res.status === 504) {
      return "The server is busy or unavailable. Please try again in a moment.";
    }
    return ("The server answered " + res.status + " " + res.statusText).trim() + ".";
  }

  // retryAfter reads Retry-After as seconds (it may also be an HTTP date).
  function retryAfter(res) {
    const v = res.headers.get("Retry-After");
    if (!v) return null;
    if (/^\d+$/.test(v.trim())) return Number(v);
    const at = Date.parse(v);
    return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }

  // formatMoney shows integer minor units in the currency's own decimals
  // (EUR 79900 → €799.00, JPY 500 → ¥500).
  function formatMoney(minor, currency) {
    if (typeof minor !== "number" || !currency) return "";
    try {
      const f = new Intl.NumberFormat(undefined, { style: "currency", currency });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(minor / 10 ** digits);
    } catch {
      return minor + " " + currency + " (minor units)";
    }
  }

  const number = new Intl.NumberFormat();
  function formatNumber(n) {
    return typeof n === "number" ? number.format(n) : "—";
  }

  // formatTime shows an RFC 3339 time in the reader's time zone.
  function formatTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  // secondsUntil is the whole seconds left until an RFC 3339 time, never negative.
  function secondsUntil(iso) {
    const at = Date.parse(iso);
    if (Number.isNaN(at)) return 0;
    return Math.max(0, Math.ceil((at - Date.now()) / 1000));
  }

  // formatCountdown: 0:42, 4:05, 1:02:03, 2 d 03:04:05.
  function formatCountdown(seconds) {
    const s = Math.max(0, Math.floor(seconds));
    const pad = (n) => String(n).padStart(2, "0");
    const d = Math.floor(s / 86400);
    const h = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const rest = pad(s % 60);
    if (d > 0) return d + " d " + pad(h) + ":" + pad(m) + ":" + rest;
    if (h > 0) return h + ":" + pad(m) + ":" + rest;
    return m + ":" + rest;
  }

  // formatDuration: 42 s, 3 min, 1 h 5 min (for estimates, so rounded).
  function formatDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return s + " s";
    if (s < 3600) return Math.round(s / 60) + " min";
    const h = Math.floor(s / 3600);
    const m = Math.round((s % 3600) / 60);
    return m ? h + " h " + m + " min" : h + " h";
  }

  // uuid makes an Idempotency-Key. crypto.randomUUID exists only in secure
  // contexts (https, localhost); getRandomValues exists everywhere.
  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  // store is sessionStorage that never throws (it can, in private modes).
  const store = {
    get(key) {
      try {
        return sessionStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        sessionStorage.setItem(key, value);
      } catch {
        // the page still works for this visit
      }
    },
    remove(key) {
      try {
        sessionStorage.removeItem(key);
      } catch {
        // nothing to do
      }
    },
  };

  const $ = (id) => document.getElementById(id);

  // setText writes only on change, so live regions announce only real changes.
  function setText(el, text) {
    const t = String(text ?? "");
    if (el.textContent !== t) el.textContent = t;
  }

  function show(el, visible) {
    el.hidden = !visible;
  }

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  const stateLabels = {
    upcoming: "Upcoming",
    open: "Open",
    paused: "Paused",
    closed: "Closed",
    sold_out: "Sold out",
  };
  function stateLabel(s) {
    return stateLabels[s] || s || "—";
  }

  return {
    ApiError,
    request,
    formatMoney,
    formatNumber,
    formatTime,
    secondsUntil,
    formatCountdown,
    formatDuration,
    uuid,
    store,
    $,
    setText,
    show,
    sleep,
    stateLabel,
  };
})();
