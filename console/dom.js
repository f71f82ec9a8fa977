// Small DOM helpers. Text always goes in as text nodes or attributes set one by one, never
// as markup: a customer's message, name or email can never become HTML, a script or an
// event handler, whatever it contains.

/**
 * Creates an element. `props`: `class`, `text`, `dataset`, `on<event>` handlers, and
 * attributes (null/false skipped, true as an empty attribute). Children: nodes, strings
 * (as text), arrays, null.
 */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'href' || k === 'src') el.setAttribute(k, safeUrl(v));
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  append(el, children);
  return el;
}

/** Appends children (nodes, strings as text, arrays, null skipped). */
export function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** Replaces all children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Only http(s), mailto, tel and same-origin relative URLs; anything else becomes `#`. */
export function safeUrl(u) {
  const s = String(u).trim();
  if (s.startsWith('/') && !s.startsWith('//')) return s;
  if (s.startsWith('#')) return s;
  try {
    const url = new URL(s);
    if (['http:', 'https:', 'mailto:', 'tel:'].includes(url.protocol)) return url.href;
  } catch (_) { /* not a URL */ }
  return '#';
}

const URL_RE = /\b(https?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]])/g;

/**
 * Customer text as nodes: line breaks kept (CSS `pre-wrap`), http(s) links clickable and
 * opened without access to this page. Everything else stays text.
 */
export function richText(text) {
  const out = [];
  let last = 0;
  const s = String(text ?? '');
  for (const m of s.matchAll(URL_RE)) {
    if (m.index > last) out.push(s.slice(last, m.index));
    out.push(h('a', { href: m[1], target: '_blank', rel: 'noopener noreferrer nofollow' }, m[1]));
    last = m.index + m[1].length;
  }
  if (last < s.length) out.push(s.slice(last));
  return out;
}

/** `HH:MM` today, else `DD.MM HH:MM`, in the browser's time zone. */
export function shortTime(iso, lang) {
  if (!iso) return '';
  const d = new Date(iso);
  const now = new Date();
  const opts = { hour: '2-digit', minute: '2-digit' };
  if (d.toDateString() !== now.toDateString()) Object.assign(opts, { day: '2-digit', month: '2-digit' });
  return d.toLocaleString(lang === 'ru' ? 'ru-RU' : 'en-GB', opts);
}

/** `m:ss` or `h:mm:ss` since `iso`. */
export function elapsed(iso, now = Date.now()) {
  if (!iso) return '';
  const s = Math.max(0, Math.floor((now - new Date(iso).getTime()) / 1000));
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return hh > 0 ? `${hh}:${String(mm).padStart(2, '0')}:${ss}` : `${mm}:${ss}`;
}

/** A random id for idempotent commands (`client_msg_id`). */
export function randomId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/**
 * An email's HTML body (sanitized by the connector) in a frame. The document comes from
 * `/api/v1/messages/{id}/html`, whose own policy makes it an opaque origin that runs no
 * script and loads nothing remote (a tracking pixel the sanitizer missed is not fetched);
 * `sandbox` says the same from this side. The parent cannot measure the frame, so it has a
 * fixed height the operator can drag.
 */
export function mailFrame(messageId, title) {
  return h('iframe', {
    class: 'mail-html',
    src: `/api/v1/messages/${Number(messageId)}/html`,
    sandbox: 'allow-popups allow-popups-to-escape-sandbox',
    referrerpolicy: 'no-referrer',
    title,
  });
}
