// sale.js: the shopper's waiting page, /sales/{sale}.
//
// All that is known lives in `state`; handlers change it and call render(), the
// one function that writes the page. The WebSocket (with polling while it is
// down) feeds the same applyPosition/onFrame functions as the HTTP answers.
// Every text comes from the language's catalogue (api.t, /static/i18n/), so
// `state` keeps catalogue keys, never sentences: a language switch redraws all.
"use strict";

(() => {
  const {
    $, request, store, setText, show, sleep, uuid, t, has, translate, prefs,
    formatMoney, formatNumber, formatTime, formatCountdown, formatDuration, secondsUntil, stateLabel,
  } = api;

  const saleId = decodeURIComponent(location.pathname.split("/")[2] || "");
  const base = "/api/v1/sales/" + encodeURIComponent(saleId);
  // pass is an operator's pass from the address (#pass=…) until a join
  // uses it; shop is the ticket whose countdown to the shop has run (gone
  // or stayed), so that a reload or Back does not count down again.
  const keys = { user: "fs_user", userToken: "fs_user_token", queueToken: "fs_qt_" + saleId,
    pass: "fs_pass_" + saleId, shop: "fs_shop_" + saleId };

  const views = ["loading", "missing", "upcoming", "signin", "join", "challenge", "prequeue", "waiting", "admitted", "order",
    "expired", "sold_out", "closed", "banned"];
  const finalViews = ["sold_out", "closed"];
  const maxBackoff = 15000;
  // A socket refused with 4429 (rate limited) waits 3–6 s, then up to a
  // minute, each with jitter: a crowd that met the limit together must not
  // come back together.
  const limitedBackoff = 6000;
  const maxLimitedBackoff = 60000;
  // The live region speaks the position at most this often, unless it
  // changed a lot (speakPosition).
  const speakEvery = 30000;
  // An admitted shopper goes to the sale's return_url after this many
  // seconds, unless they press Stay here (WCAG 2.2.1: a time limit the
  // user can turn off).
  const shopDelay = 5;
  // A token longer than this in the address is not one of ours.
  const maxFragmentToken = 4096;

  const state = {
    sale: null,
    view: "loading",
    shopSignIn: false, // the dev sign-in is off: the shop signs people in (fs_token cookie)
    position: null, // the last waiting answer or frame
    positionAt: 0, // when it came (local ms), for the ETA between frames
    firstPosition: 0, // the highest position seen since joining, for the progress bar
    startsAt: null,
    ticket: null,
    ticketExpiresAt: null,
    purchase: null, // {key, quantity}: one checkout attempt, its Idempotency-Key reused on retry
    order: null,
    joinLabel: "join.button", // the Join button's catalogue key
    // error and notice are what to say: {key, params} for t(), or {text}
    // (the server's own words, for an error code the catalogue lacks).
    error: null,
    notice: null,
    busy: false,
    // challenge is the join challenge in progress: {kind: "loading"},
    // {kind: "pow", difficulty, tried, done} or {kind: "captcha", siteKey}.
    challenge: null,
    challengeRounds: 0, // challenges fetched since the shopper last pressed Join (a bound: no loop)
    challengeFailed: 0, // challenge_failed answers since then: one new challenge, then say so
    message: null, // the operator's {text, at}
    messageFrameAt: 0, // when a message frame last came (local ms): newer than a sale read near it
    busyUntil: 0, // a 429 (or a 4429) makes the page wait until then (local ms): "Busy — retrying in N s"
  };

  const say = (key, params) => ({ key, params });

  // sayError is what to tell the shopper about a failed request: the
  // catalogue's words for its code, or the server's own message.
  function sayError(err) {
    if (has("error." + err.code)) return say("error." + err.code);
    if (err.status === 0) return say("error.network");
    if (err.status >= 500) return say("error.unavailable");
    return { text: err.message };
  }

  const textOf = (m) => (!m ? "" : m.key ? t(m.key, m.params) : m.text);

  // retry is the one call the page makes again after a 429 (join, status, …).
  const retry = { timer: 0 };
  let powWorker = null;

  // live is the WebSocket and its fallbacks.
  const live = {
    ws: null,
    wanted: false, // keep a socket open (reconnect when it drops)
    attempt: 0, // reconnects since the last open
    retryTimer: 0,
    pollTimer: 0,
    rejoined: false, // one rejoin per 4401, reset by a good frame
    limited: 0, // 4429 closes in a row, reset by a good frame
    refused: false, // the server refused the socket (4403, 4404, 4409, 4410): poll, do not reconnect
    polling: false,
  };

  // shown is what the waiting view draws, moving toward the latest answer
  // over a moment rather than jumping (drawPosition, moveEta).
  const shown = { position: null, eta: null, frame: 0 };
  // spoken is what the live region last said (speakPosition).
  const spoken = { position: null, flags: "", at: 0, lang: "" };
  // shop is the countdown to the shop: the ticket it is for, when it ends
  // (local ms), its timer, and what #shop-spoken says (a catalogue key).
  const shop = { ticket: null, deadline: 0, timer: 0, stayed: false, say: "" };

  // --- tokens -------------------------------------------------------------

  const userToken = () => store.get(keys.userToken);
  const queueToken = () => store.get(keys.queueToken);
  function dropUserToken() {
    store.remove(keys.userToken);
    store.remove(keys.user);
  }
  const dropQueueToken = () => store.remove(keys.queueToken);

  const pass = () => store.get(keys.pass);
  const dropPass = () => store.remove(keys.pass);

  // readFragment takes a user token from #token=… and an operator's pass
  // from #pass=… (the console makes them; the next join sends it), and
  // clears them from the address bar (and so from history, bookmarks and
  // screenshots of the address).
  function readFragment() {
    const f = new URLSearchParams(location.hash.slice(1));
    const token = f.get("token");
    const p = f.get("pass");
    if (!token && !p) return;
    if (token && token.length <= maxFragmentToken) {
      const user = jwtSubject(token);
      if (user !== store.get(keys.user)) dropQueueToken(); // a wait belongs to its user
      store.set(keys.userToken, token);
      if (user) store.set(keys.user, user);
      else store.remove(keys.user);
    }
    if (p && p.length <= maxFragmentToken) store.set(keys.pass, p);
    history.replaceState(null, "", location.pathname + location.search);
  }

  // jwtSubject reads `sub` for display only; the server checks the token.
  function jwtSubject(token) {
    if (!token) return "";
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const sub = JSON.parse(atob(part)).sub;
      return typeof sub === "string" ? sub : "";
    } catch {
      return "";
    }
  }

  // --- the language ----------------------------------------------------------

  const languages = () => Array.from($("lang").options, (o) => o.value);

  // useLanguage loads lang and redraws the page in it; a catalogue that
  // cannot be had keeps the language the page has (and says so).
  async function useLanguage(lang) {
    try {
      await api.loadLanguage(lang);
    } catch {
      $("lang").value = api.language();
      state.error = say("error.language");
      render();
      return false;
    }
    translate(document);
    $("lang").value = lang;
    spoken.lang = ""; // say the position again, in the new language
    render();
    return true;
  }

  async function languageChosen() {
    const lang = $("lang").value;
    prefs.set("fs_lang", lang);
    if (state.error && state.error.key === "error.language") state.error = null;
    await useLanguage(lang);
  }

  // --- the sale -----------------------------------------------------------

  async function loadSale() {
    try {
      state.sale = await request("GET", base);
      saleMessage();
      return true;
    } catch (err) {
      if (err.status === 404) {
        state.view = "missing";
      } else {
        state.error = say("error.loadSale", { reason: textOf(sayError(err)) });
      }
      return false;
    }
  }

  async function refreshSale() {
    if (document.hidden || !state.sale || isFinal()) return;
    try {
      state.sale = await request("GET", base);
      saleMessage();
      render();
    } catch {
      // the next refresh will do; the queue state comes from elsewhere
    }
  }

  const isFinal = () => finalViews.includes(state.view) || state.view === "banned";

  // saleMessage shows the sale's `message` field, unless a message frame came
  // in the last few seconds: the public sale is cached for up to a second per
  // node, so a read near a frame may be older than it.
  function saleMessage() {
    if (Date.now() - state.messageFrameAt < 3000) return;
    const m = state.sale && state.sale.message;
    state.message = m && m.text ? { text: m.text, at: m.at } : null;
  }

  // queueOpensIn is the seconds until the sale's queue opens, 0 once open.
  function queueOpensIn() {
    const at = state.sale && state.sale.queue_opens_at;
    return at ? secondsUntil(at) : 0;
  }

  // --- queue state ----------------------------------------------------------

  // applyPosition shows a position answer (join, status) or the same as a frame.
  function applyPosition(p) {
    if (!p || typeof p !== "object") return;
    switch (p.state) {
      case "waiting":
        state.view = "waiting";
        state.position = p;
        state.positionAt = Date.now();
        state.startsAt = p.starts_at || null;
        if (typeof p.position === "number") state.firstPosition = Math.max(state.firstPosition, p.position);
        if (state.sale && p.paused) state.sale.state = "paused";
        else if (state.sale && state.sale.state === "paused" && p.paused === false) state.sale.state = "open";
        ensureLive();
        break;
      case "prequeue":
        state.view = "prequeue";
        state.startsAt = p.starts_at || (state.sale && state.sale.starts_at) || null;
        ensureLive();
        break;
      case "admitted":
        if (state.view !== "admitted" || state.ticket !== p.ticket) state.purchase = null;
        state.view = "admitted";
        state.ticket = p.ticket;
        state.ticketExpiresAt = p.ticket_expires_at;
        ensureLive();
        break;
      case "purchased":
        ensureLive(); // order frames tell of payment and hold expiry
        if (!state.order || state.order.id !== p.order_id) loadOrder(p.order_id);
        break;
      case "expired":
        state.view = "expired";
        state.ticket = null;
        state.joinLabel = "join.again";
        stopLive();
        break;
    }
    render();
  }

  // onFrame handles one WebSocket frame.
  function onFrame(f) {
    switch (f.type) {
      case "position":
        applyPosition({ ...f, state: "waiting" });
        break;
      case "admitted":
      case "prequeue":
      case "expired":
        applyPosition({ ...f, state: f.type });
        break;
      case "paused":
      case "open":
        if (state.sale) state.sale.state = f.type;
        if (state.position) {
          state.position.paused = f.type === "paused";
          if (f.type === "paused") state.position.eta_seconds = null;
        }
        render();
        break;
      case "sold_out":
        finish("sold_out");
        break;
      case "closed":
        finish("closed");
        break;
      case "order":
        if (f.order) showOrder(f.order);
        break;
      case "message": // the operator's; "" clears it
        state.message = f.text ? { text: String(f.text), at: f.at } : null;
        state.messageFrameAt = Date.now();
        render();
        break;
    }
  }

  // finish ends the wait for good: the sale sold out or closed. An order stays
  // on screen (a held one can still be paid).
  function finish(kind) {
    if (state.sale) state.sale.state = kind;
    dropQueueToken();
    stopLive();
    cancelRetry();
    state.busyUntil = 0;
    if (state.view === "order") {
      state.notice = say(kind === "sold_out" ? "notice.soldOut" : "notice.closed");
    } else {
      state.view = kind;
      state.ticket = null;
      state.error = null;
      state.notice = null;
    }
    render();
  }

  // toJoin offers Join, or, before the queue opens, counts down to it.
  function toJoin(label) {
    stopLive();
    if (state.sale && finalViews.includes(state.sale.state)) {
      finish(state.sale.state);
      return;
    }
    state.view = queueOpensIn() > 0 ? "upcoming" : "join";
    if (label) state.joinLabel = label;
    render();
  }

  function toSignIn(message) {
    stopLive();
    if (state.sale && finalViews.includes(state.sale.state)) {
      finish(state.sale.state);
      return;
    }
    state.view = "signin";
    state.error = message ? say(message) : null;
    render();
  }

  // getStatus asks for our state with the queue token, else the user token, else
  // only the cookies. A queue token refused is dropped and the user token tried.
  async function getStatus() {
    const qt = queueToken();
    try {
      return await request("GET", base + "/status", { token: qt || userToken() });
    } catch (err) {
      if (err.status !== 401 || !qt) throw err;
      dropQueueToken();
      return await request("GET", base + "/status", { token: userToken() });
    }
  }

  // statusFailed maps a refused status to a view; other failures keep the view.
  // again is the call to make once a 429's Retry-After has passed.
  function statusFailed(err, again) {
    if (err.code === "banned") {
      toBanned();
    } else if (err.code === "rate_limited") {
      retryLater(err, again || checkStatus);
    } else if (err.status === 401) {
      const had = Boolean(userToken());
      dropUserToken();
      toSignIn(had ? "signin.expired" : "");
    } else if (err.status === 404) {
      toJoin();
    } else if (err.status === 410) {
      finish(err.code === "sold_out" ? "sold_out" : "closed");
    } else {
      state.error = sayError(err);
      render();
    }
  }

  async function checkStatus() {
    try {
      applyPosition(await getStatus());
      state.error = null;
      render();
    } catch (err) {
      statusFailed(err);
    }
  }

  // --- joining and leaving ----------------------------------------------------

  // joinPressed is a shopper's own Join: it may fetch a challenge again.
  function joinPressed() {
    state.challengeRounds = 0;
    state.challengeFailed = 0;
    join();
  }

  // join joins the queue; proof, when given, is the answer to the sale's
  // join challenge ({pow: {challenge, nonce}} or {captcha: token}).
  // A pass from the address goes along when there is no other proof (a
  // pass needs none).
  async function join(proof) {
    cancelRetry();
    state.error = null;
    setBusy(true);
    const body = proof || (pass() ? { pass: pass() } : undefined);
    try {
      const res = await request("POST", base + "/join", { token: userToken(), body });
      if (body && body.pass) dropPass(); // used: it works once
      if (res.queue_token) store.set(keys.queueToken, res.queue_token);
      live.refused = false;
      state.firstPosition = 0;
      state.order = null;
      state.challenge = null;
      state.challengeRounds = 0;
      state.challengeFailed = 0;
      applyPosition(res);
    } catch (err) {
      joinFailed(err, proof, Boolean(body && body.pass));
    } finally {
      setBusy(false);
    }
  }

  function joinFailed(err, proof, withPass) {
    if (err.code === "rate_limited") {
      retryLater(err, () => join(proof)); // a proof refused for the rate is not spent
      return;
    }
    if (withPass && (err.code === "forbidden" || err.code === "challenge_failed")) {
      // Another user's or sale's pass, or one expired or used: it will not
      // work on another try, so it goes, and Join joins the line.
      dropPass();
      stopChallenge();
      state.view = "join";
      state.error = say(err.code === "forbidden" ? "pass.forbidden" : "pass.failed");
      render();
      return;
    }
    if (err.code === "challenge_required") {
      startChallenge();
      return;
    }
    if (err.code === "challenge_failed") {
      // Expired (a tab left open), or the captcha's token refused: one new
      // challenge, then say so.
      if (++state.challengeFailed <= 1) {
        if (proof && proof.captcha) state.error = say("challenge.again");
        startChallenge();
        return;
      }
      stopChallenge();
      state.challengeFailed = 0;
      state.view = "join";
      state.error = say("challenge.failed");
      render();
      return;
    }
    stopChallenge();
    if (err.code === "banned") {
      toBanned();
      return;
    }
    if (err.code === "ip_limit") {
      state.view = "join";
      state.error = say("error.ip_limit");
      render();
      return;
    }
    if (err.status === 401) {
      dropUserToken();
      toSignIn(state.shopSignIn ? "" : "signin.toJoin");
    } else if (err.status === 410) {
      finish(err.code === "sold_out" ? "sold_out" : "closed");
    } else if (err.code === "queue_not_open") {
      if (queueOpensIn() > 0) {
        state.view = "upcoming"; // its countdown says when
      } else {
        state.view = "join";
        state.error = say("error.queue_not_open");
        setTimeout(refreshSale, 1100); // our copy of the sale is out of date
      }
    } else {
      if (state.view === "loading" || state.view === "challenge") state.view = "join";
      state.error = sayError(err);
    }
    render();
  }

  // --- the join challenge -------------------------------------------------------

  // startChallenge fetches the sale's join challenge and answers it: proof of
  // work in a Web Worker, or a captcha. A few rounds at most per Join press.
  async function startChallenge() {
    stopChallenge();
    if (++state.challengeRounds > 3) {
      state.view = "join";
      state.error = say("challenge.changing");
      render();
      return;
    }
    state.view = "challenge";
    state.challenge = { kind: "loading" };
    render();
    let c;
    try {
      c = await request("POST", base + "/challenge", { token: userToken() });
    } catch (err) {
      state.challenge = null;
      if (err.code === "rate_limited") {
        state.challengeRounds--;
        retryLater(err, startChallenge);
        return;
      }
      joinFailed(err);
      return;
    }
    if (state.view !== "challenge") return; // cancelled meanwhile
    if (c && c.kind === "pow") solvePow(c);
    else if (c && c.kind === "captcha") showCaptcha(c);
    else join(); // the operator turned the challenge off meanwhile
  }

  // solvePow runs /static/pow-worker.js on the challenge; its progress
  // messages (about every 50 ms) move the progress bar.
  function solvePow(c) {
    let w;
    try {
      w = new Worker("/static/pow-worker.js");
    } catch {
      powBroke();
      return;
    }
    powWorker = w;
    state.challenge = { kind: "pow", difficulty: c.difficulty, tried: 0, done: false };
    w.onmessage = (e) => {
      if (powWorker !== w) return; // cancelled
      const m = e.data || {};
      if (m.type === "progress") {
        state.challenge.tried = m.tried;
        render();
        return;
      }
      w.terminate();
      powWorker = null;
      if (m.type !== "done") {
        powBroke();
        return;
      }
      state.challenge.done = true;
      join({ pow: { challenge: c.challenge, nonce: m.nonce } });
    };
    w.onerror = () => {
      if (powWorker === w) powBroke();
    };
    w.postMessage({ challenge: c.challenge, difficulty: c.difficulty });
    render();
  }

  function powBroke() {
    stopChallenge();
    state.view = "join";
    state.error = say("challenge.broke");
    render();
  }

  // showCaptcha asks for a captcha. No vendor script is loaded here (there
  // is no network in development, and the CSP allows scripts from 'self'
  // only), so the widget's place shows a labelled placeholder and the
  // token is typed into "Captcha token". To plug Cloudflare Turnstile in:
  //   1. in web.go's CSP, add https://challenges.cloudflare.com to
  //      script-src and add frame-src https://challenges.cloudflare.com;
  //   2. in sale.html, load
  //      https://challenges.cloudflare.com/turnstile/v0/api.js?render=explicit;
  //   3. here, render it and hide the token form:
  //        turnstile.render($("captcha-widget"), { sitekey: c.site_key, callback: submitCaptcha });
  //      Turnstile calls submitCaptcha with the token, which joins with
  //      {"captcha": token}; the server checks it with siteverify.
  // hCaptcha (hcaptcha.render) and reCAPTCHA (grecaptcha.render) take the
  // same sitekey and callback.
  function showCaptcha(c) {
    state.challenge = { kind: "captcha", siteKey: String(c.site_key || "") };
    $("captcha-widget").dataset.sitekey = state.challenge.siteKey;
    $("captcha-token").value = "";
    render();
    $("captcha-token").focus();
  }

  function submitCaptcha(token) {
    if (state.busy) return;
    join({ captcha: token });
  }

  function captchaSubmitted(ev) {
    ev.preventDefault();
    const token = $("captcha-token").value.trim();
    if (!token) {
      state.error = say("challenge.enterToken");
      render();
      return;
    }
    submitCaptcha(token);
  }

  // stopChallenge ends a challenge in progress (the worker stops hashing).
  function stopChallenge() {
    if (powWorker) powWorker.terminate();
    powWorker = null;
    state.challenge = null;
  }

  function cancelChallenge() {
    stopChallenge();
    cancelRetry();
    state.error = null;
    toJoin();
  }

  // --- bans and rate limits -------------------------------------------------------

  // toBanned is final: no retries, no reconnects, no polling.
  function toBanned() {
    cancelRetry();
    stopChallenge();
    stopLive();
    live.refused = true;
    dropQueueToken();
    state.view = "banned";
    state.ticket = null;
    state.error = null;
    state.notice = null;
    state.busyUntil = 0;
    render();
  }

  // retryLater makes fn the page's next try, after the 429's Retry-After
  // (whole seconds), and says so. One try waits at a time: a new one
  // replaces it, so 429s never pile up into a storm.
  function retryLater(err, fn) {
    const seconds = Math.min(300, Math.max(1, err.retryAfter || 5));
    cancelRetry();
    state.busyUntil = Date.now() + seconds * 1000;
    retry.timer = setTimeout(() => {
      retry.timer = 0;
      fn();
    }, seconds * 1000);
    render();
  }

  function cancelRetry() {
    clearTimeout(retry.timer);
    retry.timer = 0;
  }

  async function leave() {
    state.error = null;
    setBusy(true);
    try {
      await request("DELETE", base + "/join", { token: queueToken() || userToken() });
    } catch (err) {
      if (err.code === "banned") {
        setBusy(false);
        toBanned();
        return;
      }
      if (err.status !== 404) {
        state.error = sayError(err);
        setBusy(false);
        return;
      }
    }
    dropQueueToken();
    state.position = null;
    setBusy(false);
    toJoin("join.button");
  }

  // signIn gets a demo user token, then joins. When the server has no dev sign-in
  // (404), the shop signs people in: try joining with its fs_token cookie.
  async function signIn(ev) {
    ev.preventDefault();
    const user = $("signin-user").value.trim();
    if (!user) {
      state.error = say("signin.enterName");
      render();
      return;
    }
    await signInAs(user);
  }

  async function signInAs(user) {
    state.error = null;
    state.challengeRounds = 0;
    state.challengeFailed = 0;
    setBusy(true);
    try {
      const res = await request("POST", "/api/v1/dev/token", { body: { user } });
      store.set(keys.userToken, res.token);
      store.set(keys.user, res.user || user);
      dropQueueToken(); // any stored wait was someone else's
    } catch (err) {
      if (err.code === "rate_limited") {
        setBusy(false);
        retryLater(err, () => signInAs(user));
        return;
      }
      if (err.status !== 404) {
        state.error = sayError(err);
        setBusy(false);
        return;
      }
      state.shopSignIn = true;
    }
    setBusy(false);
    await enterQueue();
  }

  // enterQueue resumes the user's own state when they have one, else joins.
  async function enterQueue() {
    try {
      const p = await getStatus();
      if (!joinWithPass(p)) applyPosition(p);
    } catch (err) {
      if (err.status === 404 || err.status === 401) {
        await join();
      } else {
        statusFailed(err, enterQueue);
      }
    }
  }

  function switchUser() {
    stopChallenge();
    cancelRetry();
    live.refused = false; // a ban or a refused socket was the other user's
    state.busyUntil = 0;
    dropUserToken();
    dropQueueToken();
    state.shopSignIn = false;
    state.order = null;
    state.position = null;
    $("signin-user").value = randomName();
    toSignIn("");
  }

  const randomName = () => "shopper-" + (1000 + Math.floor(Math.random() * 9000));

  // --- checkout ---------------------------------------------------------------

  async function buy(ev) {
    ev.preventDefault();
    if (state.busy || !state.ticket) return;
    const quantity = Number($("quantity").value) || 1;
    if (!state.purchase || state.purchase.quantity !== quantity) {
      state.purchase = { key: uuid(), quantity };
    }
    const { key } = state.purchase;
    state.error = null;
    setBusy(true);
    for (let again = 0; ; again++) {
      try {
        const order = await request("POST", base + "/checkout", {
          token: state.ticket,
          headers: { "Idempotency-Key": key },
          body: { quantity },
        });
        state.purchase = null;
        state.notice = null;
        showOrder(order);
        // The units left just changed; the public sale is cached for up to
        // 1 s per node, so ask once that has passed, not now.
        setTimeout(refreshSale, 1100);
        break;
      } catch (err) {
        if ((err.status === 503 || err.status === 429) && again < 3) {
          const wait = Math.min(30, Math.max(1, err.retryAfter ?? 1));
          state.busyUntil = Date.now() + wait * 1000;
          render();
          await sleep(wait * 1000);
          continue;
        }
        state.busyUntil = 0;
        checkoutFailed(err);
        break;
      }
    }
    setBusy(false);
  }

  function checkoutFailed(err) {
    // A 5xx or no answer may hide an order: keep the key so that Buy again
    // replays it. Any other answer is final for this key.
    if (err.status !== 0 && err.status < 500 && err.code !== "idempotency_in_progress") state.purchase = null;
    switch (err.code) {
      case "ticket_expired":
        applyPosition({ state: "expired" });
        return;
      case "ticket_used":
        checkStatus(); // our own state says whether that ticket bought
        return;
      case "already_bought":
        if (err.detail.order_id) {
          loadOrder(err.detail.order_id);
          return;
        }
        break;
      case "sale_closed":
        finish("closed");
        return;
      case "banned":
        toBanned();
        return;
      case "network":
        state.error = say("error.buyNetwork");
        render();
        return;
    }
    state.error = sayError(err);
    render();
  }

  // --- orders -----------------------------------------------------------------

  function showOrder(order) {
    state.order = order;
    state.view = "order";
    state.ticket = null;
    if (["paid", "cancelled", "expired"].includes(order.status)) stopLive(); // nothing more will change
    render();
  }

  async function loadOrder(id) {
    try {
      showOrder(await request("GET", "/api/v1/orders/" + encodeURIComponent(id), { token: userToken() }));
    } catch (err) {
      if (err.status === 401) {
        dropUserToken();
        toSignIn("signin.forOrder");
        return;
      }
      if (err.code === "banned") {
        toBanned();
        return;
      }
      if (err.code === "rate_limited") {
        retryLater(err, () => loadOrder(id));
        return;
      }
      state.order = { id };
      state.view = "order";
      state.error = say("error.loadOrder", { reason: textOf(sayError(err)) });
      render();
    }
  }

  async function orderAction(path, notFoundMessage) {
    const id = state.order && state.order.id;
    if (!id) return;
    state.error = null;
    setBusy(true);
    try {
      showOrder(await request("POST", "/api/v1/" + path.replace("{order}", encodeURIComponent(id)), { token: userToken() }));
    } catch (err) {
      if (err.code === "banned") {
        setBusy(false);
        toBanned();
        return;
      }
      state.error = err.status === 404 && notFoundMessage ? say(notFoundMessage) : sayError(err);
      if (err.code === "order_not_held") loadOrder(id);
    }
    setBusy(false);
  }

  const pay = () => orderAction("dev/orders/{order}/pay", "error.devPay");
  const cancel = () => orderAction("orders/{order}/cancel", null);

  // --- the live connection ------------------------------------------------------

  // ensureLive keeps updates coming: a WebSocket, or polling when the server
  // refused ours (reconnecting then would only be refused again).
  function ensureLive() {
    live.wanted = true;
    if (live.refused) {
      if (["waiting", "prequeue", "admitted"].includes(state.view)) startPolling();
      return;
    }
    if (!live.ws && !live.retryTimer) connect();
  }

  function stopLive() {
    live.wanted = false;
    clearTimeout(live.retryTimer);
    live.retryTimer = 0;
    stopPolling();
    if (live.ws) {
      const ws = live.ws;
      live.ws = null;
      ws.close(1000);
    }
  }

  function connect() {
    live.retryTimer = 0;
    const qt = queueToken();
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + base + "/ws" +
      (qt ? "?qt=" + encodeURIComponent(qt) : "");
    let ws;
    try {
      ws = new WebSocket(url);
    } catch {
      reconnectLater();
      return;
    }
    live.ws = ws;
    ws.onopen = () => {
      if (live.ws !== ws) return;
      live.attempt = 0;
      stopPolling();
      state.notice = null;
      render();
    };
    ws.onmessage = (ev) => {
      if (live.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(ev.data);
      } catch {
        return;
      }
      live.rejoined = false;
      live.limited = 0; // a refused socket opens, then closes without a frame
      onFrame(frame);
    };
    ws.onclose = (ev) => {
      if (live.ws !== ws) return; // we closed it ourselves
      live.ws = null;
      onClose(ev.code, ev.reason);
    };
  }

  function onClose(code, reason) {
    switch (code) {
      case 4401: // queue token bad or missing
        rejoinOnce();
        return;
      case 4429: // rate limited: come back later, not at once, and do not poll meanwhile
        reconnectLimited();
        return;
      case 4403:
        if (reason === "banned") { // the user or their address is banned: final
          toBanned();
          return;
        }
        // Origin not allowed: a setup problem, so poll instead
        live.refused = true;
        state.notice = say("notice.noLive");
        render();
        startPolling();
        return;
      case 4409: // replaced: this user opened more tabs than a node keeps
        // sockets for; this one polls instead (reconnecting would close
        // another tab's socket, and so on for ever)
        live.refused = true;
        state.notice = say("notice.tabs");
        render();
        startPolling();
        return;
      case 4404: // not in the queue; our status says what we are instead
      case 4410: // sale over (final); our own state (an order) still wins
        live.refused = true;
        stopPolling();
        checkStatus();
        return;
      default:
        if (!live.wanted) return;
        state.notice = say("notice.reconnecting");
        render();
        reconnectLater();
        startPolling();
    }
  }

  async function rejoinOnce() {
    live.wanted = false;
    stopPolling();
    if (live.rejoined) {
      dropQueueToken();
      toSignIn("signin.again");
      return;
    }
    live.rejoined = true;
    dropQueueToken();
    await join(); // keeps the place: join is idempotent per user
  }

  // reconnectLater waits 1, 2, 4, … up to 15 s, each with jitter, so that a
  // restarted node is not hit by all its shoppers in the same second.
  function reconnectLater() {
    if (!live.wanted || live.retryTimer) return;
    const ceiling = Math.min(maxBackoff, 1000 * 2 ** live.attempt);
    live.attempt++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    live.retryTimer = setTimeout(connect, delay);
  }

  // reconnectLimited reconnects a socket refused with 4429 after 3–6 s, then
  // 6–12 s, … up to a minute: the close carries no Retry-After.
  function reconnectLimited() {
    if (!live.wanted) return;
    clearTimeout(live.retryTimer);
    const ceiling = Math.min(maxLimitedBackoff, limitedBackoff * 2 ** live.limited);
    live.limited++;
    const delay = ceiling / 2 + Math.random() * (ceiling / 2);
    state.busyUntil = Date.now() + delay;
    live.retryTimer = setTimeout(connect, delay);
    render();
  }

  function startPolling(seconds) {
    if (live.pollTimer) return;
    live.polling = true;
    const every = seconds || Math.max(1, (state.position && state.position.poll_after_seconds) || 2);
    live.pollTimer = setTimeout(poll, every * 1000);
  }

  function stopPolling() {
    clearTimeout(live.pollTimer);
    live.pollTimer = 0;
    live.polling = false;
  }

  async function poll() {
    live.pollTimer = 0;
    if (!live.polling) return;
    try {
      applyPosition(await getStatus());
    } catch (err) {
      if (err.code === "rate_limited") {
        // the next poll waits out Retry-After, however short poll_after_seconds is
        const seconds = Math.min(300, Math.max(1, err.retryAfter || 5));
        state.busyUntil = Date.now() + seconds * 1000;
        render();
        if (live.polling) startPolling(seconds);
        return;
      }
      if (err.status === 0 || err.status >= 500) {
        state.notice = say("notice.retrying");
        render();
      } else {
        statusFailed(err);
      }
    }
    if (live.polling) startPolling(); // no-op when applyPosition already scheduled one
  }

  // --- rendering -------------------------------------------------------------------

  // ready is set once a catalogue has loaded: until then the page keeps the
  // English of its HTML rather than show catalogue keys.
  let ready = false;

  function setBusy(busy) {
    state.busy = busy;
    render();
  }

  function render() {
    if (!ready) return;
    renderSale();
    renderUser();
    for (const v of views) show($("view-" + v), state.view === v);
    setText($("error"), textOf(state.error));
    show($("error"), Boolean(state.error));
    setText($("notice"), textOf(state.notice));
    show($("notice"), Boolean(state.notice));
    const wait = Math.ceil((state.busyUntil - Date.now()) / 1000);
    show($("retry-notice"), wait > 0);
    if (wait > 0) setText($("retry-seconds"), formatNumber(wait));
    renderMessage();

    if (state.view !== "waiting") {
      spoken.position = null; // a new wait is spoken at once
      shown.position = null; // and drawn without rolling from the last one
    }
    if (state.view === "upcoming") renderUpcoming();
    if (state.view === "join") renderJoin();
    if (state.view === "signin") renderSignIn();
    if (state.view === "challenge") renderChallenge();
    if (state.view === "prequeue") renderPrequeue();
    if (state.view === "waiting") renderWaiting();
    if (state.view === "admitted") renderAdmitted();
    else stopShopCountdown();
    if (state.view === "order") renderOrder();
    renderActions();
    show($("pass-note"), Boolean(pass()) && ["join", "signin", "expired"].includes(state.view));
    setText($("shop-spoken"), state.view === "admitted" && shop.say ? t(shop.say, { seconds: shopDelay }) : "");
  }

  function renderSale() {
    const s = state.sale;
    // A theme's "title" names the shop in the header and the tab.
    setText($("brand-title"), has("title") ? t("title") : "flashsale");
    const notice = has("notice") ? t("notice") : "";
    setText($("theme-notice"), notice);
    show($("theme-notice"), Boolean(notice));
    const suffix = has("title") ? t("title") : t("page.title");
    if (!s) {
      setText($("sale-name"), state.view === "missing" ? t("missing.heading") : t("page.title"));
      document.title = suffix;
      for (const id of ["price", "stock", "state"]) show($(id), false);
      return;
    }
    document.title = s.name + " · " + suffix;
    setText($("sale-name"), s.name);
    setText($("price"), formatMoney(s.price_cents, s.currency));
    setText($("stock"), t("sale.left", { left: s.stock_remaining, total: s.stock_total }));
    setText($("state"), stateLabel(s.state));
    $("state").className = "badge " + (s.state || "");
    for (const id of ["price", "stock", "state"]) show($(id), true);
  }

  function renderUser() {
    const user = store.get(keys.user);
    show($("whoami"), Boolean(user && userToken()));
    setText($("user-name"), user || "");
  }

  function renderSignIn() {
    show($("signin-form"), !state.shopSignIn);
    show($("signin-shop"), state.shopSignIn);
    $("signin").disabled = state.busy || Boolean(retry.timer);
  }

  function renderMessage() {
    const m = state.message;
    show($("message"), Boolean(m));
    setText($("message-text"), m ? m.text : "");
    setText($("message-at"), m ? formatTime(m.at) : "");
    $("message-at").dateTime = (m && m.at) || "";
  }

  function setTime(id, iso) {
    setText($(id), formatTime(iso));
    $(id).dateTime = iso || "";
  }

  function renderUpcoming() {
    const at = state.sale && state.sale.queue_opens_at;
    setText($("opens-countdown"), formatCountdown(secondsUntil(at)));
    setTime("opens-at", at);
  }

  function renderJoin() {
    const at = state.sale && state.sale.starts_at;
    const future = at && secondsUntil(at) > 0;
    show($("join-starts"), Boolean(future));
    if (future) setText($("join-countdown"), formatCountdown(secondsUntil(at)));
  }

  function renderChallenge() {
    const c = state.challenge || { kind: "loading" };
    const captcha = c.kind === "captcha";
    setText($("challenge-title"), t(captcha ? "challenge.titleCaptcha" : "challenge.titlePow"));
    show($("pow-box"), !captcha);
    show($("captcha-box"), captcha);
    $("captcha-token").disabled = state.busy;
    $("captcha-submit").disabled = state.busy;
    $("challenge-cancel").disabled = state.busy;
    if (captcha) return;
    // The tries a solve needs are random (geometric, 2^difficulty on
    // average), so the bar is an estimate: the chance of having found one.
    const bar = $("pow-progress");
    if (c.kind !== "pow" || (!c.tried && !c.done)) {
      bar.removeAttribute("value"); // indeterminate until the first progress message
      setText($("pow-status"), t("challenge.starting"));
      return;
    }
    const pct = c.done ? 100 : Math.min(99, 100 * (1 - Math.exp(-c.tried / 2 ** c.difficulty)));
    bar.value = pct;
    setText($("pow-status"), c.done ? t("challenge.done") : t("challenge.progress", { percent: Math.floor(pct), tried: c.tried }));
  }

  function renderPrequeue() {
    setTime("starts-at", state.startsAt);
    setText($("prequeue-countdown"), formatCountdown(secondsUntil(state.startsAt)));
  }

  function renderWaiting() {
    const p = state.position || {};
    show($("paused-banner"), Boolean(p.paused));
    show($("reserved-banner"), Boolean(p.all_reserved) && !p.paused);

    const future = state.startsAt && secondsUntil(state.startsAt) > 0;
    show($("waiting-starts"), Boolean(future));
    if (future) setTime("waiting-starts-at", state.startsAt);

    setText($("queue-length"), formatNumber(p.queue_length));
    if (shown.eta === null) moveEta();
    setText($("eta"), etaText(p));
    speakPosition(p);
    drawPosition();
  }

  // drawPosition draws the position, the people ahead and the progress bar
  // from shown.position, and moves that toward the latest position a
  // fraction each frame: a drop of 40 places rolls down over about a
  // second instead of jumping. A hidden tab jumps (it draws no frames), and
  // so does a reader who asked for less motion.
  const lessMotion = matchMedia("(prefers-reduced-motion: reduce)");
  function drawPosition() {
    const p = state.position || {};
    const target = typeof p.position === "number" ? p.position : null;
    if (target === null || shown.position === null || document.hidden || lessMotion.matches) {
      shown.position = target;
    } else {
      const d = target - shown.position;
      shown.position = Math.abs(d) < 0.5 ? target : shown.position + d * 0.15;
    }
    const now = shown.position === null ? null : Math.max(1, Math.round(shown.position));
    setText($("position"), formatNumber(now));
    setText($("ahead"), formatNumber(now === null ? null : now - 1));
    const first = Math.max(state.firstPosition, target || 0, 1);
    const moved = now === null ? 0 : Math.max(0, first - shown.position);
    $("progress").max = first;
    $("progress").value = moved;
    setText($("progress-hint"), progressHint(target, Math.round(first - (target || first))));
    if (shown.position !== target && !shown.frame) {
      shown.frame = requestAnimationFrame(() => {
        shown.frame = 0;
        if (state.view === "waiting") drawPosition();
      });
    }
  }

  // moveEta moves the shown ETA toward the latest estimate counted down
  // since it came, by a third each second: estimates that wobble between
  // answers do not make the page wobble.
  function moveEta() {
    const p = state.position || {};
    if (p.paused || typeof p.eta_seconds !== "number") {
      shown.eta = null;
      return;
    }
    const target = Math.max(0, p.eta_seconds - (Date.now() - state.positionAt) / 1000);
    shown.eta = shown.eta === null ? target : shown.eta + (target - shown.eta) / 3;
  }

  function etaText(p) {
    if (p.paused) return t("eta.paused");
    if (shown.eta === null) return t("eta.estimating");
    if (shown.eta < 5) return t("eta.soon");
    return t("eta.about", { eta: formatDuration(shown.eta) });
  }

  // speakPosition updates the live region's sentence: at once on a big
  // change (the first position, 10% fewer places, the last ten places,
  // paused or all reserved, a new language), else at most every 30 s.
  function speakPosition(p) {
    const pos = p.position;
    if (typeof pos !== "number") return;
    const flags = (p.paused ? "paused " : "") + (p.all_reserved ? "reserved" : "");
    const last = spoken.position;
    const big = last === null || spoken.lang !== api.language() || flags !== spoken.flags ||
      (pos !== last && (pos <= 10 || Math.abs(last - pos) >= last * 0.1));
    const due = pos !== last && Date.now() - spoken.at >= speakEvery;
    if (!big && !due) return;
    Object.assign(spoken, { position: pos, flags, at: Date.now(), lang: api.language() });
    let text = t("waiting.spoken", { position: pos });
    if (p.paused) text += " " + t("waiting.paused");
    else if (p.all_reserved) text += " " + t("waiting.reserved");
    else if (typeof p.eta_seconds === "number") text += " " + t("waiting.spokenEta", { eta: formatDuration(p.eta_seconds) });
    setText($("position-spoken"), text);
  }

  function progressHint(position, moved) {
    if (position === 1) return t("waiting.next");
    if (moved > 0) return t("waiting.moved", { count: moved });
    return t("waiting.keepOpen");
  }

  function renderAdmitted() {
    setText($("ticket-countdown"), formatCountdown(secondsUntil(state.ticketExpiresAt)));
    const limit = Math.max(1, (state.sale && state.sale.per_user_limit) || 1);
    const select = $("quantity");
    if (select.options.length !== limit) {
      const keep = Number(select.value) || 1;
      select.replaceChildren(...Array.from({ length: limit }, (_, i) => new Option(String(i + 1), String(i + 1))));
      select.value = String(Math.min(keep, limit));
    }
    const s = state.sale;
    setText($("total"), s ? t("admitted.total", { amount: formatMoney(s.price_cents * (Number(select.value) || 1), s.currency) }) : "");
    select.disabled = state.busy;
    $("buy").disabled = state.busy;
    renderShop();
  }

  // --- back to the shop ---------------------------------------------------------

  // shopURL is where "Continue to the shop" goes: the sale's return_url with
  // fs_ticket=<the ticket> set in its query (its other parameters and its
  // fragment kept), or "" when there is none, or when it is not a URL the
  // page may go to. The server takes only https, or http on a loopback
  // host; the page checks again, so that whatever an answer carries
  // (javascript:, data:, a relative path), it never goes anywhere else.
  function shopURL() {
    const raw = state.sale && state.sale.return_url;
    if (typeof raw !== "string" || !raw || !state.ticket) return "";
    let u;
    try {
      u = new URL(raw); // absolute only: there is no base
    } catch {
      return "";
    }
    const h = u.hostname;
    const loopback = h === "localhost" || h === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
    if (u.protocol !== "https:" && !(u.protocol === "http:" && loopback)) return "";
    u.searchParams.set("fs_ticket", state.ticket);
    return u.href;
  }

  // renderShop offers the shop when the sale has a return_url, and counts
  // down to it once per ticket.
  function renderShop() {
    const url = shopURL();
    show($("shop"), Boolean(url));
    if (!url) {
      stopShopCountdown();
      return;
    }
    if ($("shop-link").href !== url) $("shop-link").href = url;
    if (shop.ticket !== state.ticket) {
      stopShopCountdown();
      shop.ticket = state.ticket;
      shop.stayed = false;
      shop.say = "";
      if (store.get(keys.shop) !== state.ticket) {
        shop.deadline = Date.now() + shopDelay * 1000;
        shop.timer = setInterval(shopTick, 200);
        shop.say = "shop.spoken";
      }
    }
    show($("shop-auto"), Boolean(shop.timer));
    show($("shop-stayed"), shop.stayed);
    if (shop.timer) setText($("shop-seconds"), formatNumber(Math.max(1, Math.ceil((shop.deadline - Date.now()) / 1000))));
  }

  function shopTick() {
    if (state.view !== "admitted") {
      stopShopCountdown();
      return;
    }
    if (Date.now() < shop.deadline) {
      renderShop();
      return;
    }
    const url = shopURL();
    shopDone(false);
    if (url) location.assign(url);
  }

  function stopShopCountdown() {
    clearInterval(shop.timer);
    shop.timer = 0;
  }

  // shopDone ends this ticket's countdown for good: the shopper went (by
  // the countdown or the link) or chose to stay.
  function shopDone(stayed) {
    stopShopCountdown();
    if (state.ticket) store.set(keys.shop, state.ticket);
    shop.stayed = stayed;
    shop.say = stayed ? "shop.stayed" : ""; // the countdown's announcement no longer holds
  }

  function stayHere() {
    shopDone(true);
    render();
    $("shop-link").focus(); // the Stay button is gone; the link is what is left to do
  }

  function renderOrder() {
    const o = state.order || {};
    const currency = o.currency || (state.sale && state.sale.currency);
    setText($("order-id"), o.id || "");
    setText($("order-quantity"), formatNumber(o.quantity));
    setText($("order-amount"), formatMoney(o.amount_cents, currency));
    const status = ["held", "paid", "cancelled", "expired"].includes(o.status) ? o.status : "unknown";
    setText($("order-status"), t("orderStatus." + status));
    $("order-status").className = "badge " + status;

    const held = o.status === "held";
    show($("hold"), held);
    if (held) setText($("hold-countdown"), o.hold_expires_at ? formatCountdown(secondsUntil(o.hold_expires_at)) : t("order.shortWhile"));
    $("pay").disabled = state.busy;
    $("cancel").disabled = state.busy;
    setText($("order-message"), status === "held" || status === "unknown" ? "" : t("orderMessage." + status));
  }

  function renderActions() {
    const v = state.view;
    const orderOver = v === "order" && state.order && ["cancelled", "expired"].includes(state.order.status);
    const canJoin = v === "join" || v === "expired" || orderOver || (v === "signin" && state.shopSignIn);
    const join = $("join");
    show(join, canJoin);
    setText(join, t(v === "signin" ? "join.signedIn" : orderOver ? "join.again" : state.joinLabel));
    join.disabled = state.busy || Boolean(retry.timer);
    show($("leave"), v === "waiting" || v === "prequeue");
    $("leave").disabled = state.busy;
  }

  // tick redraws the countdowns each second and asks once when one runs out.
  let lastStartsIn = null;
  let lastHoldLeft = null;
  let lastTicketLeft = null;
  function tick() {
    const socketOpen = live.ws && live.ws.readyState === WebSocket.OPEN;
    if (state.view === "prequeue" || state.view === "waiting") {
      const left = state.startsAt ? secondsUntil(state.startsAt) : null;
      if (lastStartsIn > 0 && left === 0 && !socketOpen) checkStatus();
      lastStartsIn = left;
    }
    if (state.view === "waiting") moveEta();
    else shown.eta = null;
    if (state.view === "upcoming" && queueOpensIn() === 0) {
      state.view = "join";
      refreshSale();
    }
    if (state.view === "admitted") {
      // The server says "expired" when the ticket runs out; ask, in case
      // that frame was lost with a socket.
      const left = secondsUntil(state.ticketExpiresAt);
      if (lastTicketLeft > 0 && left === 0) setTimeout(() => state.view === "admitted" && checkStatus(), 1500);
      lastTicketLeft = left;
    }
    const o = state.order;
    if (state.view === "order" && o && o.status === "held" && o.hold_expires_at) {
      const left = secondsUntil(o.hold_expires_at);
      if (lastHoldLeft > 0 && left === 0) setTimeout(() => loadOrder(o.id), 1500);
      lastHoldLeft = left;
    }
    if (["upcoming", "join", "prequeue", "waiting", "admitted", "order"].includes(state.view) ||
      state.busyUntil > Date.now() - 1000) render();
  }

  // joinWithPass: a shopper with a pass who is in line (or in the
  // pre-queue) joins again with it, which takes them ahead of the line; it
  // answers whether it did. One admitted or who bought needs it no more.
  function joinWithPass(p) {
    if (!pass() || !p) return false;
    if (p.state === "waiting" || p.state === "prequeue") {
      join();
      return true;
    }
    if (p.state === "admitted" || p.state === "purchased") dropPass();
    return false;
  }

  // --- start ----------------------------------------------------------------------------

  // loadLanguage loads the shopper's language, else English, until one
  // loads (the server may be restarting).
  async function loadLanguage() {
    const lang = api.chooseLanguage(languages());
    for (;;) {
      if (await useLanguage(lang)) break;
      if (lang !== "en" && (await useLanguage("en"))) break;
      await sleep(5000);
    }
    ready = true;
    state.error = null;
    render();
  }

  async function start() {
    readFragment();
    // A pass names its user: offer that name for the demo sign-in.
    $("signin-user").value = store.get(keys.user) || jwtSubject(pass()) || randomName();
    $("signin-form").addEventListener("submit", signIn);
    $("join").addEventListener("click", () => (state.view === "signin" ? enterQueue() : joinPressed()));
    $("captcha-form").addEventListener("submit", captchaSubmitted);
    $("challenge-cancel").addEventListener("click", cancelChallenge);
    $("leave").addEventListener("click", leave);
    $("buy-form").addEventListener("submit", buy);
    $("quantity").addEventListener("change", render);
    $("pay").addEventListener("click", pay);
    $("cancel").addEventListener("click", cancel);
    $("switch-user").addEventListener("click", switchUser);
    $("lang").addEventListener("change", languageChosen);
    $("shop-stay").addEventListener("click", stayHere);
    $("shop-link").addEventListener("click", () => {
      shopDone(false); // opened in another tab, say: this one stops counting
      render();
    });
    setInterval(tick, 1000);
    setInterval(refreshSale, 15000 + Math.random() * 5000);

    const language = loadLanguage();
    if (!saleId) {
      await language;
      state.view = "missing";
      render();
      return;
    }
    while (!(await loadSale())) {
      render();
      if (state.view === "missing") {
        await language;
        render();
        return;
      }
      await sleep(5000); // the server is down or restarting: try again
    }
    await language;
    state.error = null;
    await resume();
  }

  // resume finds where this shopper is: in the queue, admitted, bought, or not
  // in (yet). With no token at all the cookies may still say who they are.
  async function resume() {
    try {
      const p = await getStatus();
      if (!joinWithPass(p)) applyPosition(p);
    } catch (err) {
      statusFailed(err, resume); // 401 → sign-in, 404 → join, 410 → final, 403 banned → final, 429 → later
      if (state.view === "loading" && err.code !== "rate_limited") toJoin();
      render();
    }
  }

  start();
})();
