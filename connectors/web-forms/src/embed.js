/* Kommutator website form script, served by the hub at /forms/<id>/embed.js.
 * Include it with <script src="https://HUB/forms/<id>/embed.js" data-form="#my-form" async>.
 * No dependencies; the only global is window.KommutatorForm. */
(function () {
  "use strict";
  var HONEYPOT = "__KOMMUTATOR_HONEYPOT__";
  var STORE_KEY = "kommutator_form_source";
  var UTM_KEYS = ["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"];
  var TEXTS = {
    en: {
      sending: "Sending\u2026",
      ok: "Thank you! We will get back to you soon.",
      missing: "Please fill in the required fields.",
      invalid: "Please check the highlighted field.",
      rate: "Too many attempts. Please try again in a minute.",
      failed: "The form could not be sent. Please try again."
    },
    ru: {
      sending: "\u041e\u0442\u043f\u0440\u0430\u0432\u043a\u0430\u2026",
      ok: "\u0421\u043f\u0430\u0441\u0438\u0431\u043e! \u041c\u044b \u0441\u043a\u043e\u0440\u043e \u0441\u0432\u044f\u0436\u0435\u043c\u0441\u044f \u0441 \u0432\u0430\u043c\u0438.",
      missing: "\u0417\u0430\u043f\u043e\u043b\u043d\u0438\u0442\u0435 \u043e\u0431\u044f\u0437\u0430\u0442\u0435\u043b\u044c\u043d\u044b\u0435 \u043f\u043e\u043b\u044f.",
      invalid: "\u041f\u0440\u043e\u0432\u0435\u0440\u044c\u0442\u0435 \u0432\u044b\u0434\u0435\u043b\u0435\u043d\u043d\u043e\u0435 \u043f\u043e\u043b\u0435.",
      rate: "\u0421\u043b\u0438\u0448\u043a\u043e\u043c \u043c\u043d\u043e\u0433\u043e \u043f\u043e\u043f\u044b\u0442\u043e\u043a. \u041f\u043e\u043f\u0440\u043e\u0431\u0443\u0439\u0442\u0435 \u0447\u0435\u0440\u0435\u0437 \u043c\u0438\u043d\u0443\u0442\u0443.",
      failed: "\u041d\u0435 \u0443\u0434\u0430\u043b\u043e\u0441\u044c \u043e\u0442\u043f\u0440\u0430\u0432\u0438\u0442\u044c \u0444\u043e\u0440\u043c\u0443. \u041f\u043e\u043f\u0440\u043e\u0431\u0443\u0439\u0442\u0435 \u0435\u0449\u0451 \u0440\u0430\u0437."
    }
  };

  var script = document.currentScript;
  var endpoint = "";
  try {
    endpoint = new URL(".", script.src).href;
  } catch (e) {
    endpoint = "";
  }

  function texts() {
    var lang = String(navigator.language || "en").toLowerCase();
    return lang.indexOf("ru") === 0 ? TEXTS.ru : TEXTS.en;
  }

  function session() {
    try {
      return window.sessionStorage;
    } catch (e) {
      return null;
    }
  }

  // The traffic source of the visit: UTM tags, referrer and landing page of the first page
  // of the session (or of the latest page reached through a different campaign link).
  function trafficSource() {
    var store = session();
    var saved = null;
    if (store) {
      try {
        saved = JSON.parse(store.getItem(STORE_KEY) || "null");
      } catch (e) {
        saved = null;
      }
    }
    if (!saved || typeof saved !== "object") saved = null;
    var fresh = {};
    var tagged = false;
    var params = null;
    try {
      params = new URLSearchParams(window.location.search);
    } catch (e) {
      params = null;
    }
    for (var i = 0; params && i < UTM_KEYS.length; i++) {
      var v = params.get(UTM_KEYS[i]);
      if (v) {
        fresh[UTM_KEYS[i]] = v;
        tagged = true;
      }
    }
    var changed = false;
    if (saved && tagged) {
      for (var j = 0; j < UTM_KEYS.length; j++) {
        if ((fresh[UTM_KEYS[j]] || "") !== (saved[UTM_KEYS[j]] || "")) changed = true;
      }
    }
    if (!saved || changed) {
      saved = fresh;
      saved.landing_page = window.location.href;
      if (document.referrer) saved.referrer = document.referrer;
      if (store) {
        try {
          store.setItem(STORE_KEY, JSON.stringify(saved));
        } catch (e) {
          /* storage full or disabled: the source is still sent from this page */
        }
      }
    }
    return saved;
  }

  function cookie(name) {
    var parts = document.cookie ? document.cookie.split(";") : [];
    for (var i = 0; i < parts.length; i++) {
      var p = parts[i].replace(/^\s+/, "");
      var eq = p.indexOf("=");
      if (eq > 0 && p.slice(0, eq) === name) {
        try {
          return decodeURIComponent(p.slice(eq + 1));
        } catch (e) {
          return p.slice(eq + 1);
        }
      }
    }
    return "";
  }

  // `_ga` is "GA1.2.<client id>"; the client id is what Google Analytics reports.
  function gaClientId() {
    var v = cookie("_ga");
    var m = /^GA\d+\.\d+\.(.+)$/.exec(v);
    return m ? m[1] : v;
  }

  function uuid() {
    var c = window.crypto;
    if (c && typeof c.randomUUID === "function") return c.randomUUID();
    var b = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") {
      c.getRandomValues(b);
    } else {
      for (var i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
    }
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    var h = "";
    for (var j = 0; j < 16; j++) h += (b[j] + 256).toString(16).slice(1);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  var source = trafficSource();

  function attach(form) {
    if (!form || form.nodeName !== "FORM" || form.getAttribute("data-kommutator") === "on") return;
    form.setAttribute("data-kommutator", "on");
    var started = Date.now();
    var key = null;
    var busy = false;

    // The honeypot: off screen, out of the tab order, hidden from screen readers.
    var trap = document.createElement("div");
    trap.setAttribute("aria-hidden", "true");
    trap.style.cssText = "position:absolute;left:-10000px;top:auto;width:1px;height:1px;overflow:hidden;";
    var hp = document.createElement("input");
    hp.type = "text";
    hp.name = HONEYPOT;
    hp.tabIndex = -1;
    hp.autocomplete = "off";
    trap.appendChild(hp);
    form.appendChild(trap);

    var status = document.createElement("div");
    status.className = "kommutator-form-status";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    form.appendChild(status);

    function show(text, state) {
      status.textContent = text;
      status.setAttribute("data-state", state);
    }

    function clearMarks() {
      var marked = form.querySelectorAll("[aria-invalid='true']");
      for (var i = 0; i < marked.length; i++) marked[i].removeAttribute("aria-invalid");
    }

    function mark(name) {
      if (!name) return;
      var el = form.elements.namedItem(name);
      if (el && el.setAttribute) {
        el.setAttribute("aria-invalid", "true");
        if (typeof el.focus === "function") el.focus();
      }
    }

    function done(name, detail) {
      var ev;
      try {
        ev = new CustomEvent(name, { detail: detail });
      } catch (e) {
        return;
      }
      form.dispatchEvent(ev);
    }

    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (busy) return;
      var t = texts();
      var data = new URLSearchParams();
      new FormData(form).forEach(function (value, name) {
        if (typeof value === "string") data.append(name, value);
      });
      for (var k in source) {
        if (Object.prototype.hasOwnProperty.call(source, k) && typeof source[k] === "string" && !data.has(k)) {
          data.set(k, source[k]);
        }
      }
      data.set("page_url", window.location.href);
      var ga = gaClientId();
      if (ga) data.set("ga_client_id", ga);
      var ym = cookie("_ym_uid");
      if (ym) data.set("ym_client_id", ym);
      data.set("_started", String(started));
      data.set("_sent", String(Date.now()));
      // One key per submission attempt, kept until it succeeds: a retry after a network
      // error or a double click is the same lead for the hub.
      if (!key) key = uuid();
      data.set("idempotency_key", key);

      busy = true;
      clearMarks();
      show(t.sending, "sending");
      fetch(endpoint, { method: "POST", body: data, mode: "cors", credentials: "omit" })
        .then(function (res) {
          return res.json().then(
            function (body) {
              return { status: res.status, body: body || {} };
            },
            function () {
              return { status: res.status, body: {} };
            }
          );
        })
        .then(
          function (r) {
            busy = false;
            if (r.status === 200 && r.body.ok) {
              key = null;
              show(t.ok, "ok");
              form.reset();
              started = Date.now();
              done("kommutator:success", r.body);
              return;
            }
            var code = r.body.error;
            if (code === "missing_field" || code === "invalid_field") {
              mark(r.body.input || r.body.field);
              show(code === "missing_field" ? t.missing : t.invalid, "error");
            } else if (r.status === 429) {
              show(t.rate, "error");
            } else {
              show(t.failed, "error");
            }
            done("kommutator:error", r.body);
          },
          function () {
            busy = false;
            show(t.failed, "error");
            done("kommutator:error", { error: "network" });
          }
        );
    });
  }

  function init() {
    var selector = script && script.getAttribute("data-form");
    if (!selector) return;
    var forms = [];
    try {
      forms = document.querySelectorAll(selector);
    } catch (e) {
      forms = [];
    }
    for (var i = 0; i < forms.length; i++) attach(forms[i]);
  }

  window.KommutatorForm = { attach: attach, endpoint: endpoint };
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
