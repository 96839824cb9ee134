// api.js: the fetch helper, error parsing, languages and formatting the pages
// share. A classic script loaded before the page's own; it defines one
// global, `api`.
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

  // locale is the language numbers, prices and times are written for:
  // undefined (the browser's) until a page sets one (setLocale).
  let locale;
  let number = new Intl.NumberFormat();
  let plural = new Intl.PluralRules();
  function setLocale(lang) {
    locale = lang;
    number = new Intl.NumberFormat(lang);
    plural = new Intl.PluralRules(lang);
  }

  // formatMoney shows integer minor units in the currency's own decimals
  // (EUR 79900 → €799.00 in English, 799,00 € in German; JPY 500 → ¥500).
  function formatMoney(minor, currency) {
    if (typeof minor !== "number" || !currency) return "";
    try {
      const f = new Intl.NumberFormat(locale, { style: "currency", currency });
      const digits = f.resolvedOptions().maximumFractionDigits;
      return f.format(minor / 10 ** digits);
    } catch {
      return minor + " " + currency + " (minor units)";
    }
  }

  function formatNumber(n) {
    return typeof n === "number" ? number.format(n) : "—";
  }

  // formatTime shows an RFC 3339 time in the reader's time zone.
  function formatTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleString(locale, { dateStyle: "medium", timeStyle: "medium" });
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

  // formatDuration: 42 sec, 3 min, 1 hr 5 min in English, in the page's
  // language otherwise (for estimates, so rounded).
  function formatDuration(seconds) {
    const s = Math.max(0, Math.round(seconds));
    const unit = (n, u) => new Intl.NumberFormat(locale, { style: "unit", unit: u, unitDisplay: "short" }).format(n);
    if (s < 60) return unit(s, "second");
    if (s < 3600) return unit(Math.round(s / 60), "minute");
    const h = Math.floor(s / 3600);
    const m = Math.round((s % 3600) / 60);
    return m ? unit(h, "hour") + " " + unit(m, "minute") : unit(h, "hour");
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
  // stateLabel names a sale's state in the page's language (in English on a
  // page that loads no catalogue, such as the console).
  function stateLabel(s) {
    if (has("state." + s)) return t("state." + s);
    return stateLabels[s] || s || "—";
  }

  // --- languages -------------------------------------------------------------
  //
  // One catalogue per language, /static/i18n/<lang>.json: key → text, or
  // key → {"one": …, "other": …} by Intl.PluralRules for text with a
  // {count}. A theme may override any key (and adds "title" and "notice")
  // with /theme/text.<lang>.json, which the page lists in a meta tag.

  const i18n = { lang: "en", texts: null, theme: {} };

  // prefs is localStorage that never throws: the language a shopper chose
  // stays chosen on their next visit.
  const prefs = {
    get(key) {
      try {
        return localStorage.getItem(key);
      } catch {
        return null;
      }
    },
    set(key, value) {
      try {
        localStorage.setItem(key, value);
      } catch {
        // the choice lasts this visit only
      }
    },
  };

  // chooseLanguage: the shopper's own choice, else the language the server
  // picked from Accept-Language, else navigator.languages, else English.
  function chooseLanguage(available) {
    const stored = prefs.get("fs_lang");
    if (available.includes(stored)) return stored;
    const html = document.documentElement;
    if (html.dataset.langNegotiated === "true" && available.includes(html.lang)) return html.lang;
    for (const l of navigator.languages || []) {
      const primary = String(l).toLowerCase().split("-")[0];
      if (available.includes(primary)) return primary;
    }
    return "en";
  }

  // loadLanguage fetches a catalogue (and the theme's texts for it) and
  // makes it the page's language; it throws when the catalogue cannot be
  // had, and the page keeps the language it had.
  async function loadLanguage(lang) {
    const meta = document.querySelector('meta[name="flashsale-theme-texts"]');
    const themed = meta ? meta.content.split(" ") : [];
    const getJSON = async (url) => {
      const res = await fetch(url);
      if (!res.ok) throw new Error(url + " answered " + res.status);
      return res.json();
    };
    // A theme without texts for this language still names the shop: its
    // English title (a brand name is rarely translated).
    const own = themed.includes(lang) ? lang : themed.includes("en") ? "en" : "";
    const [texts, theme] = await Promise.all([
      getJSON("/static/i18n/" + encodeURIComponent(lang) + ".json"),
      own ? getJSON("/theme/text." + encodeURIComponent(own) + ".json").catch(() => ({})) : {},
    ]);
    i18n.lang = lang;
    i18n.texts = texts;
    i18n.theme = theme && typeof theme === "object" ? theme : {};
    if (own !== lang) i18n.theme = typeof i18n.theme.title === "string" ? { title: i18n.theme.title } : {};
    setLocale(lang);
    document.documentElement.lang = lang;
  }

  function lookup(key) {
    const own = i18n.theme[key];
    if (typeof own === "string") return own;
    return i18n.texts ? i18n.texts[key] : undefined;
  }

  const has = (key) => lookup(key) !== undefined;

  // t is the text of key with {name}s filled from params (numbers in the
  // page's language). A missing key shows as itself: a bug the tests catch.
  function t(key, params) {
    let s = lookup(key);
    if (s && typeof s === "object") s = s[plural.select(params ? params.count : 0)] ?? s.other;
    if (typeof s !== "string") return key;
    if (!params) return s;
    return s.replace(/\{(\w+)\}/g, (m, name) => {
      if (!(name in params)) return m;
      const v = params[name];
      return typeof v === "number" ? formatNumber(v) : String(v);
    });
  }

  // translate writes the language's texts into every [data-i18n] element
  // under root. A child marked data-ph="name" is kept (with its id and
  // text) and put where {name} is in the translation, so word order can
  // differ by language.
  function translate(root) {
    for (const el of root.querySelectorAll("[data-i18n]")) {
      const text = t(el.dataset.i18n);
      const slots = {};
      for (const c of el.querySelectorAll(":scope > [data-ph]")) slots[c.dataset.ph] = c;
      if (!Object.keys(slots).length) {
        setText(el, text);
        continue;
      }
      const nodes = text.split(/\{(\w+)\}/).map((part, i) =>
        i % 2 ? slots[part] || document.createTextNode("") : document.createTextNode(part));
      el.replaceChildren(...nodes);
    }
    for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  }

  return {
    ApiError,
    request,
    setLocale,
    chooseLanguage,
    loadLanguage,
    language: () => i18n.lang,
    t,
    has,
    translate,
    prefs,
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
