// Runs the embed script under Node with a minimal stand-in for the page (a form, cookies,
// sessionStorage, the landing URL) and submits the form to the real router over loopback.
// Usage: node drive_embed.js <embed.js path> <form endpoint URL ending in "/">
"use strict";
const fs = require("fs");
const [, , scriptPath, base] = process.argv;

const storage = new Map();
const created = [];
const fields = [
  ["name", "Иван"],
  ["phone", "+7 916 123-45-67"],
  ["message", "Перезвоните"],
];
const form = {
  nodeName: "FORM",
  attrs: {},
  children: [],
  handlers: {},
  events: [],
  getAttribute(n) { return n in this.attrs ? this.attrs[n] : null; },
  setAttribute(n, v) { this.attrs[n] = String(v); },
  appendChild(c) { this.children.push(c); return c; },
  addEventListener(t, f) { this.handlers[t] = f; },
  querySelectorAll() { return []; },
  reset() { this.wasReset = true; },
  dispatchEvent(e) { this.events.push({ type: e.type, detail: e.detail }); },
  elements: { namedItem() { return null; } },
};
function element(tag) {
  const el = {
    tag, style: {}, attrs: {}, children: [], textContent: "",
    setAttribute(n, v) { this.attrs[n] = String(v); },
    appendChild(c) { this.children.push(c); return c; },
  };
  created.push(el);
  return el;
}
// Reads the form as a browser would: its fields, then the inputs the script added.
globalThis.FormData = class {
  constructor(f) {
    this.pairs = fields.slice();
    for (const c of f.children) {
      for (const i of c.children || []) if (i.name) this.pairs.push([i.name, i.value || ""]);
    }
  }
  forEach(cb) { for (const [k, v] of this.pairs) cb(v, k); }
};
globalThis.window = {
  location: {
    search: "?utm_source=google&utm_medium=cpc&utm_campaign=brand",
    href: "https://shop.example/landing?utm_source=google&utm_medium=cpc&utm_campaign=brand",
  },
  sessionStorage: {
    getItem: (k) => (storage.has(k) ? storage.get(k) : null),
    setItem: (k, v) => storage.set(k, String(v)),
  },
  crypto: globalThis.crypto,
};
Object.defineProperty(globalThis, "navigator", { value: { language: "ru-RU" }, configurable: true });
globalThis.document = {
  currentScript: {
    src: base + "embed.js",
    getAttribute: (n) => (n === "data-form" ? "#lead" : null),
  },
  readyState: "complete",
  referrer: "https://www.google.com/",
  cookie: "_ga=GA1.2.111.222; other=x; _ym_uid=333444",
  createElement: element,
  querySelectorAll: (sel) => (sel === "#lead" ? [form] : []),
  addEventListener() {},
};

// The fill-time check needs the form to have been shown a while ago.
const realNow = Date.now;
Date.now = () => realNow() - 10000;
new Function(fs.readFileSync(scriptPath, "utf8"))();
Date.now = realNow;

if (typeof window.KommutatorForm.attach !== "function") throw new Error("no KommutatorForm.attach");
if (!form.handlers.submit) throw new Error("the form was not hooked");
form.handlers.submit({ preventDefault() {} });
const deadline = realNow() + 5000;
(function wait() {
  if (form.events.length > 0) {
    const status = created.find((e) => e.attrs.role === "status");
    console.log(JSON.stringify({
      events: form.events,
      status: status ? status.textContent : null,
      reset: !!form.wasReset,
      stored: storage.size,
    }));
    return;
  }
  if (realNow() > deadline) {
    console.error("no answer in time");
    process.exit(1);
  }
  setTimeout(wait, 20);
})();
